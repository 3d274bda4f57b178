//! `cmdeploy list`: the components in run order with what each declares.

use std::path::{Path, PathBuf};

use anyhow::Result;
use chatmail_core::engine::{self, Planned};
use chatmail_core::plan::DownloadSource;
use chatmail_core::{Facts, Registry, Target, Templates};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory of template overrides (as for `run`); the ones in effect are listed.
    #[arg(long, env = "CMDEPLOY_TEMPLATES", value_name = "DIR")]
    templates: Option<PathBuf>,
    /// Print only the Debian packages the install phase wants, one per line.
    #[arg(long)]
    packages: bool,
    /// Print only the relay's own programs that install copies from beside cmdeploy.
    #[arg(long, conflicts_with = "packages")]
    bundled: bool,
}

pub fn run(config_path: &Path, args: &Args) -> Result<()> {
    let registry = Registry::linked()?;
    let components = registry.select(&[], &[])?;
    let config = crate::load_config(config_path, &registry);
    let facts = Facts::detect(
        &Target::new(Path::new("/"), false)?,
        crate::binaries_dir(None)?,
    );
    let templates = Templates::new(&components, args.templates.as_deref())?;
    let plans = engine::plan(&components, config.as_ref().ok(), &facts, &templates)?;
    if args.packages {
        let mut seen = Vec::new();
        for package in plans.iter().flat_map(|p| &p.install.packages) {
            if !seen.contains(package) {
                println!("{package}");
                seen.push(package.clone());
            }
        }
        return Ok(());
    }
    if args.bundled {
        for name in bundled(&plans).filter_map(Path::file_name) {
            println!("{}", name.to_string_lossy());
        }
        return Ok(());
    }
    if let Err(err) = &config {
        println!("(no configure or activate details: {err:#})\n");
    }
    for (name, path) in templates.overridden() {
        println!("template {name} is overridden by {}", path.display());
    }
    for (component, planned) in components.iter().zip(&plans) {
        let state = match (&config, &planned.configure) {
            (Err(_), _) => "",
            (Ok(_), Some(_)) => "",
            (Ok(_), None) => "  (not used by this config)",
        };
        println!("{}{state}", component.name());
        if !component.after().is_empty() {
            println!("  after:    {}", component.after().join(", "));
        }
        let install = &planned.install;
        if !install.packages.is_empty() {
            println!("  packages: {}", install.packages.join(" "));
        }
        let files = install
            .apt_files
            .iter()
            .chain(&install.files)
            .chain(planned.configure.iter().flat_map(|c| &c.files));
        for file in files {
            println!("  file:     {}", file.path.display());
        }
        for download in &install.downloads {
            println!("  binary:   {}", download.dest.display());
        }
        for deb in &install.debs {
            let source = &deb.file.source;
            println!("  deb:      {} {} from {source}", deb.package, deb.version);
        }
        for service in planned.activate.iter().flat_map(|a| &a.services) {
            let state = if service.running {
                "running"
            } else {
                "stopped"
            };
            println!("  service:  {} ({state})", service.unit);
        }
    }
    Ok(())
}

/// The relay's own programs the plans install from beside cmdeploy (their paths here).
pub fn bundled(plans: &[Planned]) -> impl Iterator<Item = &Path> {
    plans
        .iter()
        .flat_map(|p| &p.install.downloads)
        .filter_map(|download| match &download.source {
            DownloadSource::Bundled(path) => Some(path.as_path()),
            _ => None,
        })
}
