//! `cmdeploy container SERVICE`: the entrypoint of the relay's image. Configures the
//! container from the mounted chatmail.ini and the environment, then execs one declared
//! foreground command (or stays its parent, for a daemon to wake at a stop); `init` only
//! configures (the one-shot service every other waits for), `cron` runs the declared periodic
//! jobs. Also `cmdeploy probe`, the health checks.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chatmail_core::engine::{self, Engine, Phases, Planned};
use chatmail_core::plan::{Foreground, Job, Volume, VolumeKind};
use chatmail_core::{Facts, Registry, RunLock, Target, Templates, shell_words};

use crate::{init_stamp, progress};

/// The one-shot service that configures the shared volumes before any daemon starts.
pub const INIT: &str = "init";
/// The service that runs the periodic jobs with Debian's cron.
pub const CRON: &str = "cron";
/// The Linux capabilities every container keeps: the entrypoint's configure sets owners and
/// modes of files it may not own (`CHOWN`, `DAC_OVERRIDE`, `FOWNER`, `FSETID`), and drops to a
/// service user with `setpriv` (`SETUID`, `SETGID`); the container's init process (`init:
/// true`; podman's catatonit) forwards the stop signal to that user's daemon (`KILL`: without
/// it podman kills the daemon when the grace period ends). A daemon declares what it needs
/// beyond.
pub const ENTRYPOINT_CAPABILITIES: [&str; 7] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
];
/// Where cron finds the jobs in a container.
const CRONTAB: &str = "/etc/cron.d/cmdeploy-jobs";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// `init`, `cron`, or a daemon's service name as in the compose file (`postfix`,
    /// `dovecot`, `doveauth`, ...).
    service: String,
    /// Directory of template overrides (as for `run`).
    #[arg(long, env = "CMDEPLOY_TEMPLATES", value_name = "DIR")]
    templates: Option<PathBuf>,
}

/// What a container runs after configure.
enum Role {
    /// With every daemon's commands that prepare its volumes.
    Init(Vec<Vec<String>>),
    Cron(Vec<Job>),
    Daemon(Foreground),
}

/// A daemon's container service, as the plans declare it.
pub struct Daemon<'p> {
    /// The service's name: the unit's without `.service`.
    pub name: String,
    /// The component that declares it.
    pub component: &'static str,
    /// How it runs in its container.
    pub foreground: &'p Foreground,
}

/// The container services the plans declare: one per running unit with a container form.
pub fn daemons(plans: &[Planned]) -> Vec<Daemon<'_>> {
    plans
        .iter()
        .flat_map(|p| {
            let services = p.activate.iter().flat_map(|a| &a.services);
            services.map(move |service| (p.component, service))
        })
        .filter(|(_, service)| service.running)
        .filter_map(|(component, service)| {
            let name = service.unit.trim_end_matches(".service").to_owned();
            let foreground = service.container.as_ref()?;
            Some(Daemon {
                name,
                component,
                foreground,
            })
        })
        .collect()
}

/// Every periodic job the plans declare, with the component declaring it.
pub fn jobs(plans: &[Planned]) -> Vec<(&'static str, &Job)> {
    plans
        .iter()
        .flat_map(|p| {
            let jobs = p.activate.iter().flat_map(|a| &a.jobs);
            jobs.map(move |job| (p.component, job))
        })
        .collect()
}

/// What a container of some components' daemons or jobs sees of the relay.
pub struct Scope {
    /// The components it configures, in registry order: its own, and each they read
    /// ([`Activate::reads`](chatmail_core::Activate::reads): the certificate links of `tls`,
    /// the settings of `chatmaild`, the pages of `website`).
    pub configures: Vec<&'static str>,
    /// Its own components, whose volumes it mounts.
    own: Vec<&'static str>,
    /// The components it uses, whose volumes but their secrets and private ones it mounts.
    used: Vec<&'static str>,
}

