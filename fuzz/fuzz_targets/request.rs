//! Requests as mesh's own server path reads them off a connection: heads, framing, bodies,
//! pipelines.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mesh_core::fuzzing::request(data);
});
