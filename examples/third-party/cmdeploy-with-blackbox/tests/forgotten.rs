//! The pitfall: this test binary depends on `blackbox-component` (its package does) but never
//! names the crate, so Rust does not link it and its `register!` vanishes without an error.
//! The registry check is what catches it.

#![allow(clippy::unwrap_used)] // a test fails by panicking

#[test]
fn an_unnamed_component_crate_is_missing_and_the_registry_check_says_so() {
    let registry = chatmail_core::Registry::linked().unwrap();
    assert!(registry.get("blackbox").is_none());
    assert!(
        registry.get("postfix").is_some(),
        "the built-ins are named by cmdeploy"
    );
    let err = cmdeploy::components::expect_registry(&["blackbox"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "components missing from this binary's registry: blackbox (is their crate named, e.g. `use their_crate as _;`?)"
    );
}
