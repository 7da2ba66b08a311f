//! `#[mesh::service]` refuses misuse with an error at the offending tokens; the expected
//! messages are checked in next to each case under `tests/ui/`.

#[test]
fn misuse_is_a_clear_compile_error() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
