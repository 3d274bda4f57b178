//! `cmdeploy run`: plans every selected component, then installs, configures and activates,
//! here or (by default) on the relay over SSH.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chatmail_core::config::{Config, TlsMode};
use chatmail_core::engine::{self, Engine, Phases, Planned};
use chatmail_core::{Facts, Registry, RunLock, Target, Templates};

use chatmail_dns::{Dns, RelayData};

use crate::fleet;
use crate::progress;
use crate::remote::{Place, SshArgs};
use crate::say::{green, red};
use crate::ship::{self, Bundle};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    ssh: SshArgs,
    #[command(flatten)]
    fleet: fleet::FleetArgs,
    /// With --inventory: a rolling deploy, N relays at a time, that stops at the first
    /// failure (the relays after it are skipped).
    #[arg(long, value_name = "N", requires = "inventory", conflicts_with = "jobs",
          value_parser = clap::value_parser!(u16).range(1..))]
    serial: Option<u16>,
    /// Only these components (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    only: Vec<String>,
    /// Leave out these components (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    skip: Vec<String>,
    /// Which phases to run, always in the order install, configure, activate.
    #[arg(long, default_value = "install,configure,activate", value_parser = Phases::parse)]
    phase: Phases,
    /// With `--phase install`: only the Debian packages, apt preferences and pinned `.deb`
    /// files (an image's first layer, which then changes only when the package lists do).
    #[arg(long)]
    packages_only: bool,
    /// Show what would change (diffs, packages, restarts) and change nothing. Over SSH the
    /// deploy bundle is still copied to the relay (/usr/local/lib/cmdeploy).
    #[arg(long)]
    dry_run: bool,
    /// Do not check the relay's DNS first. Otherwise the relay must resolve its domain to an
    /// address (A or AAAA), and in ACME mode `mta-sts.` and `www.` must be CNAMEs of it;
    /// IPv4 relays and `--root` skip the check anyway.
    #[arg(long)]
    skip_dns_check: bool,
    /// Deploy everything, but keep Dovecot and Postfix stopped and disabled (e.g. while the
    /// mail moves from another server).
    #[arg(long)]
    disable_mail: bool,
    /// Also apply every pending Debian package upgrade now (`apt-get update` and `apt-get
    /// upgrade`, keeping the relay's configuration files), then restart the services that
    /// still run replaced files. Unattended-upgrades applies security updates daily anyway;
    /// this is for point releases, or a fix that should not wait. With --dry-run: the
    /// upgrades the present package lists know of.
    #[arg(long)]
    upgrade: bool,
    /// Deploy only the website (the same as `--only website`).
    #[arg(long, conflicts_with_all = ["only", "skip"])]
    website_only: bool,
    /// Deploy into this directory on this machine instead of a running system (commands run
    /// in a chroot); implies `--ssh-host @local`.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Directory holding the relay's own programs (filtermail, doveauth, ...) to install;
    /// by default the directory of this cmdeploy executable.
    #[arg(long, env = "CMDEPLOY_BINARIES", value_name = "DIR")]
    binaries: Option<PathBuf>,
    /// Directory of template overrides: a file at <component>/<name> replaces that template.
    #[arg(long, env = "CMDEPLOY_TEMPLATES", value_name = "DIR")]
    templates: Option<PathBuf>,
}

