//! `journald`: the systemd journal keeps logs in memory only, for at most three days.

use anyhow::Result;
use chatmail_core::plan::Service;
use chatmail_core::{Activate, Component, Install, register};
use include_dir::{Dir, include_dir};

static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../templates/journald");

/// The journal settings.
#[derive(Debug)]
pub struct Journald;

impl Component for Journald {
    fn name(&self) -> &'static str {
        "journald"
    }

    fn after(&self) -> &'static [&'static str] {
        &["base", "legacy"]
    }

    fn templates(&self) -> Option<&'static Dir<'static>> {
        Some(&TEMPLATES)
    }

    /// A drop-in rather than Debian's own `journald.conf`: the same for every relay, so it is
    /// part of install (and of an image).
    fn install(&self, install: &mut Install<'_>) -> Result<()> {
        install.template(
            "/etc/systemd/journald.conf.d/chatmail.conf",
            "chatmail.conf",
        )?;
        Ok(())
    }

    /// Restarted when the drop-in changed (every change of this component).
    fn activate(&self, activate: &mut Activate<'_>) -> Result<()> {
        activate.service(Service::running("systemd-journald.service"));
        Ok(())
    }
}

register!(Journald);
