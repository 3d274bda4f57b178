//! `cmdeploy status`: the mail domain, the deployed version, the privacy settings, and the
//! state of every unit the registry declares for these settings, read from the relay (over
//! SSH or here) with one `systemctl show`. Exit code 1 when a declared unit failed or one
//! declared running is not active, so monitoring can use it.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};
use chatmail_core::config::Config;
use chatmail_core::engine;
use chatmail_core::plan::Service;
use chatmail_core::{Facts, Registry, Target, Templates, UnitState, argv, parse_show, show_argv};

use crate::fleet;
use crate::remote::SshArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    ssh: SshArgs,
    #[command(flatten)]
    fleet: fleet::FleetArgs,
}

pub fn run(config_path: &Path, args: &Args) -> Result<ExitCode> {
    if args.fleet.inventory.is_some() {
        return fleet::run(&args.fleet, None, |relay| {
            fleet::relay_args("status", relay)
        });
    }
    let registry = Registry::linked()?;
    let config = crate::load_config(config_path, &registry)?;
    let place = args.ssh.place(Some(&config))?;
    let services = declared(&registry, &config)?;

    let version = place.output(&argv(&["cat", chatmail_version::PATH]))?;
    let units: Vec<String> = services.iter().map(|s| s.unit.clone()).collect();
    let show = place.output(&show_argv(&units))?;
    if !show.status.success() {
        bail!(
            "`systemctl show` failed on the relay:\n{}",
            chatmail_core::tail(&show)
        );
    }
    let states = parse_show(&units, &String::from_utf8_lossy(&show.stdout));

    println!("mail domain:      {}", config.mail_domain);
    let version = String::from_utf8_lossy(&version.stdout);
    match version.lines().collect::<Vec<_>>().as_slice() {
        [] => println!(
            "deployed version: none ({} is missing)",
            chatmail_version::PATH
        ),
        lines => println!("deployed version: {}", lines.join(", ")),
    }
    let privacy = [
        ("privacy_mail", &config.privacy_mail),
        ("privacy_postal", &config.privacy_postal),
        ("privacy_pdo", &config.privacy_pdo),
        ("privacy_supervisor", &config.privacy_supervisor),
    ];
    let present = privacy.iter().any(|(_, value)| value.is_some());
    println!(
        "privacy settings: {}",
        if present { "present" } else { "none" }
    );
    for (key, value) in privacy {
        let value = value.as_deref().unwrap_or("(unset)");
        println!("  {key:18}  {}", value.replace('\n', " "));
    }

    let width = units.iter().map(String::len).max().unwrap_or(0);
    println!("services (declared for these settings):");
    let mut problems = Vec::new();
    for service in &services {
        let state = states.get(&service.unit).cloned().unwrap_or_default();
        let wanted = wanted(service);
        let problem = problem(service, &state);
        println!(
            "  {:width$}  {:10}  {:10}  wanted {wanted}{}",
            service.unit,
            state.active_state,
            if state.file_state.is_empty() {
                "-"
            } else {
                &state.file_state
            },
            problem.map(|p| format!("  <- {p}")).unwrap_or_default()
        );
        if problem.is_some() {
            problems.push(service.unit.as_str());
        }
    }
    if problems.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    println!("not as declared: {}", problems.join(", "));
    Ok(ExitCode::FAILURE)
}

/// The units the registry declares for `config`, in activation order.
fn declared(registry: &Registry, config: &Config) -> Result<Vec<Service>> {
    let components = registry.select(&[], &[])?;
    let facts = Facts::detect(
        &Target::new(Path::new("/"), false)?,
        crate::binaries_dir(None)?,
    );
    let templates = Templates::new(&components, None)?;
    let plans = engine::plan(&components, Some(config), &facts, &templates)?;
    Ok(plans
        .into_iter()
        .filter_map(|p| p.activate)
        .flat_map(|a| a.services)
        .collect())
}

fn wanted(service: &Service) -> &'static str {
    match (service.masked, service.running) {
        (true, _) => "masked",
        (false, true) => "running",
        (false, false) => "stopped",
    }
}

/// What is wrong with a unit, if anything: it failed, or it should run and does not (unless
/// its start was skipped by a failed condition, e.g. an optional binary not installed).
fn problem(service: &Service, state: &UnitState) -> Option<&'static str> {
    if state.active_state == "failed" {
        return Some("failed");
    }
    if service.running && !state.active && !state.skipped {
        return Some("not running");
    }
    None
}
