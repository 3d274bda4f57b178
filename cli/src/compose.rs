//! `cmdeploy compose`: a compose file for the relay's image, generated from the registry:
//! one service per declared container daemon (plus `init` and, with jobs, `cron`), each with
//! its health check, its capabilities and, as named volumes, the declared state and runtime
//! directories of its scope (`container::Scope`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chatmail_core::engine::Planned;
use chatmail_core::plan::{Probe, VolumeKind};
use chatmail_core::{RUN_LOCK_DIR, Registry};

use crate::container::{self, CRON, INIT, Scope};
use crate::init_stamp;

/// Where the image expects the settings file (its `CHATMAIL_INI`).
pub const IMAGE_INI: &str = "/etc/chatmail/chatmail.ini";
/// The entrypoint executable inside the image (the health checks run it).
pub const IMAGE_CMDEPLOY: &str = "/usr/local/bin/cmdeploy";
/// How often Docker runs each container's health check.
pub const HEALTH_INTERVAL: &str = "3s";
/// The image `cargo xtask image` tags by default.
pub const DEFAULT_IMAGE: &str = "chatmail-relay:latest";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The relay image the services run (built with `cargo xtask image`).
    #[arg(long, default_value = DEFAULT_IMAGE)]
    image: String,
    /// Write the compose file here instead of printing it.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Directory of template overrides (as for `run`).
    #[arg(long, env = "CMDEPLOY_TEMPLATES", value_name = "DIR")]
    templates: Option<PathBuf>,
}

/// One named volume: whether it is runtime-only, and why.
struct Volume {
    kind: VolumeKind,
    why: String,
}

pub fn run(config_path: &Path, args: &Args) -> Result<()> {
    let registry = Registry::linked()?;
    let config = crate::load_config(config_path, &registry)?;
    let plans = container::plan(&registry, &config, args.templates.as_deref())?;
    let ini_name = config_path
        .file_name()
        .map_or("chatmail.ini".into(), |n| n.to_string_lossy().into_owned());
    let text = render(
        &registry,
        &plans,
        &args.image,
        &ini_name,
        &config.mail_domain,
    )?;
    match &args.output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
        }
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

