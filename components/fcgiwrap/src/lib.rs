//! `fcgiwrap`: runs CGI programs for nginx over `/run/fcgiwrap.socket`; nginx's `/new`
//! (account creation) goes through it.

use anyhow::Result;
use chatmail_core::plan::Service;
use chatmail_core::{Activate, Component, Install, register};

/// The FastCGI wrapper.
#[derive(Debug)]
pub struct Fcgiwrap;

impl Component for Fcgiwrap {
    fn name(&self) -> &'static str {
        "fcgiwrap"
    }

    fn after(&self) -> &'static [&'static str] {
        &["base"]
    }

    fn install(&self, install: &mut Install<'_>) -> Result<()> {
        install.packages(&["fcgiwrap"]);
        Ok(())
    }

    /// Debian's socket unit creates the socket; the service is started too, because upstream
    /// saw it not start on its own.
    fn activate(&self, activate: &mut Activate<'_>) -> Result<()> {
        activate.service(Service::running("fcgiwrap.socket"));
        activate.service(Service::running("fcgiwrap.service"));
        Ok(())
    }
}

register!(Fcgiwrap);
