//! `cmdeploy container SERVICE`: the entrypoint of the relay's image. Configures the
//! container from the mounted chatmail.ini and the environment, then execs one declared
//! foreground command; `init` only configures (the one-shot service every other waits for),
//! `cron` runs the declared periodic jobs. Also `cmdeploy probe`, the health checks.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chatmail_core::engine::{self, Engine, Phases, Planned};
use chatmail_core::plan::{Foreground, Job};
use chatmail_core::{Facts, Registry, RunLock, Target, Templates, shell_words};

use crate::progress;

/// The one-shot service that configures the shared volumes before any daemon starts.
pub const INIT: &str = "init";
/// The service that runs the periodic jobs with Debian's cron.
pub const CRON: &str = "cron";
/// Where cron finds the jobs in a container.
const CRONTAB: &str = "/etc/cron.d/cmdeploy-jobs";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// `init`, `cron`, or a daemon's service name as in the compose file (`postfix`,
    /// `dovecot`, `doveauth`, ...).
    service: String,
    /// Directory of template overrides (as for `run`).
    #[arg(long, env = "CMDEPLOY_TEMPLATES", value_name = "DIR")]
    templates: Option<std::path::PathBuf>,
}

/// What a container runs after configure.
enum Role<'p> {
    Init,
    Cron(Vec<&'p Job>),
    Daemon(&'p Foreground),
}

/// The container services the plans declare: `(name, foreground)` per running unit with a
/// container form, the name being the unit's without `.service`.
pub fn daemons(plans: &[Planned]) -> Vec<(String, &Foreground)> {
    plans
        .iter()
        .flat_map(|p| p.activate.iter().flat_map(|a| &a.services))
        .filter(|service| service.running)
        .filter_map(|service| {
            let name = service.unit.trim_end_matches(".service").to_owned();
            service.container.as_ref().map(|fg| (name, fg))
        })
        .collect()
}

/// Every periodic job the plans declare.
pub fn jobs(plans: &[Planned]) -> Vec<&Job> {
    plans
        .iter()
        .flat_map(|p| p.activate.iter().flat_map(|a| &a.jobs))
        .collect()
}

/// Plans every component for a container of this image: configure and activate see the
/// settings, and the facts say "container, no systemd" wherever this runs.
pub fn plan(
    registry: &Registry,
    config: &chatmail_core::config::Config,
    templates_dir: Option<&Path>,
) -> Result<Vec<Planned>> {
    let components = registry.select(&[], &[])?;
    let target = Target::new(Path::new("/"), false)?;
    let mut facts = Facts::detect(&target, crate::binaries_dir(None)?);
    facts.container = true;
    facts.systemd = false;
    let templates = Templates::new(&components, templates_dir)?;
    engine::plan(&components, Some(config), &facts, &templates)
}

pub fn run(config_path: &Path, verbose: bool, args: &Args) -> Result<()> {
    let registry = Registry::linked()?;
    let config = crate::load_config(config_path, &registry)?;
    config.check_privacy()?;
    let plans = plan(&registry, &config, args.templates.as_deref())?;
    let daemons = daemons(&plans);
    let role = match args.service.as_str() {
        INIT => Role::Init,
        CRON => Role::Cron(jobs(&plans)),
        name => match daemons.iter().find(|(n, _)| n == name) {
            Some((_, foreground)) => Role::Daemon(foreground),
            None => {
                let names: Vec<&str> = daemons.iter().map(|(n, _)| n.as_str()).collect();
                bail!(
                    "no container service {name:?} in this configuration; services: {INIT}, \
                     {CRON}, {}",
                    names.join(", ")
                );
            }
        },
    };
    let target = Target::new(Path::new("/"), verbose)?;
    let facts = Facts::detect(&target, crate::binaries_dir(None)?);
    if !facts.container {
        bail!(
            "cmdeploy container is the entrypoint of the relay's image; use `cmdeploy run` on a host"
        );
    }
    configure(&target, &facts, &plans, verbose)
        .with_context(|| format!("configuring the {} container", args.service))?;
    match role {
        Role::Init => Ok(()),
        Role::Cron(jobs) => {
            std::fs::write(CRONTAB, crontab(&jobs)?)
                .with_context(|| format!("writing {CRONTAB}"))?;
            exec(&["cron".into(), "-f".into()], &args.service)
        }
        Role::Daemon(foreground) => {
            for argv in &foreground.before {
                target
                    .run(argv, &[])
                    .with_context(|| format!("preparing {}", args.service))?;
            }
            exec(&foreground.argv, &args.service)
        }
    }
}

/// Configure, holding the run lock in the volume all containers share, so that entrypoints
/// starting together write the shared volumes one after the other.
fn configure(target: &Target, facts: &Facts, plans: &[Planned], verbose: bool) -> Result<()> {
    let _lock = RunLock::wait(target)?;
    let mut engine = Engine::new(target, facts, false)?;
    engine.observe(progress::printer(false, verbose));
    engine.prepare_volumes(plans)?;
    let phases = Phases {
        install: false,
        configure: true,
        activate: false,
    };
    let result = engine.run(plans, phases);
    let names: Vec<&str> = plans.iter().map(|p| p.component).collect();
    print!("{}", progress::summary(&engine.report, &names, false));
    result
}

/// Replaces this process with `argv` (the container's main process from now on).
fn exec(argv: &[String], service: &str) -> Result<()> {
    let (program, rest) = argv.split_first().context("empty foreground command")?;
    println!("{service}: exec {}", shell_words(argv));
    std::io::stdout().flush()?;
    let err = std::process::Command::new(program).args(rest).exec();
    Err(err).with_context(|| format!("starting {}", shell_words(argv)))
}

/// The crontab of the declared jobs: each runs as its user, its output going to the
/// container's (cron's own) standard output.
fn crontab(jobs: &[&Job]) -> Result<String> {
    let mut text = String::from("# Written by cmdeploy container cron from the declared jobs.\n");
    for job in jobs {
        if job.argv.iter().any(|arg| arg.contains('%')) {
            bail!("job {}: cron cannot pass '%' in arguments", job.name);
        }
        let user = &job.user;
        let mut argv = vec![
            "setpriv".to_owned(),
            format!("--reuid={user}"),
            format!("--regid={user}"),
            "--init-groups".to_owned(),
            "--".to_owned(),
        ];
        argv.extend(job.argv.iter().cloned());
        text.push_str(&format!(
            "# {}\n{} root {} >/proc/1/fd/1 2>&1\n",
            job.name,
            job.schedule,
            shell_words(&argv)
        ));
    }
    Ok(text)
}

/// `cmdeploy probe ADDRESS`: exits 0 when `tcp:HOST:PORT` or `unix:PATH` accepts a
/// connection within two seconds (the image's health checks).
pub fn probe(address: &str) -> Result<()> {
    let timeout = Duration::from_secs(2);
    if let Some(path) = address.strip_prefix("unix:") {
        std::os::unix::net::UnixStream::connect(path)
            .with_context(|| format!("connecting to {path}"))?;
    } else if let Some(host_port) = address.strip_prefix("tcp:") {
        let addresses = std::net::ToSocketAddrs::to_socket_addrs(host_port)
            .with_context(|| format!("{host_port:?} is not HOST:PORT"))?;
        let mut last = None;
        for socket in addresses {
            match std::net::TcpStream::connect_timeout(&socket, timeout) {
                Ok(_) => return Ok(()),
                Err(err) => last = Some(err),
            }
        }
        return Err(last.map_or_else(|| anyhow::anyhow!("no address"), Into::into))
            .with_context(|| format!("connecting to {host_port}"));
    } else {
        bail!("{address:?}: expected tcp:HOST:PORT or unix:PATH");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test fails by panicking

    use super::*;

    #[test]
    fn crontab_lines_run_each_job_as_its_user_into_the_container_log() {
        let job = Job {
            name: "chatmail-expire".into(),
            schedule: "2 0 * * *".into(),
            user: "vmail".into(),
            argv: vec!["/usr/local/bin/chatmail-expire".into(), "a b".into()],
        };
        assert_eq!(
            crontab(&[&job]).unwrap(),
            "# Written by cmdeploy container cron from the declared jobs.\n\
             # chatmail-expire\n\
             2 0 * * * root setpriv --reuid=vmail --regid=vmail --init-groups -- \
             /usr/local/bin/chatmail-expire 'a b' >/proc/1/fd/1 2>&1\n"
        );
        let bad = Job {
            argv: vec!["date".into(), "+%s".into()],
            ..job
        };
        assert!(crontab(&[&bad]).unwrap_err().to_string().contains("'%'"));
    }

    #[test]
    fn probes_tell_open_from_closed() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        probe(&format!("tcp:127.0.0.1:{port}")).unwrap();
        drop(listener);
        assert!(probe(&format!("tcp:127.0.0.1:{port}")).is_err());
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s.socket");
        assert!(probe(&format!("unix:{}", socket.display())).is_err());
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        probe(&format!("unix:{}", socket.display())).unwrap();
        assert!(probe("udp:1").is_err());
    }
}
