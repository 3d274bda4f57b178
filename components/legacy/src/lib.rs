//! `legacy`: removes, idempotently, what older upstream releases left on a relay: obsolete
//! packages, files, the OBS apt source, and daemons that no longer belong to a relay. It also
//! adopts a relay deployed by upstream's Python cmdeploy: what that left and this deploy
//! replaces (the chatmaild virtualenv, the Python CGI, the remote helper) goes; its state (DKIM key, certificates, mailboxes, passwords, the Postfix queue)
//! is at the paths the other components use and is kept. Units of the same name (doveauth,
//! filtermail, filtermail-transport, ...) are simply replaced by their components.
//!
//! Earlier releases of this tool kept an IPv4 relay's mailboxes in `/home/vmail/mail/[<ip>]`;
//! they are moved once to upstream's `/home/vmail/mail/<ip>`.

use anyhow::Result;
use chatmail_core::plan::Service;
use chatmail_core::{Activate, Component, Configure, Install, register};

/// The cleanup of older releases.
#[derive(Debug)]
pub struct Legacy;

/// The apt source of the OBS repository that once provided Dovecot, as it was written.
const OBS_SOURCE: &str = "deb [signed-by=/etc/apt/keyrings/obs-home-deltachat.gpg] \
     https://download.opensuse.org/repositories/home:/deltachat/Debian_12/ ./";

/// Files and directories of removed features.
const LEFTOVERS: &[&str] = &[
    // expunge and metrics cron jobs, replaced by chatmaild timers and mtail
    "/etc/cron.d/expunge",
    "/etc/cron.d/chatmail-metrics",
    "/var/www/html/metrics",
    // the OBS repository's key (its source line is removed first)
    "/etc/apt/keyrings/obs-home-deltachat.gpg",
    // the persistent journal (the journal is volatile now)
    "/var/log/journal",
    // the MTA-STS resolver daemon
    "/etc/mta-sts-daemon.yml",
    "/usr/local/lib/postfix-mta-sts-resolver",
    "/etc/systemd/system/mta-sts-daemon.service",
    // its boot link, which `systemctl disable` cannot remove once the unit file is gone
    "/etc/systemd/system/multi-user.target.wants/mta-sts-daemon.service",
    // upstream's Python deployment: the chatmaild virtualenv its units ran and the sdist it
    // was built from (the programs are /usr/local/bin/* now)
    "/usr/local/lib/chatmaild/venv",
    "/usr/local/lib/chatmaild/dist",
    // the Python account-creation CGI (nginx runs /usr/lib/cgi-bin/newemail for its URL)
    "/usr/lib/cgi-bin/newemail.py",
    // the helper package upstream's cmdeploy copied for its remote DNS and status checks
    "/root/from-cmdeploy",
];

/// Daemons of older releases, stopped and disabled where they still exist.
const UNITS: &[&str] = &[
    "echobot.service",
    "doveauth-dictproxy.service",
    "mta-sts-daemon.service",
];

/// What writes into the mailboxes (and reads them as a whole): stopped while they move.
const MAILBOX_UNITS: &[&str] = &[
    "dovecot.service",
    "doveauth.service",
    "lastlogin.service",
    "chatmail-metadata.service",
    "chatmail-expire.service",
];

impl Component for Legacy {
    fn name(&self) -> &'static str {
        "legacy"
    }

    fn after(&self) -> &'static [&'static str] {
        &["base"]
    }

    fn install(&self, install: &mut Install<'_>) -> Result<()> {
        install.remove_line("/etc/apt/sources.list", OBS_SOURCE);
        // rspamd was the spam filter; unbound-anchor is replaced by dns-root-data.
        install.remove_packages(&["rspamd", "unbound-anchor"]);
        for path in LEFTOVERS {
            install.remove(path);
        }
        Ok(())
    }

    fn configure(&self, configure: &mut Configure<'_>) -> Result<()> {
        let config = configure.config;
        if let Some(bracketed) = config.bracketed_mailboxes_dir() {
            configure.relocate(bracketed, &config.mailboxes_dir, MAILBOX_UNITS);
        }
        Ok(())
    }

    fn activate(&self, activate: &mut Activate<'_>) -> Result<()> {
        for unit in UNITS {
            activate.service(Service::stopped(unit));
        }
        Ok(())
    }
}

register!(Legacy);