impl Scope {
    /// The scope of a container running what `own` declares (`init` is the scope of every
    /// component). A used component that is not registered, or a read one that the reader
    /// does not come after, is an error.
    pub fn of(registry: &Registry, plans: &[Planned], own: &[&str]) -> Result<Scope> {
        let mut uses: Vec<&str> = Vec::new();
        let mut reads: Vec<&str> = Vec::new();
        for planned in plans.iter().filter(|p| own.contains(&p.component)) {
            let Some(activate) = &planned.activate else {
                continue;
            };
            for used in &activate.uses {
                if registry.get(used).is_none() {
                    bail!(
                        "component {} uses {used:?}, which is not registered",
                        planned.component
                    );
                }
                uses.push(used);
            }
            let after = registry
                .get(planned.component)
                .map_or(&[][..], |c| c.after());
            for read in &activate.reads {
                if !after.contains(&read.as_str()) {
                    bail!(
                        "component {} reads the files of {read:?}, which it does not come after",
                        planned.component
                    );
                }
                reads.push(read);
            }
        }
        let names = registry.names();
        let select =
            |keep: &dyn Fn(&str) -> bool| names.iter().copied().filter(|n| keep(n)).collect();
        Ok(Scope {
            configures: select(&|n| own.contains(&n) || reads.contains(&n)),
            own: select(&|n| own.contains(&n)),
            used: select(&|n| !own.contains(&n) && uses.contains(&n)),
        })
    }

    /// The named volumes it mounts: every one of its own components' but the private ones
    /// (tmpfs, see [`Scope::writable`]), the used ones' but secrets.
    pub fn volumes<'p>(&self, plans: &'p [Planned]) -> Vec<&'p Volume> {
        plans
            .iter()
            .flat_map(|p| {
                let own = self.own.contains(&p.component);
                let used = self.used.contains(&p.component);
                let volumes = p.activate.iter().flat_map(|a| &a.volumes);
                volumes.filter(move |v| match v.kind {
                    VolumeKind::Private => false,
                    VolumeKind::Secret => own,
                    VolumeKind::State | VolumeKind::Runtime => own || used,
                })
            })
            .collect()
    }

    /// The directories it writes outside its volumes, each a tmpfs under its read-only root:
    /// [`WRITABLE`], those holding what configure writes for its components (files, links,
    /// directories, removals), its own components' private directories and `extra`; none
    /// inside another.
    pub fn writable(&self, plans: &[Planned], extra: &[&str]) -> Vec<PathBuf> {
        let mounted: Vec<&Path> = self
            .volumes(plans)
            .iter()
            .map(|v| v.path.as_path())
            .collect();
        let outside = |path: &&Path| !mounted.iter().any(|m| path.starts_with(m));
        let mut dirs: Vec<PathBuf> = WRITABLE.iter().chain(extra).map(PathBuf::from).collect();
        for planned in plans {
            if let Some(plan) = planned
                .configure
                .as_ref()
                .filter(|_| self.configures.contains(&planned.component))
            {
                let written = (plan.files.iter().map(|f| f.path.as_path()))
                    .chain(plan.dirs.iter().map(|d| d.path.as_path()))
                    .chain(plan.removals.iter().map(PathBuf::as_path))
                    .chain(
                        plan.generates
                            .iter()
                            .flat_map(|g| &g.creates)
                            .map(PathBuf::as_path),
                    );
                dirs.extend(
                    written
                        .filter(outside)
                        .filter_map(Path::parent)
                        .map(Path::to_owned),
                );
            }
            if self.own.contains(&planned.component) {
                let volumes = planned.activate.iter().flat_map(|a| &a.volumes);
                let private = volumes.filter(|v| v.kind == VolumeKind::Private);
                dirs.extend(private.map(|v| v.path.clone()));
            }
        }
        // Sorted by components, a directory comes right before those inside it.
        dirs.sort();
        dirs.dedup();
        let mut kept: Vec<PathBuf> = Vec::new();
        for dir in dirs {
            if !kept.iter().any(|k| dir.starts_with(k)) {
                kept.push(dir);
            }
        }
        kept
    }
}

/// Directories every container writes under its read-only root: `/run` (pid files, the
/// probes' stamps), `/tmp`, and the engine's state (`/var/lib/cmdeploy`: staged files,
/// owed restarts, the manifest).
pub const WRITABLE: [&str; 3] = ["/run", "/tmp", "/var/lib/cmdeploy"];

/// Where the image keeps a copy of what it holds in the directories that are tmpfs in
/// containers (`cargo xtask image` makes it), from which the entrypoint fills them.
pub const SEED: &str = "/usr/local/share/cmdeploy/seed";

