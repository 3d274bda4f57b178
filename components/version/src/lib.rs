//! `version`: `/etc/chatmail-version` names the source revision and the cmdeploy version
//! that deployed the relay. Written in configure, after every other component, so it names
//! what configured the relay and an identical re-run leaves it alone.

use anyhow::Result;
use chatmail_core::{AFTER_ALL, Component, Configure, register};

/// The record of the deployed version.
#[derive(Debug)]
pub struct Version;

/// Where the record is (`cmdeploy status` reads it).
pub const PATH: &str = "/etc/chatmail-version";

/// The revision cmdeploy was built from (`git rev-parse HEAD` at build time, or `unknown`).
pub const SOURCE_REVISION: &str = env!("CMDEPLOY_SOURCE_REVISION");

/// The file's content: the revision on the first line (where upstream's readers look for
/// it), then the cmdeploy version.
pub fn content() -> String {
    format!(
        "{SOURCE_REVISION}\ncmdeploy {}\n",
        env!("CARGO_PKG_VERSION")
    )
}

impl Component for Version {
    fn name(&self) -> &'static str {
        "version"
    }

    /// The record comes last, after every other component.
    fn after(&self) -> &'static [&'static str] {
        &[AFTER_ALL]
    }

    fn configure(&self, configure: &mut Configure<'_>) -> Result<()> {
        // It restarts nothing.
        configure.file(PATH, content()).restarts(&[]);
        Ok(())
    }
}

register!(Version);
