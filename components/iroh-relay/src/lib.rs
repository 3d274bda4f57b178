//! `iroh-relay`: the relay for iroh peer-to-peer connections (realtime webxdc), v0.35.0,
//! behind nginx on port 3340. Runs only when `iroh_relay` is not set in chatmail.ini.
//!
//! Install cannot read the settings, so the binary's source is chosen from what is at hand:
//! an `iroh-relay` built beside cmdeploy (`cargo install iroh-relay --version 0.35.0
//! --features server --locked`), else the pinned release tarball named by
//! [`TARBALL_ENV`], else the pinned release from GitHub. The last is optional: an offline
//! install goes on without it (a notice says so), and the unit's start condition keeps the
//! service from failing until the binary arrives.

use std::path::PathBuf;

use anyhow::Result;
use chatmail_core::plan::{Download, Service};
use chatmail_core::{Activate, Component, Facts, Install, register};
use include_dir::{Dir, include_dir};

static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../templates/iroh-relay");

/// The iroh relay server.
#[derive(Debug)]
pub struct IrohRelay;

/// Names a local copy of the pinned release tarball (for installs without GitHub).
pub const TARBALL_ENV: &str = "CMDEPLOY_IROH_RELAY_TARBALL";

const DEST: &str = "/usr/local/bin/iroh-relay";
const UNIT: &str = "iroh-relay.service";

/// Upstream's pinned v0.35.0 release per architecture; the sha256 is of the extracted binary.
const RELEASES: &[(&str, &str, &str)] = &[
    (
        "x86_64",
        "https://github.com/n0-computer/iroh/releases/download/v0.35.0/iroh-relay-v0.35.0-x86_64-unknown-linux-musl.tar.gz",
        "45c81199dbd70f8c4c30fef7f3b9727ca6e3cea8f2831333eeaf8aa71bf0fac1",
    ),
    (
        "aarch64",
        "https://github.com/n0-computer/iroh/releases/download/v0.35.0/iroh-relay-v0.35.0-aarch64-unknown-linux-musl.tar.gz",
        "f8ef27631fac213b3ef668d02acd5b3e215292746a3fc71d90c63115446008b1",
    ),
];

/// The pinned release: from the local `tarball` if given, else from GitHub, optionally.
fn pinned_release(facts: &Facts, tarball: Option<PathBuf>) -> Result<Download> {
    let from_github = tarball.is_none();
    let download = Download::pinned(DEST, facts, RELEASES, Some("./iroh-relay"), tarball)?;
    Ok(match from_github {
        true => download.optional(),
        false => download,
    })
}

impl Component for IrohRelay {
    fn name(&self) -> &'static str {
        "iroh-relay"
    }

    /// base creates the iroh user it runs as.
    fn after(&self) -> &'static [&'static str] {
        &["base"]
    }

    fn templates(&self) -> Option<&'static Dir<'static>> {
        Some(&TEMPLATES)
    }

    fn install(&self, install: &mut Install<'_>) -> Result<()> {
        if install.facts.binaries.join("iroh-relay").is_file() {
            install.bundled_binary("iroh-relay", DEST);
        } else {
            let tarball = std::env::var_os(TARBALL_ENV).map(PathBuf::from);
            install.download(pinned_release(install.facts, tarball)?);
        }
        // The same for every relay, so an image already carries them.
        install.template("/etc/iroh-relay.toml", "iroh-relay.toml")?;
        install.template(&format!("/etc/systemd/system/{UNIT}"), "iroh-relay.service")?;
        Ok(())
    }

    /// Upstream started it even when `iroh_relay` points elsewhere; here it is stopped then.
    fn activate(&self, activate: &mut Activate<'_>) -> Result<()> {
        if activate.config.enable_iroh_relay {
            let argv = [DEST, "--config-path", "/etc/iroh-relay.toml"];
            let service = Service::running(UNIT)
                .foreground_as("iroh", &argv)
                .health_tcp(3340);
            activate.service(service);
            activate.port(3340, &["iroh-relay"]);
        } else {
            activate.service(Service::stopped(UNIT));
        }
        Ok(())
    }
}

register!(IrohRelay);
