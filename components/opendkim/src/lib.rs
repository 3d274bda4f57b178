//! `opendkim`: DKIM signing of outgoing mail with a key made once and never replaced.
//! Not used by IPv4 relays, which have no domain to sign for.

use anyhow::Result;
use chatmail_core::config::Config;
use chatmail_core::plan::{Generate, Owner, Service, User};
use chatmail_core::{Activate, Component, Configure, Install, argv, register};
use include_dir::{Dir, include_dir};

static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../templates/opendkim");

/// The directory of OpenDKIM's socket, inside Postfix's spool.
const SOCKET_DIR: &str = "/var/spool/postfix/opendkim";

/// OpenDKIM's user, which owns its key, settings and socket.
fn opendkim() -> Owner {
    Owner::new("opendkim", "opendkim")
}

/// The DKIM signing milter.
#[derive(Debug)]
pub struct Opendkim;

impl Component for Opendkim {
    fn name(&self) -> &'static str {
        "opendkim"
    }

    fn after(&self) -> &'static [&'static str] {
        &["base"]
    }

    fn enabled(&self, config: &Config) -> bool {
        config.ipv4_relay.is_none()
    }

    fn templates(&self) -> Option<&'static Dir<'static>> {
        Some(&TEMPLATES)
    }

    fn install(&self, install: &mut Install<'_>) -> Result<()> {
        install.packages(&["opendkim", "opendkim-tools", "dns-root-data"]);
        install.user(User::system("opendkim").extra_groups(&["opendkim"]));
        install.template(
            "/etc/systemd/system/opendkim.service.d/10-prevent-memory-leak.conf",
            "10-prevent-memory-leak.conf",
        )?;
        // Verification scripts of older releases; filtermail verifies DKIM now.
        install.remove("/etc/opendkim/screen.lua");
        install.remove("/etc/opendkim/final.lua");
        Ok(())
    }

    fn configure(&self, configure: &mut Configure<'_>) -> Result<()> {
        configure.dir("/etc/opendkim", opendkim(), 0o750);
        configure.dir("/etc/dkimkeys", opendkim(), 0o700);
        configure.dir(SOCKET_DIR, opendkim(), 0o750);
        configure.template("/etc/opendkim.conf", "opendkim.conf.j2", ())?;
        configure
            .template("/etc/dkimkeys/KeyTable", "KeyTable.j2", ())?
            .owner("opendkim", "opendkim");
        configure
            .template("/etc/dkimkeys/SigningTable", "SigningTable.j2", ())?
            .owner("opendkim", "opendkim");
        let domain = configure.config.mail_domain_bare.clone();
        configure.generate(Generate {
            creates: vec![
                "/etc/dkimkeys/opendkim.private".into(),
                "/etc/dkimkeys/opendkim.txt".into(),
            ],
            argv: argv(&[
                "opendkim-genkey",
                "-D",
                "/etc/dkimkeys",
                "-d",
                &domain,
                "-s",
                "opendkim",
            ]),
            owner: Some(opendkim()),
        });
        configure.validate(&["opendkim", "-n", "-x"], "/etc/opendkim.conf", false);
        Ok(())
    }

    fn activate(&self, activate: &mut Activate<'_>) -> Result<()> {
        let socket = format!("{SOCKET_DIR}/opendkim.sock");
        let service = Service::running("opendkim.service")
            // As its user from the start: its key, socket and pid directories are its own.
            .foreground_as("opendkim", &["opendkim", "-f", "-x", "/etc/opendkim.conf"])
            .wake_on_stop(&socket)
            .health_unix(&socket);
        activate.service(service);
        // Its socket, in Postfix's spool, where the chrooted smtpd finds it: a volume of its
        // own there, so that this container sees nothing else of the spool.
        let why = "OpenDKIM's socket, which Postfix connects to";
        activate.runtime(SOCKET_DIR, opendkim(), 0o750, why);
        // Its pid file directory, made by systemd on a host.
        activate.private("/run/opendkim", opendkim(), 0o755, "OpenDKIM's pid file");
        activate.secret("/etc/dkimkeys", "the DKIM signing key, made once");
        Ok(())
    }
}

register!(Opendkim);
