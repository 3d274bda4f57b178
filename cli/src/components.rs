//! The built-in components. Rust links a crate only when something names it, and a crate
//! that is not linked never registers: every component crate is named here.

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
