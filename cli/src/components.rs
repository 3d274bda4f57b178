//! The built-in components. Rust links a crate only when something names it, and a crate
//! that is not linked never registers: every component crate is named here, and
//! [`expect_registry`] lets a binary's tests prove that nothing went missing.

use chatmail_acmetool as _;
use chatmail_base as _;
use chatmail_chatmaild as _;
use chatmail_dovecot as _;
use chatmail_fcgiwrap as _;
use chatmail_filtermail as _;
use chatmail_iroh_relay as _;
use chatmail_journald as _;
use chatmail_legacy as _;
use chatmail_mtail as _;
use chatmail_nginx as _;
use chatmail_opendkim as _;
use chatmail_postfix as _;
use chatmail_tls as _;
use chatmail_turn_component as _;
use chatmail_unbound as _;
use chatmail_version as _;
use chatmail_website as _;

/// The names of the built-in components; a test checks the registry against it.
pub const BUILT_IN: &[&str] = &[
    "acmetool",
    "base",
    "chatmaild",
    "dovecot",
    "fcgiwrap",
    "filtermail",
    "iroh-relay",
    "journald",
    "legacy",
    "mtail",
    "nginx",
    "opendkim",
    "postfix",
    "tls",
    "turn",
    "unbound",
    "version",
    "website",
];

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
