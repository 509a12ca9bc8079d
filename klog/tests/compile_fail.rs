//! `klog!` errors that must stop compilation, with messages that point at the offending format
//! string or argument (`tests/ui/*.rs`, expected output in `tests/ui/*.stderr`; regenerate with
//! `TRYBUILD=overwrite cargo test -p klog --test compile_fail` and read the diff).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