pub fn run(config_path: &Path, verbose: bool, args: &Args) -> Result<ExitCode> {
    if args.fleet.inventory.is_some() {
        if let Some(root) = &args.root {
            bail!(
                "--root {} deploys a directory on this machine; it does not go with --inventory",
                root.display()
            );
        }
        return fleet::run(&args.fleet, args.serial, |relay| {
            fleet_args(args, verbose, relay)
        });
    }
    let registry = Registry::linked()?;
    // Install alone needs no settings: it is the same for every relay.
    let config = match args.phase.need_config() {
        true => Some(crate::load_config(config_path, &registry)?),
        false => None,
    };
    if let Some(config) = &config {
        config.check_privacy()?;
    }
    let place = match &args.root {
        None => args.ssh.place(config.as_ref())?,
        Some(root) => match args.ssh.ssh_host.as_deref().map(Place::parse).transpose()? {
            None | Some(Place::Local) => Place::Local,
            Some(Place::Ssh(ssh)) => bail!(
                "--root {} is a directory on this machine; it cannot be deployed over SSH to {}",
                root.display(),
                ssh.destination
            ),
        },
    };
    let components = match args.website_only {
        true => registry.select(&[WEBSITE.to_owned()], &[])?,
        false => registry.select(&args.only, &args.skip)?,
    };
    // Over SSH the plan is made here too: bad settings or templates fail before the relay is
    // touched, and the plan names the programs to ship.
    let root = match &place {
        Place::Local => args.root.as_deref().unwrap_or(Path::new("/")),
        Place::Ssh(_) => Path::new("/"),
    };
    let target = Target::new(root, verbose)?;
    let facts = Facts::detect(&target, crate::binaries_dir(args.binaries.as_deref())?);
    // All components' templates, so that an override for one not selected is no error.
    let templates = Templates::new(&registry.select(&[], &[])?, args.templates.as_deref())?;
    let mut plans = engine::plan(&components, config.as_ref(), &facts, &templates)?;
    if args.disable_mail {
        disable_mail(&mut plans);
    }

    let code = match &place {
        Place::Local => {
            let precheck = match config.as_ref() {
                Some(config) if args.root.is_none() && !args.skip_dns_check => {
                    dns_precheck(config, verbose)?
                }
                _ => Precheck::NotRun,
            };
            if let Precheck::Failed = precheck {
                return Ok(ExitCode::FAILURE);
            }
            let code = deploy_here(&target, &facts, &plans, verbose, args)?;
            if let Some(config) = &config
                && !args.dry_run
            {
                completed(config, args.website_only, &precheck);
            }
            code
        }
        Place::Ssh(ssh) => {
            let bundle = Bundle {
                programs: std::iter::once(std::env::current_exe()?)
                    .chain(crate::list::bundled(&plans).map(Path::to_owned))
                    .collect(),
                settings: config.as_ref().map(Config::effective_ini),
                templates: args.templates.clone(),
            };
            ship::deploy(ssh, &bundle, &remote_args(args, verbose, &bundle), None)?
        }
    };
    if let Some(config) = &config
        && !config.unused_keys.is_empty()
    {
        let keys: Vec<&str> = config.unused_keys.iter().map(|u| u.key.as_str()).collect();
        eprintln!(
            "WARNING: {} contains settings that have no effect: {}",
            config.origin.display(),
            keys.join(", ")
        );
        eprintln!("Remove them to silence this warning.");
    }
    Ok(code)
}

/// The component `--website-only` deploys.
const WEBSITE: &str = "website";
/// The components whose services `--disable-mail` keeps stopped.
const MAIL: [&str; 2] = ["dovecot", "postfix"];

/// Keeps the mail servers' services stopped and disabled; everything else is deployed.
fn disable_mail(plans: &mut [Planned]) {
    let mail = plans.iter_mut().filter(|p| MAIL.contains(&p.component));
    for activate in mail.filter_map(|p| p.activate.as_mut()) {
        for service in &mut activate.services {
            service.running = false;
            service.enabled = false;
        }
    }
}

/// What the DNS pre-check found.
enum Precheck {
    /// Skipped (`--skip-dns-check`, `--root`, no settings) or not needed (IPv4 relays).
    NotRun,
    /// The records are there; what DNS and acmetool said.
    Passed(Box<RelayData>),
    /// A record is missing; the problem is printed.
    Failed,
}

/// Upstream's DNS pre-check, asked of this machine's resolvers (it runs on the relay).
fn dns_precheck(config: &Config, verbose: bool) -> Result<Precheck> {
    if config.ipv4_relay.is_some() {
        return Ok(Precheck::NotRun);
    }
    let domain = &config.mail_domain_bare;
    let acme = config.tls.mode == TlsMode::Acme;
    let dns = Dns::system(verbose)?;
    let data = RelayData::collect(domain, &dns, &Target::new(Path::new("/"), verbose)?)
        .context("checking the relay's DNS records (--skip-dns-check skips it)")?;
    if let Some(problem) = data.precheck(domain, acme) {
        red(&problem);
        return Ok(Precheck::Failed);
    }
    Ok(Precheck::Passed(Box::new(data)))
}

/// Upstream's closing words: what to do next.
fn completed(config: &Config, website_only: bool, precheck: &Precheck) {
    let acme = config.tls.mode == TlsMode::Acme;
    let no_account = matches!(precheck, Precheck::Passed(data) if data.acme_account_url.is_empty());
    if website_only {
        green("Website deployment completed.");
    } else if acme && no_account {
        red("Deploy completed but letsencrypt not configured");
        red("Run 'cmdeploy run' again");
    } else if config.ipv4_relay.is_some() {
        green("Deploy completed.");
    } else {
        green("Deploy completed, call `cmdeploy dns` next.");
    }
}

/// Deploys this machine (or `--root`).
fn deploy_here(
    target: &Target,
    facts: &Facts,
    plans: &[Planned],
    verbose: bool,
    args: &Args,
) -> Result<ExitCode> {
    let _lock = RunLock::acquire(target)?;
    let mut engine = Engine::new(target, facts, args.dry_run)?;
    engine.observe(progress::printer(args.dry_run, verbose));
    engine.upgrade(args.upgrade);
    let result = match args.packages_only {
        true if args.phase != Phases::INSTALL => Err(anyhow::anyhow!(
            "--packages-only goes with --phase install only"
        )),
        true => engine.install_packages(plans),
        false if args.upgrade && !args.phase.install => Err(anyhow::anyhow!(
            "--upgrade goes with the install phase (--phase install, or all phases)"
        )),
        false => engine.run(plans, args.phase),
    };
    let names: Vec<&str> = plans.iter().map(|p| p.component).collect();
    println!();
    print!(
        "{}",
        progress::summary(&engine.report, &names, args.dry_run)
    );
    result.context("deploy failed")?;
    println!("{}", progress::outcome(engine.report.total(), args.dry_run));
    Ok(ExitCode::SUCCESS)
}

