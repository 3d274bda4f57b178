//! The built-in components. Rust links a crate only when something names it, and a crate
//! that is not linked never registers: every component crate is named here, and
//! [`expect_registry`] lets a binary's tests prove that nothing went missing.

/// Names each built-in component crate (so it is linked) beside its component's name: the
/// one list of built-in components.
macro_rules! built_in {
    ($($name:literal => $krate:ident,)*) => {
        $(use $krate as _;)*

        /// The names of the built-in components; a test checks the registry against it.
        pub const BUILT_IN: &[&str] = &[$($name),*];
    };
}

built_in! {
    "acmetool" => chatmail_acmetool,
    "base" => chatmail_base,
    "chatmaild" => chatmail_chatmaild,
    "dovecot" => chatmail_dovecot,
    "fcgiwrap" => chatmail_fcgiwrap,
    "filtermail" => chatmail_filtermail,
    "iroh-relay" => chatmail_iroh_relay,
    "journald" => chatmail_journald,
    "legacy" => chatmail_legacy,
    "mtail" => chatmail_mtail,
    "nginx" => chatmail_nginx,
    "opendkim" => chatmail_opendkim,
    "postfix" => chatmail_postfix,
    "tls" => chatmail_tls,
    "turn" => chatmail_turn_component,
    "unbound" => chatmail_unbound,
    "upgrades" => chatmail_upgrades,
    "version" => chatmail_version,
    "website" => chatmail_website,
}

/// Checks that this binary's registry holds exactly the built-in components plus `extra`
/// (the names of a third party's own components), in an order the registry accepts.
///
/// Call it from a test of your binary (a test binary links what the test names, so the test
/// also names your crate with `use their_component as _;`). A component crate that nothing
/// names is not linked and its registration vanishes without an error; this check says
/// which name is missing.
pub fn expect_registry(extra: &[&str]) -> anyhow::Result<()> {
    let registry = chatmail_core::Registry::linked()?;
    let linked = registry.names();
    let expected: Vec<&str> = BUILT_IN.iter().chain(extra).copied().collect();
    let missing: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|name| !linked.contains(name))
        .collect();
    let unexpected: Vec<&str> = linked
        .iter()
        .copied()
        .filter(|name| !expected.contains(name))
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "components missing from this binary's registry: {} (is their crate named, e.g. `use their_crate as _;`?)",
            missing.join(", ")
        );
    }
    if !unexpected.is_empty() {
        anyhow::bail!(
            "components registered but not expected: {}",
            unexpected.join(", ")
        );
    }
    Ok(())
}
