//! Compile-time behaviour, pinned with trybuild: every misuse of the macros is one error at the
//! offending token (K11), and correct uses compile without warnings under shadowing (hygiene).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/fail/*.rs");
}