/// The compose file's text: services in registry order, volumes by name.
fn render(
    registry: &Registry,
    plans: &[Planned],
    image: &str,
    ini_name: &str,
    domain: &str,
) -> Result<String> {
    let mut volumes: BTreeMap<String, Volume> = BTreeMap::new();
    let lock = volume_name(Path::new(RUN_LOCK_DIR));
    volumes.insert(
        lock.clone(),
        Volume {
            kind: VolumeKind::Runtime,
            why: "the configure lock of init".into(),
        },
    );
    // Every container mounts the settings and the volumes of its scope.
    let mounts = |scope: &Scope| -> Vec<String> {
        let volumes = scope.volumes(plans).into_iter();
        let volumes = volumes.map(|v| format!("{}:{}", volume_name(&v.path), v.path.display()));
        std::iter::once(format!("./{ini_name}:{IMAGE_INI}:ro"))
            .chain(volumes)
            .collect()
    };
    let named = plans
        .iter()
        .flat_map(|p| p.activate.iter().flat_map(|a| &a.volumes))
        .filter(|v| v.kind != VolumeKind::Private);
    for volume in named {
        volumes.insert(
            volume_name(&volume.path),
            Volume {
                kind: volume.kind,
                why: volume.why.clone(),
            },
        );
    }

    let mut out = String::new();
    writeln!(
        out,
        "# The chatmail relay {domain} in containers: written by `cmdeploy compose` from the\n\
         # component registry. Keep it beside {ini_name}; after changing the settings or\n\
         # upgrading the image, write it again and run `docker-compose up -d`\n\
         # (or `podman-compose up -d`).\n\
         version: \"3.9\"\n\
         services:"
    )?;
    let all_scope = Scope::of(registry, plans, &registry.names())?;
    let mut init_mounts = mounts(&all_scope);
    init_mounts.push(format!("{lock}:{RUN_LOCK_DIR}"));
    let stamp = volume_name(Path::new(init_stamp::DIR));
    volumes.insert(
        stamp.clone(),
        Volume {
            kind: VolumeKind::State,
            why: "init's record of its last success (settings, environment, image)".into(),
        },
    );
    init_mounts.push(format!("{stamp}:{}", init_stamp::DIR));
    let init_tmpfs = container::writable(INIT, &all_scope, plans);
    // init validates every component's configuration (`nginx -t` binds its ports): it keeps
    // every capability a daemon declares.
    let daemons = container::daemons(plans);
    let all: Vec<String> = daemons
        .iter()
        .flat_map(|d| d.foreground.capabilities.iter().cloned())
        .collect();
    let init = Container {
        name: INIT,
        mounts: &init_mounts,
        tmpfs: &init_tmpfs,
        health: None,
        stop_signal: None,
        capabilities: &all,
        daemon: false,
    };
    service(&mut out, image, &init)?;
    for daemon in daemons {
        let scope = Scope::of(registry, plans, &[daemon.component])?;
        let container = Container {
            name: &daemon.name,
            mounts: &mounts(&scope),
            tmpfs: &container::writable(&daemon.name, &scope, plans),
            health: daemon.foreground.health.as_ref(),
            stop_signal: daemon.foreground.stop_signal.as_deref(),
            capabilities: &daemon.foreground.capabilities,
            daemon: true,
        };
        service(&mut out, image, &container)?;
    }
    let jobs = container::jobs(plans);
    if !jobs.is_empty() {
        let own: Vec<&str> = jobs.iter().map(|(component, _)| *component).collect();
        let scope = Scope::of(registry, plans, &own)?;
        let cron = Container {
            name: CRON,
            mounts: &mounts(&scope),
            tmpfs: &container::writable(CRON, &scope, plans),
            health: None,
            stop_signal: None,
            capabilities: &[],
            daemon: true,
        };
        service(&mut out, image, &cron)?;
    }
    writeln!(out, "volumes:")?;
    for (name, volume) in &volumes {
        writeln!(out, "  # {}", volume.why)?;
        match volume.kind {
            VolumeKind::State | VolumeKind::Secret => writeln!(out, "  {name}: {{}}")?,
            VolumeKind::Runtime | VolumeKind::Private => writeln!(
                out,
                "  {name}:\n    driver_opts: {{type: tmpfs, device: tmpfs, o: \"mode=0755\"}}"
            )?,
        }
    }
    Ok(out)
}

/// One service of the compose file.
struct Container<'a> {
    /// The service's name, which is also the entrypoint's argument.
    name: &'a str,
    /// `volumes:` entries: the settings file and named volumes.
    mounts: &'a [String],
    /// The tmpfs directories under its read-only root.
    tmpfs: &'a [PathBuf],
    health: Option<&'a Probe>,
    /// The signal that stops it, when not SIGTERM.
    stop_signal: Option<&'a str>,
    /// What the daemon needs beyond the entrypoint's capabilities.
    capabilities: &'a [String],
    /// A long-running daemon (restarted, started after init), not init.
    daemon: bool,
}

