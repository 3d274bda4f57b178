//! `filtermail`: the before-queue filter between Postfix and the world that lets only
//! encrypted mail through (from `services/filtermail`), for outgoing and incoming mail, and
//! the transport that delivers Postfix's non-local mail to other relays (HTTPS `/mxdeliv`,
//! then SMTP; Postfix's `default_transport`, see the postfix component).

use anyhow::Result;
use chatmail_core::config::RELAY_SETTINGS_PATH;
use chatmail_core::plan::Service;
use chatmail_core::{Activate, Component, Configure, Install, register};
use include_dir::{Dir, include_dir};

static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../templates/filtermail");

/// The units and the mode each runs filtermail in.
const UNITS: [(&str, &str); 3] = [
    ("filtermail.service", "outgoing"),
    ("filtermail-incoming.service", "incoming"),
    ("filtermail-transport.service", "transport"),
];

/// The encryption-enforcing mail filter.
#[derive(Debug)]
pub struct Filtermail;

impl Component for Filtermail {
    fn name(&self) -> &'static str {
        "filtermail"
    }

    fn after(&self) -> &'static [&'static str] {
        &["base", "chatmaild"]
    }

    fn templates(&self) -> Option<&'static Dir<'static>> {
        Some(&TEMPLATES)
    }

    fn install(&self, install: &mut Install<'_>) -> Result<()> {
        install.bundled_binary("filtermail", "/usr/local/bin/filtermail");
        for (unit, _) in UNITS {
            install.template(&format!("/etc/systemd/system/{unit}"), unit)?;
        }
        Ok(())
    }

    fn configure(&self, configure: &mut Configure<'_>) -> Result<()> {
        configure.watch(RELAY_SETTINGS_PATH);
        Ok(())
    }

    fn activate(&self, activate: &mut Activate<'_>) -> Result<()> {
        let config = activate.config;
        let health = [
            config.filtermail_smtp_port,
            config.filtermail_smtp_port_incoming,
            config.filtermail_lmtp_port_transport,
        ];
        for ((unit, mode), port) in UNITS.into_iter().zip(health) {
            let argv = ["filtermail", RELAY_SETTINGS_PATH, mode];
            let service = Service::running(unit)
                .foreground_as("vmail", &argv)
                .health_tcp(port);
            activate.service(service);
        }
        // It reads chatmaild's settings.
        activate.reads("chatmaild");
        for port in [
            config.filtermail_smtp_port,
            config.filtermail_smtp_port_incoming,
            config.filtermail_http_port_incoming,
            config.filtermail_lmtp_port_transport,
        ] {
            activate.port(port, &["filtermail"]);
        }
        Ok(())
    }
}

register!(Filtermail);