/// The tmpfs directories of `service`'s container (`init`, `cron` or a daemon) in `scope`.
pub fn writable(service: &str, scope: &Scope, plans: &[Planned]) -> Vec<PathBuf> {
    let crontab = Path::new(CRONTAB).parent().and_then(Path::to_str);
    let extra: Vec<&str> = crontab.filter(|_| service == CRON).into_iter().collect();
    scope.writable(plans, &extra)
}

/// Fills the empty tmpfs at `dir` with what the image holds there (its copy under [`SEED`]),
/// owners and modes kept. What is already there stays: the engine's mounts inside it
/// (`/etc/hosts`, volumes, the settings file) and the directories holding them.
fn seed(dir: &Path) -> Result<()> {
    let from = Path::new(SEED).join(dir.strip_prefix("/").unwrap_or(dir));
    let Ok(meta) = std::fs::symlink_metadata(&from) else {
        return Ok(());
    };
    let device = std::fs::metadata(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .dev();
    copy_tree(&from, dir, device).with_context(|| format!("filling {}", dir.display()))?;
    own_like(dir, &meta)
}

/// Copies what `from` holds into `to` (on `device`), leaving existing entries alone but
/// merging into directories of that device.
fn copy_tree(from: &Path, to: &Path, device: u64) -> Result<()> {
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let source = entry?.path();
        let Some(name) = source.file_name() else {
            continue;
        };
        let target = to.join(name);
        let meta = std::fs::symlink_metadata(&source)?;
        if let Ok(existing) = std::fs::symlink_metadata(&target) {
            if existing.is_dir() && meta.is_dir() && existing.dev() == device {
                copy_tree(&source, &target, device)?;
            }
            continue;
        }
        let kind = meta.file_type();
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&source)?, &target)?;
        } else if kind.is_dir() {
            std::fs::create_dir(&target)?;
            copy_tree(&source, &target, device)?;
        } else if kind.is_file() {
            std::fs::copy(&source, &target)
                .with_context(|| format!("copying {}", source.display()))?;
        } else {
            // Sockets and other special files are made by the daemons, never copied.
            continue;
        }
        own_like(&target, &meta)?;
    }
    Ok(())
}