/// The arguments of the `cmdeploy run` that runs on the relay: the same choices, the copied
/// settings and overrides, and `--ssh-host @local`.
fn remote_args(args: &Args, verbose: bool, bundle: &Bundle) -> Vec<String> {
    let mut out: Vec<String> = ["run", "--ssh-host", "@local"].map(String::from).into();
    let paths = [
        ("--config", bundle.remote_settings()),
        ("--templates", bundle.remote_templates()),
    ];
    for (flag, path) in paths {
        if let Some(path) = path {
            out.extend([flag.to_owned(), path]);
        }
    }
    out.extend(choices(args, verbose));
    out
}

/// The arguments of one relay's `cmdeploy run` in a fleet run: its settings, SSH host and
/// templates from the inventory, and this run's choices.
fn fleet_args(args: &Args, verbose: bool, relay: &fleet::Relay) -> Vec<OsString> {
    let mut out = fleet::relay_args("run", relay);
    if let Some(templates) = relay.templates.as_ref().or(args.templates.as_ref()) {
        out.extend(["--templates".into(), templates.into()]);
    }
    if let Some(binaries) = &args.binaries {
        out.extend(["--binaries".into(), binaries.into()]);
    }
    if relay.skip_dns_check && !args.skip_dns_check {
        out.push("--skip-dns-check".into());
    }
    out.extend(choices(args, verbose).into_iter().map(OsString::from));
    out
}

/// This run's choices as arguments: phases, components, flags.
fn choices(args: &Args, verbose: bool) -> Vec<String> {
    let mut out = vec!["--phase".to_owned(), args.phase.to_string()];
    for (flag, names) in [("--only", &args.only), ("--skip", &args.skip)] {
        if !names.is_empty() {
            out.extend([flag.to_owned(), names.join(",")]);
        }
    }
    let flags = [
        ("--packages-only", args.packages_only),
        ("--skip-dns-check", args.skip_dns_check),
        ("--disable-mail", args.disable_mail),
        ("--upgrade", args.upgrade),
        ("--website-only", args.website_only),
        ("--dry-run", args.dry_run),
        ("--verbose", verbose),
    ];
    for (flag, on) in flags {
        if on {
            out.push(flag.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        run: Args,
    }

    #[test]
    fn the_relay_runs_the_same_choices_with_the_copied_settings() {
        let cli = Cli::parse_from([
            "run",
            "--ssh-host",
            "relay.example.org",
            "--only",
            "postfix,dovecot",
            "--phase",
            "activate,configure",
            "--dry-run",
            "--templates",
            "/home/op/overrides",
            "--binaries",
            "/home/op/bin",
        ]);
        let bundle = Bundle {
            programs: Vec::new(),
            settings: Some("[params]\n".into()),
            templates: cli.run.templates.clone(),
        };
        assert_eq!(
            remote_args(&cli.run, true, &bundle).join(" "),
            "run --ssh-host @local --config /usr/local/lib/cmdeploy/chatmail.ini \
             --templates /usr/local/lib/cmdeploy/templates \
             --phase configure,activate --only postfix,dovecot --dry-run --verbose"
        );
        let cli = Cli::parse_from(["run", "--skip-dns-check", "--disable-mail"]);
        assert_eq!(
            remote_args(&cli.run, false, &bundle).join(" "),
            "run --ssh-host @local --config /usr/local/lib/cmdeploy/chatmail.ini \
             --templates /usr/local/lib/cmdeploy/templates \
             --phase install,configure,activate --skip-dns-check --disable-mail"
        );
    }

    #[test]
    fn disable_mail_stops_dovecot_and_postfix_and_nothing_else() {
        let config = Config::parse(
            "[params]\nmail_domain = chat.example.org\n",
            Path::new("chatmail.ini"),
            &|_| None,
        )
        .unwrap();
        let registry = Registry::linked().unwrap();
        let components = registry.select(&[], &[]).unwrap();
        let target = Target::new(Path::new("/"), false).unwrap();
        let facts = Facts::detect(&target, "/nonexistent".into());
        let templates = Templates::new(&components, None).unwrap();
        let mut plans = engine::plan(&components, Some(&config), &facts, &templates).unwrap();
        disable_mail(&mut plans);
        for planned in &plans {
            let services = planned.activate.iter().flat_map(|a| &a.services);
            for service in services {
                let mail = MAIL.contains(&planned.component);
                if mail {
                    assert!(!service.running && !service.enabled, "{}", service.unit);
                }
                if planned.component == "nginx" {
                    assert!(service.running, "the website stays up");
                }
            }
        }
        let dovecot = plans.iter().find(|p| p.component == "dovecot").unwrap();
        assert!(!dovecot.activate.as_ref().unwrap().services.is_empty());
    }
}
