//! `dovecot`: IMAP for clients and LMTP for delivery, with accounts from doveauth, metadata
//! from chatmail-metadata and Lua push notifications. A delay-free build by default, Debian's
//! packages when none can be had or [`DEBS_ENV`] asks for them (`builds`).

mod builds;
mod fork;
mod metrics;

use anyhow::Result;
use chatmail_core::plan::{Owner, Service};
use chatmail_core::{Activate, Component, Configure, Install, register};
use include_dir::{Dir, include_dir};
use serde::Serialize;

pub use builds::{DEBS_ENV, OUR_MARKER};

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
        builds::install(install)?;
        install.template("/etc/dovecot/auth.conf", "auth.conf")?;
        install.template(
            "/etc/dovecot/push_notification.lua",
            "push_notification.lua",
        )?;
        install.template(
            "/etc/systemd/system/dovecot.service.d/10_restart.conf",
            "10_restart.conf",
        )?;
        install.template(
            "/etc/systemd/system/dovecot.service.d/20_timezone.conf",
            "20_timezone.conf",
        )?;
        Ok(())
    }

    fn configure(&self, configure: &mut Configure<'_>) -> Result<()> {
        let vars = Vars {
            metrics: metrics::METRICS,
        };
        // Dovecot re-reads it on reload; open IMAP connections (IDLE) stay.
        configure
            .template("/etc/dovecot/dovecot.conf", "dovecot.conf.j2", vars)?
            .reloads(&["dovecot.service"]);
        configure.validate(
            &["doveconf", "-n", "-c"],
            "/etc/dovecot/dovecot.conf",
            false,
        );
        inotify_limits(configure);
        Ok(())
    }

    fn activate(&self, activate: &mut Activate<'_>) -> Result<()> {
        let service = Service::running("dovecot.service")
            .foreground(&["dovecot", "-F"])
            .health_imap(143)
            // Ports below 1024, the chrooted login processes, the master's signals to them.
            .capabilities(&["NET_BIND_SERVICE", "SYS_CHROOT", "KILL"]);
        activate.service(service);
        // The mailboxes, chatmaild's sockets, the certificate, and Postfix's spool, where
        // Dovecot's LMTP and auth sockets for Postfix are.
        for used in ["base", "chatmaild", "tls", "acmetool", "postfix"] {
            activate.uses(used);
        }
        // The settings of chatmaild, the certificate links.
        for read in ["base", "chatmaild", "tls"] {
            activate.reads(read);
        }
        let root = || Owner::new("root", "root");
        activate.private("/run/dovecot", root(), 0o755, "Dovecot's own sockets");
        activate.private("/var/lib/dovecot", root(), 0o755, "Dovecot's instance list");
        activate.port(143, &["imap-login", "dovecot"]);
        activate.port(993, &["imap-login", "dovecot"]);
        if activate.config.mtail_address.is_some() {
            // The OpenMetrics listener of Dovecot's stats process.
            activate.port(3904, &["dovecot", "stats"]);
        }
        Ok(())
    }
}

/// Every IMAP IDLE connection watches its mailbox with inotify: the kernel's limits must allow
/// tens of thousands of them.
const INOTIFY_LIMITS: [&str; 2] = [
    "fs.inotify.max_user_instances",
    "fs.inotify.max_user_watches",
];
const INOTIFY_WANTED: u64 = 65535;
const INOTIFY_SYSCTL: &str = "/etc/sysctl.d/90-chatmail-inotify.conf";

/// Raises the inotify limits of a host that has lower ones (never lowers a higher one), now
/// and at boot; in a container, whose kernel belongs to the host, says what to raise there.
/// A directory target has no kernel of its own yet: nothing to do.
fn inotify_limits(configure: &mut Configure<'_>) {
    let low: Vec<(&str, u64)> = INOTIFY_LIMITS
        .iter()
        .map(|key| (*key, chatmail_core::kernel_setting(key)))
        .filter(|(_, value)| *value <= INOTIFY_WANTED)
        .collect();
    if configure.facts.container {
        for (key, value) in low.iter().filter(|(_, value)| *value < INOTIFY_WANTED) {
            configure.warn(&format!(
                "{key} is {value} on this container's host; Dovecot needs more than {} for \
                 many IMAP clients: raise it on the host (sysctl {key}={INOTIFY_WANTED})",
                INOTIFY_WANTED - 1
            ));
        }
    } else if configure.facts.systemd && !low.is_empty() {
        let lines: String = low
            .iter()
            .map(|(key, _)| format!("{key} = {INOTIFY_WANTED}\n"))
            .collect();
        let text = format!("# Raised for Dovecot's IMAP IDLE watches (cmdeploy).\n{lines}");
        configure.file(INOTIFY_SYSCTL, text).restarts(&[]);
        configure.on_change(INOTIFY_SYSCTL, &["sysctl", "--load", INOTIFY_SYSCTL]);
    }
}

register!(Dovecot);
