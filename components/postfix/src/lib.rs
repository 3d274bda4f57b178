//! `postfix`: the MTA. Port 25 for other servers, 465/587 for users, both through filtermail
//! before the queue; local delivery to Dovecot over LMTP; DKIM signing through OpenDKIM.

use anyhow::Result;
use chatmail_core::plan::{Owner, Service, User};
use chatmail_core::{Activate, Component, Configure, Install, register};
use include_dir::{Dir, include_dir};

static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../templates/postfix");

/// The mail transfer agent.
#[derive(Debug)]
pub struct Postfix;

/// The lookup tables, the same on every relay.
const TABLES: [&str; 4] = [
    "submission_header_cleanup",
    "lmtp_header_cleanup",
    "smtp_tls_policy_map",
    "login_map",
];

impl Component for Postfix {
    fn name(&self) -> &'static str {
        "postfix"
    }

    /// Dovecot creates the auth and LMTP sockets in Postfix's spool; OpenDKIM the milter
    /// socket directory and the group Postfix joins; filtermail takes mail before the queue.
    fn after(&self) -> &'static [&'static str] {
        &["base", "tls", "dovecot", "opendkim", "filtermail"]
    }

    fn templates(&self) -> Option<&'static Dir<'static>> {
        Some(&TEMPLATES)
    }

    fn install(&self, install: &mut Install<'_>) -> Result<()> {
        install.packages(&["postfix"]);
        install.user(User::system("postfix").extra_groups(&["opendkim"]));
        install.template(
            "/etc/systemd/system/postfix@.service.d/10_restart.conf",
            "10_restart.conf",
        )?;
        Ok(())
    }

    fn configure(&self, configure: &mut Configure<'_>) -> Result<()> {
        // `postfix reload` re-reads both; mail in flight is not interrupted. Every Postfix
        // command (the start, the instance generator of each `daemon-reload`) waits up to
        // 2.4 s for a main.cf changed in the last two seconds to settle.
        configure
            .template("/etc/postfix/main.cf", "main.cf.j2", ())?
            .reloads(&["postfix.service"])
            .settled();
        configure
            .template("/etc/postfix/master.cf", "master.cf.j2", ())?
            .reloads(&["postfix.service"]);
        for table in TABLES {
            configure.template(format!("/etc/postfix/{table}"), table, ())?;
        }
        // postconf exits 0 on unknown or misspelled settings but warns on stderr; `-n` leaves
        // the defaults it does not print uncomputed.
        configure.validate(&["postconf", "-n", "-c"], "/etc/postfix", true);
        Ok(())
    }

    fn activate(&self, activate: &mut Activate<'_>) -> Result<()> {
        // Debian's start script copies what the chrooted daemons need into the spool (a
        // volume): done by init, which also mounts the spool, so that Postfix's container
        // starts the master at once.
        let service = Service::running("postfix.service")
            .foreground(&["postfix", "start-fg"])
            .prepare(&["/usr/lib/postfix/configure-instance.sh", "-"])
            .health_smtp(25)
            // Ports below 1024, the chrooted daemons, the master's signals to them.
            .capabilities(&["NET_BIND_SERVICE", "SYS_CHROOT", "KILL"]);
        activate.service(service);
        // The certificate (acmetool's, when it makes it) and OpenDKIM's socket.
        activate.uses("tls");
        activate.reads("tls");
        activate.uses("acmetool");
        activate.uses("opendkim");
        let postfix = Owner::new("postfix", "postfix");
        let why = "Postfix's master lock and TLS session caches";
        activate.private("/var/lib/postfix", postfix, 0o755, why);
        activate.state(
            "/var/spool/postfix",
            "the mail queue, and the sockets of Dovecot (LMTP, auth) and OpenDKIM that Postfix uses",
        );
        let config = activate.config;
        let ports = [
            25,
            465,
            587,
            config.postfix_reinject_port,
            config.postfix_reinject_port_incoming,
        ];
        for port in ports {
            activate.port(port, &["master", "smtpd"]);
        }
        Ok(())
    }
}

register!(Postfix);
