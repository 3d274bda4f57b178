//! `cmdeploy run`: plans every selected component, then installs, configures and activates.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chatmail_core::engine::{self, Engine, Phases};
use chatmail_core::{Facts, ProcMount, Registry, RunLock, Target, Templates};

#[derive(Debug, clap::Args)]
pub struct Args {
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
    /// Show what would change (diffs, packages, restarts) and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Deploy into this directory instead of the running system (commands run in a chroot).
    #[arg(long, default_value = "/", value_name = "DIR")]
    root: PathBuf,
    /// Directory holding the relay's own programs (filtermail, doveauth, ...) to install;
    /// by default the directory of this cmdeploy executable.
    #[arg(long, env = "CMDEPLOY_BINARIES", value_name = "DIR")]
    binaries: Option<PathBuf>,
    /// Directory of template overrides: a file at <component>/<name> replaces that template.
    #[arg(long, env = "CMDEPLOY_TEMPLATES", value_name = "DIR")]
    templates: Option<PathBuf>,
}

pub fn run(config_path: &Path, verbose: bool, args: &Args) -> Result<()> {
    // Install alone needs no settings: it is the same for every relay.
    let config = match args.phase.need_config() {
        true => Some(crate::load_config(config_path)?),
        false => None,
    };
    if let Some(config) = &config {
        config.check_privacy()?;
    }
    let registry = Registry::linked()?;
    let components = registry.select(&args.only, &args.skip)?;
    let target = Target::new(&args.root, verbose)?;
    let facts = Facts::detect(&target, crate::binaries_dir(args.binaries.as_deref())?);
    let templates = Templates::new(&components, args.templates.as_deref())?;
    let plans = engine::plan(&components, config.as_ref(), &facts, &templates)?;

    let _lock = RunLock::acquire(&target)?;
    let _proc = match args.dry_run {
        true => None,
        false => Some(ProcMount::ensure(&target)?),
    };
    let mut engine = Engine::new(&target, &facts, args.dry_run, verbose)?;
    let result = match args.packages_only {
        true if args.phase != Phases::INSTALL => Err(anyhow::anyhow!(
            "--packages-only goes with --phase install only"
        )),
        true => engine.install_packages(&plans),
        false => engine.run(&plans, args.phase),
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
    Ok(())
}
