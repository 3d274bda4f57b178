//! `dovecot`: IMAP for clients and LMTP for delivery, with accounts from doveauth, metadata
//! from chatmail-metadata and Lua push notifications. Debian's packages.

mod metrics;

use anyhow::Result;
use chatmail_core::plan::Service;
use chatmail_core::{Activate, Component, Configure, Install, register};
use include_dir::{Dir, include_dir};
use serde::Serialize;

static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../templates/dovecot");

/// The IMAP and LMTP server.
#[derive(Debug)]
pub struct Dovecot;

#[derive(Serialize)]
struct Vars {
    metrics: &'static [metrics::Metric],
}

impl Component for Dovecot {
    fn name(&self) -> &'static str {
        "dovecot"
    }

    /// The dict sockets of chatmaild must exist when Dovecot starts.
    fn after(&self) -> &'static [&'static str] {
        &["base", "chatmaild", "tls"]
    }

    fn templates(&self) -> Option<&'static Dir<'static>> {
        Some(&TEMPLATES)
    }

    fn install(&self, install: &mut Install<'_>) -> Result<()> {
        install.packages(&["dovecot-core", "dovecot-imapd", "dovecot-lmtpd"]);
        install.template("/etc/dovecot/auth.conf", "auth.conf")?;
        install.template(
            "/etc/dovecot/push_notification.lua",
            "push_notification.lua",
        )?;
        install.template(
            "/etc/systemd/system/dovecot.service.d/10_restart.conf",
            "10_restart.conf",
        )?;
        Ok(())
    }

    fn configure(&self, configure: &mut Configure<'_>) -> Result<()> {
        let vars = Vars {
            metrics: metrics::METRICS,
        };
        configure.template("/etc/dovecot/dovecot.conf", "dovecot.conf.j2", vars)?;
        configure.validate(&["doveconf", "-n"], false);
        Ok(())
    }

    fn activate(&self, activate: &mut Activate<'_>) -> Result<()> {
        let service = Service::running("dovecot.service")
            .foreground(&["dovecot", "-F"])
            .health_tcp(993);
        activate.service(service);
        activate.port(143, &["imap-login", "dovecot"]);
        activate.port(993, &["imap-login", "dovecot"]);
        if activate.config.mtail_address.is_some() {
            // The OpenMetrics listener of Dovecot's stats process.
            activate.port(3904, &["dovecot", "stats"]);
        }
        Ok(())
    }
}

register!(Dovecot);
