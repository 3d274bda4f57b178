//! `cmdeploy init DOMAIN`: writes a commented chatmail.ini.

use std::path::Path;

use anyhow::{Context, Result, bail};
use chatmail_core::config::{default_ini, is_valid_domain};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The relay's domain, or its IPv4 address.
    domain: String,
    /// Replace an existing file.
    #[arg(long)]
    force: bool,
}

pub fn run(path: &Path, args: &Args) -> Result<()> {
    if !is_valid_domain(&args.domain) {
        bail!(
            "{:?} is not a domain name (letters, digits, '-', '_', dots) or an IPv4 address",
            args.domain
        );
    }
    if path.exists() && !args.force {
        bail!(
            "{} exists, not modifying it (use --force to replace it)",
            path.display()
        );
    }
    std::fs::write(path, default_ini(&args.domain))
        .with_context(|| format!("writing {}", path.display()))?;
    println!("created {} for {}", path.display(), args.domain);
    Ok(())
}
