//! The built-in components. Rust links a crate only when something names it, and a crate
//! that is not linked never registers: every component crate is named here.

use chatmail_base as _;
use chatmail_dovecot as _;
use chatmail_iroh_relay as _;
use chatmail_mtail as _;
use chatmail_opendkim as _;
use chatmail_postfix as _;
use chatmail_tls as _;
use chatmail_turn_component as _;

/// The names of the built-in components; a test checks the registry against it.
pub const BUILT_IN: &[&str] = &[
    "base",
    "dovecot",
    "iroh-relay",
    "mtail",
    "opendkim",
    "postfix",
    "tls",
    "turn",
];
