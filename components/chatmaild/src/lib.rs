//! `chatmaild`: the relay's own account and metadata services (from `services/chatmaild`),
//! their units and timers, and the copy of the effective settings that every relay program
//! reads at `/usr/local/lib/chatmaild/chatmail.ini`.

use anyhow::Result;
use chatmail_core::config::RELAY_SETTINGS_PATH;
use chatmail_core::plan::{Owner, Service};
use chatmail_core::{Activate, Component, Configure, Install, register};
use include_dir::{Dir, include_dir};

static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../templates/chatmaild");

/// The chatmaild services.
#[derive(Debug)]
pub struct Chatmaild;

/// Programs installed to /usr/local/bin.
const PROGRAMS: [&str; 6] = [
    "doveauth",
    "lastlogin",
    "chatmail-metadata",
    "chatmail-expire",
    "chatmail-quota-expire",
    "chatmail-fsreport",
];

/// The dict services Dovecot talks to.
const DAEMONS: [&str; 3] = [
    "doveauth.service",
    "lastlogin.service",
    "chatmail-metadata.service",
];

/// Daily jobs: the service runs from its timer only.
const JOBS: [&str; 2] = ["chatmail-expire", "chatmail-fsreport"];

impl Component for Chatmaild {
    fn name(&self) -> &'static str {
        "chatmaild"
    }

    /// The mailboxes directory (base) must exist before chatmail-metadata starts.
    fn after(&self) -> &'static [&'static str] {
        &["base"]
    }

    fn templates(&self) -> Option<&'static Dir<'static>> {
        Some(&TEMPLATES)
    }

    fn install(&self, install: &mut Install<'_>) -> Result<()> {
        for program in PROGRAMS {
            install.bundled_binary(program, &format!("/usr/local/bin/{program}"));
        }
        install.bundled_binary("newemail", "/usr/lib/cgi-bin/newemail");
        install.dir("/usr/local/lib/chatmaild", Owner::root(), 0o755);
        let units = DAEMONS.iter().map(|unit| (*unit).to_owned()).chain(
            JOBS.iter()
                .flat_map(|job| [format!("{job}.service"), format!("{job}.timer")]),
        );
        for unit in units {
            install.template(&format!("/etc/systemd/system/{unit}"), &unit)?;
        }
        Ok(())
    }

    fn configure(&self, configure: &mut Configure<'_>) -> Result<()> {
        let settings = configure.config.effective_ini();
        configure.file(RELAY_SETTINGS_PATH, settings);
        Ok(())
    }

    fn activate(&self, activate: &mut Activate<'_>) -> Result<()> {
        for unit in DAEMONS {
            activate.service(Service::running(unit));
        }
        for job in JOBS {
            activate.service(Service::stopped(&format!("{job}.service")));
            activate.service(Service::running(&format!("{job}.timer")));
        }
        Ok(())
    }
}

register!(Chatmaild);
