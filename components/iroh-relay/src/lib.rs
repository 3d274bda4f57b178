//! `iroh-relay`: the relay for iroh peer-to-peer connections (realtime webxdc), crates.io's
//! `iroh-relay` 0.35 server (upstream's pin), behind nginx on port 3340. Runs only when
//! `iroh_relay` is not set in chatmail.ini.
//!
//! The binary is one of the relay's bundled programs, shipped beside cmdeploy: `cargo xtask
//! iroh-relay` builds it and puts it there. A cmdeploy built without it (a plain `cargo build`)
//! says what to run, and keeps the service stopped rather than failing to start.

use anyhow::Result;
use chatmail_core::plan::Service;
use chatmail_core::{Activate, Component, Configure, Facts, Install, register};
use include_dir::{Dir, include_dir};

static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../templates/iroh-relay");

/// The iroh relay server.
#[derive(Debug)]
pub struct IrohRelay;

/// The program's name beside cmdeploy.
const NAME: &str = "iroh-relay";
const DEST: &str = "/usr/local/bin/iroh-relay";
const UNIT: &str = "iroh-relay.service";

/// Whether the binary is beside cmdeploy (or in `--binaries`), so that install ships it.
fn bundled(facts: &Facts) -> bool {
    facts.binaries.join(NAME).is_file()
}

/// Whether the relay has the binary to run: shipped by this cmdeploy, or in the relay's image,
/// which always carries it (`cargo xtask image`), also when `cmdeploy compose` plans the
/// image's containers on a machine whose cmdeploy lacks it.
fn at_hand(facts: &Facts) -> bool {
    facts.foreground() || bundled(facts)
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
        if bundled(install.facts) {
            install.bundled_binary(NAME, DEST);
        }
        // The same for every relay, so an image already carries them.
        install.template("/etc/iroh-relay.toml", "iroh-relay.toml")?;
        install.template(&format!("/etc/systemd/system/{UNIT}"), "iroh-relay.service")?;
        Ok(())
    }

    /// Install cannot read the settings: the missing binary is told here, where it matters.
    fn configure(&self, configure: &mut Configure<'_>) -> Result<()> {
        if configure.config.enable_iroh_relay && !at_hand(configure.facts) {
            configure.warn(&format!(
                "{NAME} is not beside cmdeploy (in {}), so this relay's iroh relay stays \
                 stopped: run `cargo xtask iroh-relay` and deploy again, or set iroh_relay \
                 to another relay",
                configure.facts.binaries.display()
            ));
        }
        Ok(())
    }

    /// Upstream started it even when `iroh_relay` points elsewhere; here it is stopped then,
    /// and also when cmdeploy ships no binary (it could not start).
    fn activate(&self, activate: &mut Activate<'_>) -> Result<()> {
        if activate.config.enable_iroh_relay && at_hand(activate.facts) {
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
