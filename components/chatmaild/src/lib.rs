//! `chatmaild`: the relay's own account and metadata services (from `services/chatmaild`),
//! their units and timers, the copy of the effective settings that every relay program
//! reads at `/usr/local/lib/chatmaild/chatmail.ini`, and the app-versions document
//! ([`appversions`]).

mod appversions;

use anyhow::{Context as _, Result};
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

/// The dict services Dovecot talks to: unit, program and socket directory.
const DAEMONS: [(&str, &str, &str); 3] = [
    ("doveauth.service", "doveauth", "/run/doveauth"),
    ("lastlogin.service", "lastlogin", "/run/chatmail-lastlogin"),
    (
        "chatmail-metadata.service",
        "chatmail-metadata",
        "/run/chatmail-metadata",
    ),
];

/// Daily jobs: the service runs from its timer only.
const JOBS: [&str; 2] = ["chatmail-expire", "chatmail-fsreport"];

/// The jobs in containers: name, crontab time (the timers' `OnCalendar=`) and arguments
/// after the settings file.
const CONTAINER_JOBS: [(&str, &str, &[&str]); 2] = [
    ("chatmail-expire", "2 0 * * *", &["-v", "--remove"]),
    ("chatmail-fsreport", "2 8 * * *", &[]),
];

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
        // The scheduler of the daily jobs in containers, where no systemd runs the timers.
        install.packages(&["cron"]);
        let units = DAEMONS.iter().map(|(unit, _, _)| (*unit).to_owned()).chain(
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
        // chatmail-metadata reads it at every lookup: a change restarts nothing.
        let versions = configure
            .template(appversions::PATH, appversions::TEMPLATE, ())?
            .restarts(&[]);
        appversions::check(versions.content()).with_context(|| {
            format!(
                "template chatmaild/{} (for {}) is not a valid app-versions document",
                appversions::TEMPLATE,
                appversions::PATH
            )
        })?;
        Ok(())
    }

    fn activate(&self, activate: &mut Activate<'_>) -> Result<()> {
        for (unit, program, dir) in DAEMONS {
            let socket = format!("{dir}/{}.socket", socket_name(program));
            let service = Service::running(unit)
                .foreground_as("vmail", &[program, &socket, RELAY_SETTINGS_PATH])
                .health_dict(&socket);
            activate.service(service);
            let why = format!("{program}'s socket, which Dovecot connects to");
            activate.runtime(dir, Owner::new("vmail", "vmail"), 0o755, &why);
        }
        // The accounts live in the mailboxes; chatmail-metadata asks chatmail-turn.
        activate.uses("base");
        activate.reads("base");
        activate.uses("turn");
        for (name, schedule, args) in CONTAINER_JOBS {
            let program = format!("/usr/local/bin/{name}");
            let mut argv = vec![program.as_str(), RELAY_SETTINGS_PATH];
            argv.extend(args);
            activate.job(name, schedule, "vmail", &argv);
        }
        for job in JOBS {
            activate.service(Service::stopped(&format!("{job}.service")));
            activate.service(Service::running(&format!("{job}.timer")));
        }
        Ok(())
    }
}

/// The socket's file name: the program's name without the `chatmail-` prefix.
fn socket_name(program: &str) -> &str {
    program.strip_prefix("chatmail-").unwrap_or(program)
}

register!(Chatmaild);
