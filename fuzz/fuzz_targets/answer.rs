//! Answers as the client reads them off an upstream: interim answers, heads, and bodies of
//! every framing.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mesh_core::fuzzing::answer(data);
});