/// Appends one service: host networking, a read-only root with tmpfs directories, the
/// entrypoint's capabilities and the daemon's only, no new privileges (setuid programs gain
/// nothing), its mounts.
fn service(out: &mut String, image: &str, container: &Container) -> Result<()> {
    let Container {
        name,
        mounts,
        tmpfs,
        health,
        stop_signal,
        capabilities,
        daemon,
    } = *container;
    writeln!(out, "  {name}:")?;
    writeln!(out, "    image: {image}")?;
    writeln!(out, "    command: [{}]", quoted(&[name.to_owned()]))?;
    writeln!(out, "    network_mode: host")?;
    if let Some(signal) = stop_signal {
        writeln!(out, "    stop_signal: {signal}")?;
    }
    // A small init as PID 1 forwards SIGTERM to the daemon and reaps orphans; cron, and any
    // program that is PID 1 itself, would ignore the signal and be killed after the timeout.
    writeln!(out, "    init: true")?;
    let mut caps: Vec<String> = container::ENTRYPOINT_CAPABILITIES
        .iter()
        .map(|c| (*c).to_owned())
        .chain(capabilities.iter().cloned())
        .collect();
    caps.sort();
    caps.dedup();
    writeln!(out, "    cap_drop: [\"ALL\"]")?;
    writeln!(out, "    cap_add: [{}]", quoted(&caps))?;
    writeln!(out, "    security_opt: [\"no-new-privileges:true\"]")?;
    // The entrypoint fills each tmpfs with what the image holds there (owner and mode
    // included) before it configures.
    writeln!(out, "    read_only: true")?;
    writeln!(out, "    tmpfs:")?;
    for dir in tmpfs {
        let mode = if dir == Path::new("/tmp") {
            "1777"
        } else {
            "0755"
        };
        let entry = format!("{}:mode={mode}", dir.display());
        writeln!(out, "      - {}", quoted(&[entry]))?;
    }
    if daemon {
        writeln!(out, "    restart: unless-stopped")?;
        writeln!(out, "    depends_on:")?;
        writeln!(out, "      {INIT}:")?;
        writeln!(out, "        condition: service_completed_successfully")?;
    } else {
        writeln!(out, "    restart: \"no\"")?;
    }
    if let Some(probe) = health {
        let cmdeploy_probe =
            |address: String| vec![IMAGE_CMDEPLOY.to_owned(), "probe".to_owned(), address];
        let test = match probe {
            Probe::Tcp(port) => cmdeploy_probe(format!("tcp:127.0.0.1:{port}")),
            Probe::Unix(path) => cmdeploy_probe(format!("unix:{}", path.display())),
            Probe::Dict(path) => cmdeploy_probe(format!("dict:{}", path.display())),
            Probe::Smtp(port) => cmdeploy_probe(format!("smtp:127.0.0.1:{port}")),
            Probe::Imap(port) => cmdeploy_probe(format!("imap:127.0.0.1:{port}")),
            Probe::Command(argv) => argv.clone(),
        };
        writeln!(out, "    healthcheck:")?;
        writeln!(out, "      test: [\"CMD\", {}]", quoted(&test))?;
        // Docker runs the first check one interval after the start (20.10 and compose 1.29
        // have no `start_interval`): a short one makes the stack healthy within seconds. The
        // probes are quiet and cheap.
        writeln!(out, "      interval: {HEALTH_INTERVAL}")?;
        writeln!(out, "      timeout: 5s")?;
        writeln!(out, "      retries: 5")?;
        writeln!(out, "      start_period: 60s")?;
    }
    writeln!(out, "    volumes:")?;
    for mount in mounts {
        writeln!(out, "      - {}", quoted(std::slice::from_ref(mount)))?;
    }
    Ok(())
}

/// A volume's name from its path: `/var/spool/postfix` → `var-spool-postfix`.
fn volume_name(path: &Path) -> String {
    let name: String = path
        .to_string_lossy()
        .trim_matches('/')
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '.' => c,
            _ => '-',
        })
        .collect();
    name.trim_matches('-').to_owned()
}

/// YAML flow items: each string double-quoted (JSON escaping is valid YAML).
fn quoted(items: &[String]) -> String {
    items
        .iter()
        .map(|item| format!("{item:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_names_are_paths_with_dashes() {
        assert_eq!(
            volume_name(Path::new("/var/spool/postfix")),
            "var-spool-postfix"
        );
        assert_eq!(
            volume_name(Path::new("/home/vmail/mail/10.0.0.1")),
            "home-vmail-mail-10.0.0.1"
        );
        assert_eq!(volume_name(Path::new("/srv/[x]/mail")), "srv--x--mail");
    }
}
