//! `upgrades`: Debian's security updates, installed every day by unattended-upgrades from
//! apt's daily timers. Upstream upgrades every package on each deploy instead; here a re-run
//! stays a no-op, and `cmdeploy run --upgrade` applies the rest when the operator asks.
//!
//! Containers get theirs from a rebuilt image: nothing upgrades itself there.

use anyhow::Result;
use chatmail_core::plan::Service;
use chatmail_core::{Activate, Component, Configure, Install, register};
use include_dir::{Dir, include_dir};

static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../templates/upgrades");

/// Unattended security upgrades.
#[derive(Debug)]
pub struct Upgrades;

/// Sorts after Debian's `50unattended-upgrades`, whose origins it replaces.
const SETTINGS: &str = "/etc/apt/apt.conf.d/52chatmail-upgrades";

/// apt's timers: the daily package lists, then the daily unattended-upgrade run.
const TIMERS: [&str; 2] = ["apt-daily.timer", "apt-daily-upgrade.timer"];

impl Component for Upgrades {
    fn name(&self) -> &'static str {
        "upgrades"
    }

    fn templates(&self) -> Option<&'static Dir<'static>> {
        Some(&TEMPLATES)
    }

    fn install(&self, install: &mut Install<'_>) -> Result<()> {
        if !install.facts.foreground() {
            install.packages(&["unattended-upgrades"]);
        }
        Ok(())
    }

    fn configure(&self, configure: &mut Configure<'_>) -> Result<()> {
        if !configure.facts.foreground() {
            configure.template(SETTINGS, "52chatmail-upgrades", ())?;
            configure.validate(&["apt-config", "dump", "-c"], SETTINGS, false);
        }
        Ok(())
    }

    fn activate(&self, activate: &mut Activate<'_>) -> Result<()> {
        if !activate.facts.foreground() {
            for timer in TIMERS {
                activate.service(Service::running(timer));
            }
        }
        Ok(())
    }
}

register!(Upgrades);