/// Gives `path` the owner and (unless a link) the mode `meta` describes; the mode last,
/// since a change of owner clears the set-id bits.
fn own_like(path: &Path, meta: &std::fs::Metadata) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(meta.uid()), Some(meta.gid()))
        .with_context(|| format!("owning {}", path.display()))?;
    if !meta.file_type().is_symlink() {
        let mode = std::fs::Permissions::from_mode(meta.mode());
        std::fs::set_permissions(path, mode)
            .with_context(|| format!("setting the mode of {}", path.display()))?;
    }
    Ok(())
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
    let (role, own): (Role, Vec<&str>) = match args.service.as_str() {
        INIT => {
            let prepare = daemons.iter().flat_map(|d| d.foreground.prepare.clone());
            (Role::Init(prepare.collect()), registry.names())
        }
        CRON => {
            let jobs = jobs(&plans);
            let own = jobs.iter().map(|(component, _)| *component).collect();
            let jobs = jobs.into_iter().map(|(_, job)| job.clone()).collect();
            (Role::Cron(jobs), own)
        }
        name => match daemons.iter().find(|d| d.name == name) {
            Some(daemon) => (
                Role::Daemon(daemon.foreground.clone()),
                vec![daemon.component],
            ),
            None => {
                let names: Vec<&str> = daemons.iter().map(|d| d.name.as_str()).collect();
                bail!(
                    "no container service {name:?} in this configuration; services: {INIT}, \
                     {CRON}, {}",
                    names.join(", ")
                );
            }
        },
    };
    let scope = Scope::of(&registry, &plans, &own)?;
    let tmpfs = writable(&args.service, &scope, &plans);
    let own = scope.configures;
    let target = Target::new(Path::new("/"), verbose)?;
    let facts = Facts::detect(&target, crate::binaries_dir(None)?);
    if !facts.container {
        bail!(
            "cmdeploy container is the entrypoint of the relay's image; use `cmdeploy run` on a host"
        );
    }
    // The root is read-only: what the container writes goes to its tmpfs directories, filled
    // first with what the image holds there.
    for dir in &tmpfs {
        seed(dir)?;
    }
    let init = matches!(role, Role::Init(_));
    let mut plans: Vec<Planned> = plans
        .into_iter()
        .filter(|p| own.contains(&p.component))
        .collect();
    if !init {
        // init validated these very files (same image, settings and environment) before any
        // other container started, and a fresh container has no live file that a failed
        // validation would protect: the daemon's own start is the check.
        for configure in plans.iter_mut().filter_map(|p| p.configure.as_mut()) {
            configure.validators.clear();
        }
    }
    // init with the settings, environment and image of its last success has nothing to do
    // (template overrides are not part of the record: with them it always configures).
    let stamp = match role {
        Role::Init(_) if args.templates.is_none() => Some(init_stamp::Stamp::of(config_path)?),
        _ => None,
    };
    if stamp.as_ref().is_some_and(|stamp| stamp.done(&plans)) {
        println!("init: configured with these settings and this image already, secrets in place");
        return Ok(());
    }
    // Only init takes the run lock: it makes the secrets, and every other container starts
    // after it succeeded, so they find them made and configure side by side.
    let lock = init;
    configure(&target, &facts, &plans, lock, verbose)
        .with_context(|| format!("configuring the {} container", args.service))?;
    // Just written, but read at once by the daemon (Postfix would wait for them to "cool
    // down"): nothing here reads their times.
    let written = plans.iter().filter_map(|p| p.configure.as_ref());
    for file in written.flat_map(|c| &c.files) {
        chatmail_core::backdate(&file.path)?;
    }
    match role {
        Role::Init(prepare) => {
            for argv in &prepare {
                println!("{}: prepare {}", args.service, shell_words(argv));
                target
                    .run(argv, &[])
                    .with_context(|| format!("preparing the volumes: {}", shell_words(argv)))?;
            }
            stamp.map_or(Ok(()), |stamp| stamp.record())
        }
        Role::Cron(jobs) => {
            let jobs: Vec<&Job> = jobs.iter().collect();
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
            match &foreground.wake_on_stop {
                Some(socket) => supervise(&foreground.argv, socket, &args.service),
                None => exec(&foreground.argv, &args.service),
            }
        }
    }
}

/// Configures the components of `plans`; with `lock`, holding the run lock in the volume all
/// containers share, so that two inits never make a secret twice.
fn configure(
    target: &Target,
    facts: &Facts,
    plans: &[Planned],
    lock: bool,
    verbose: bool,
) -> Result<()> {
    let _lock = lock.then(|| RunLock::wait(target)).transpose()?;
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

/// Runs `argv` as this process's child and exits as it does. A stop request (SIGTERM, SIGINT)
/// is passed on as SIGTERM, then `socket` is connected to, so that a daemon that checks for a
/// stop only when a connection arrives stops at once.
fn supervise(argv: &[String], socket: &Path, service: &str) -> Result<()> {
    let (program, rest) = argv.split_first().context("empty foreground command")?;
    println!("{service}: run {}", shell_words(argv));
    std::io::stdout().flush()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the supervisor's runtime")?;
    let status = runtime.block_on(async {
        let mut stop = chatmail_shutdown::Stop::install().context("handling SIGTERM and SIGINT")?;
        let mut child = tokio::process::Command::new(program)
            .args(rest)
            .spawn()
            .with_context(|| format!("starting {}", shell_words(argv)))?;
        tokio::select! {
            status = child.wait() => return Ok(status?),
            () = stop.requested() => {}
        }
        let pid = child.id().and_then(|id| i32::try_from(id).ok());
        if let Some(pid) = pid.and_then(rustix::process::Pid::from_raw) {
            // It may have exited meanwhile; its status says how.
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        // A connection that arrives before the daemon's own handler saw the signal wakes it
        // too early: knock until it exits. A refused connection means it closed its socket.
        loop {
            let _ = tokio::net::UnixStream::connect(socket).await;
            let knock = std::time::Duration::from_millis(200);
            if let Ok(status) = tokio::time::timeout(knock, child.wait()).await {
                break anyhow::Ok(status?);
            }
        }
    })?;
    println!("{service}: {program} {status}");
    std::io::stdout().flush()?;
    let code = status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal));
    std::process::exit(code.unwrap_or(1))
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
}
