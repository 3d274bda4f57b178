//! `chatmail.ini`: the relay's settings, shared by the deploy tool and the relay's services.
//!
//! - [`schema`]: the declared keys, their kinds, defaults and explanations.
//! - [`Config`]: the typed settings with derived values and the origin of each value.
//! - [`default_ini`]: the commented file `cmdeploy init` writes.
//! - [`ini`]: the line-numbered INI reader underneath.
//! - [`brief`]: values shortened for messages.

#![warn(missing_docs)]

mod brief;
mod config;
pub mod ini;
mod init;
pub mod schema;

pub use brief::brief;
pub use config::{
    ACME_LINKS, Config, EnvLookup, Setting, Source, Tls, TlsMode, UnusedKey, is_valid_domain,
    parse_bool, parse_size_mb,
};
pub use init::default_ini;

/// Where a deployed relay keeps the effective settings that its programs read.
pub const RELAY_SETTINGS_PATH: &str = "/usr/local/lib/chatmaild/chatmail.ini";

/// A setting that cannot be read, with a message naming the file, line, key and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl Error {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Error(message.into())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}
