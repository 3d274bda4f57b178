//! `cmdeploy dns`: the DNS records the relay needs, checked against its authoritative name
//! servers, or written as a zone file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use chatmail_core::config::{Config, TlsMode};
use chatmail_core::{Registry, Target, argv};
use chatmail_dns::{Dns, RelayData, Report, check_zone, zone};

use crate::fleet;
use crate::remote::{Place, Ssh, SshArgs};
use crate::say::{green, red};
use crate::ship::{self, Bundle};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    ssh: SshArgs,
    #[command(flatten)]
    fleet: fleet::FleetArgs,
    /// Write the zone file to FILE (`-`: standard output) instead of checking the records in
    /// DNS. Over SSH the file is written here, on this machine.
    #[arg(long, value_name = "FILE", conflicts_with = "inventory")]
    zonefile: Option<PathBuf>,
    /// Read the DKIM key and acmetool's account from this root directory on this machine
    /// instead of the relay's `/` (acmetool runs in a chroot there); implies `--ssh-host @local`.
    #[arg(long, value_name = "DIR", conflicts_with = "inventory")]
    root: Option<PathBuf>,
}

pub fn run(config_path: &Path, verbose: bool, args: &Args) -> Result<ExitCode> {
    if args.fleet.inventory.is_some() {
        return fleet::run(&args.fleet, None, |relay| {
            let mut argv = fleet::relay_args("dns", relay);
            if verbose {
                argv.push("--verbose".into());
            }
            argv
        });
    }
    let config = crate::load_config(config_path, &Registry::linked()?)?;
    if let Some(ip) = config.ipv4_relay {
        println!("[WARNING] {ip} is not a domain, skipping DNS checks.");
        return Ok(ExitCode::SUCCESS);
    }
    let place = match &args.root {
        Some(_) => Place::Local,
        None => args.ssh.place(Some(&config))?,
    };
    match place {
        Place::Local => here(&config, verbose, args),
        Place::Ssh(ssh) => on_relay(&ssh, &config, verbose, args),
    }
}

/// Runs `cmdeploy dns` on the relay with the effective settings; a zone file comes back to
/// this machine through the relay's standard output.
fn on_relay(ssh: &Ssh, config: &Config, verbose: bool, args: &Args) -> Result<ExitCode> {
    let bundle = Bundle {
        programs: vec![std::env::current_exe()?],
        settings: Some(config.effective_ini()),
        templates: None,
    };
    let mut remote = argv(&["dns", "--ssh-host", "@local", "--config"]);
    remote.extend(bundle.remote_settings());
    if verbose {
        remote.push("--verbose".to_owned());
    }
    let Some(path) = &args.zonefile else {
        return ship::deploy(ssh, &bundle, &remote, None);
    };
    remote.extend(argv(&["--zonefile", "-"]));
    let file = std::fs::File::create(path)
        .with_context(|| format!("cannot write the zone file {}", path.display()))?;
    let code = ship::deploy(ssh, &bundle, &remote, Some(file))?;
    if code == ExitCode::SUCCESS {
        green(&format!(
            "DNS records successfully written to: {}",
            path.display()
        ));
    }
    Ok(code)
}

/// Collects what the relay's DNS, DKIM key and acmetool say here, then writes or checks the
/// zone.
fn here(config: &Config, verbose: bool, args: &Args) -> Result<ExitCode> {
    let domain = &config.mail_domain_bare;
    let acme = config.tls.mode == TlsMode::Acme;
    let target = Target::new(args.root.as_deref().unwrap_or(Path::new("/")), verbose)?;
    let dns = Dns::system(verbose)?;
    let data = RelayData::collect(domain, &dns, &target)?;
    if let Some(problem) = data.precheck(domain, acme) {
        println!("{problem}");
        return Ok(ExitCode::FAILURE);
    }
    if acme && data.acme_account_url.is_empty() {
        red("could not get letsencrypt account url, please run 'cmdeploy run'");
        return Ok(ExitCode::FAILURE);
    }
    let dkim = match &data.dkim {
        Ok(dkim) => dkim,
        Err(reason) => {
            red("could not determine dkim_entry, please run 'cmdeploy run'");
            eprintln!("({reason})");
            return Ok(ExitCode::FAILURE);
        }
    };
    let zone = zone::for_relay(config, &data, dkim, &zone::new_sts_id());
    if args.zonefile.as_deref() == Some(Path::new("-")) {
        print!("{zone}");
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(path) = &args.zonefile {
        std::fs::write(path, &zone)
            .with_context(|| format!("cannot write the zone file {}", path.display()))?;
        green(&format!(
            "DNS records successfully written to: {}",
            path.display()
        ));
        return Ok(ExitCode::SUCCESS);
    }
    let report = check_zone(&zone, &dns)?;
    print_report(
        &report,
        &zone::dkim_line(domain, &dkim.chunked()),
        &zone::dkim_line(domain, &dkim.unsplit()),
    );
    Ok(match report.required.is_empty() {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    })
}

/// Lists what is missing (required, with the unsplit DKIM alternative, then recommended), or
/// says that all is set.
fn print_report(report: &Report, dkim_line: &str, dkim_web_line: &str) {
    if !report.required.is_empty() {
        red("Please set required DNS entries at your DNS provider:");
        for line in &report.required {
            println!("{line}");
        }
        println!();
        if report.required.iter().any(|line| line == dkim_line) {
            println!(
                "If the DKIM entry above does not work with your DNS provider, you can try this one:"
            );
            println!("{dkim_web_line}");
            println!();
        }
    }
    if !report.recommended.is_empty() {
        println!("WARNING: these recommended DNS entries are not set:");
        for line in &report.recommended {
            println!("{line}");
        }
        println!();
    }
    if report.all_set() {
        green("Great! All your DNS entries are verified and correct.");
    }
}
