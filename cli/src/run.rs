//! `cmdeploy run`: plans every selected component, then installs, configures and activates,
//! here or (by default) on the relay over SSH.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chatmail_core::config::Config;
use chatmail_core::engine::{self, Engine, Phases, Planned};
use chatmail_core::{Facts, ProcMount, Registry, RunLock, Target, Templates};

use crate::remote::{Place, SshArgs};
use crate::ship::{self, Bundle};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    ssh: SshArgs,
    /// Only these components (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    only: Vec<String>,
    /// Leave out these components (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    skip: Vec<String>,
    /// Which phases to run, always in the order install, configure, activate.
    #[arg(long, default_value = "install,configure,activate", value_parser = Phases::parse)]
    phase: Phases,
    /// With `--phase install`: only the Debian packages (an image's first layer, which then
    /// changes only when the package lists do).
    #[arg(long)]
    packages_only: bool,
    /// Show what would change (diffs, packages, restarts) and change nothing. Over SSH the
    /// deploy bundle is still copied to the relay (/usr/local/lib/cmdeploy).
    #[arg(long)]
    dry_run: bool,
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
    let components = registry.select(&args.only, &args.skip)?;
    // Over SSH the plan is made here too: bad settings or templates fail before the relay is
    // touched, and the plan names the programs to ship.
    let root = match &place {
        Place::Local => args.root.as_deref().unwrap_or(Path::new("/")),
        Place::Ssh(_) => Path::new("/"),
    };
    let target = Target::new(root, verbose)?;
    let facts = Facts::detect(&target, crate::binaries_dir(args.binaries.as_deref())?);
    let templates = Templates::new(&components, args.templates.as_deref())?;
    let plans = engine::plan(&components, config.as_ref(), &facts, &templates)?;

    let code = match &place {
        Place::Local => deploy_here(&target, &facts, &plans, verbose, args)?,
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

/// Deploys this machine (or `--root`).
fn deploy_here(
    target: &Target,
    facts: &Facts,
    plans: &[Planned],
    verbose: bool,
    args: &Args,
) -> Result<ExitCode> {
    let _lock = RunLock::acquire(target)?;
    let _proc = match args.dry_run {
        true => None,
        false => Some(ProcMount::ensure(target)?),
    };
    let mut engine = Engine::new(target, facts, args.dry_run, verbose)?;
    let result = match args.packages_only {
        true if args.phase != Phases::INSTALL => Err(anyhow::anyhow!(
            "--packages-only goes with --phase install only"
        )),
        true => engine.install_packages(plans),
        false => engine.run(plans, args.phase),
    };
    let names: Vec<&str> = plans.iter().map(|p| p.component).collect();
    println!();
    print!("{}", engine.report.summary(&names, args.dry_run));
    result.context("deploy failed")?;
    match (engine.report.total(), args.dry_run) {
        (0, _) => println!("nothing to change"),
        (n, true) => println!("dry run: {n} change(s) planned, nothing changed"),
        (n, false) => println!("deploy completed: {n} change(s)"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The arguments of the `cmdeploy run` that runs on the relay: the same choices, the copied
/// settings and overrides, and `--ssh-host @local`.
fn remote_args(args: &Args, verbose: bool, bundle: &Bundle) -> Vec<String> {
    let mut out: Vec<String> = ["run", "--ssh-host", "@local", "--phase"]
        .map(String::from)
        .into();
    out.push(args.phase.to_string());
    for (flag, names) in [("--only", &args.only), ("--skip", &args.skip)] {
        if !names.is_empty() {
            out.extend([flag.to_owned(), names.join(",")]);
        }
    }
    let paths = [
        ("--config", bundle.remote_settings()),
        ("--templates", bundle.remote_templates()),
    ];
    for (flag, path) in paths {
        if let Some(path) = path {
            out.extend([flag.to_owned(), path]);
        }
    }
    let flags = [
        ("--packages-only", args.packages_only),
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
            "run --ssh-host @local --phase configure,activate --only postfix,dovecot \
             --config /usr/local/lib/cmdeploy/chatmail.ini \
             --templates /usr/local/lib/cmdeploy/templates --dry-run --verbose"
        );
    }
}
