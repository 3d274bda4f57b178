//! `cmdeploy test` and `cmdeploy bench`: a live relay checked and timed from this machine as
//! its users' clients see it (`chatmail-probe`), plus its DNS records checked by `cmdeploy
//! dns` (over SSH, where the DKIM key is); `--inventory` for every relay of a fleet.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use chatmail_probe::Relay;
use chatmail_probe::checks::{self, CHECKS, Outcome, Verdict};

use crate::fleet;
use crate::remote::SshArgs;

/// The check that `cmdeploy dns` makes.
const DNS: &str = "dns";

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    #[command(flatten)]
    ssh: SshArgs,
    #[command(flatten)]
    fleet: fleet::FleetArgs,
    /// Connect to HOST (a name or an address) instead of the mail domain; certificates are
    /// still checked for the mail domain.
    #[arg(long, value_name = "HOST", conflicts_with = "inventory")]
    address: Option<String>,
    /// Leave out these checks (comma-separated names, as printed).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    skip: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Connect to HOST (a name or an address) instead of the mail domain; certificates are
    /// still checked for the mail domain.
    #[arg(long, value_name = "HOST")]
    address: Option<String>,
    /// How many times each thing is timed.
    #[arg(long, default_value_t = 5, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1000))]
    rounds: u16,
}

/// `cmdeploy test`.
pub fn test(config_path: &Path, args: &TestArgs) -> Result<ExitCode> {
    if args.fleet.inventory.is_some() {
        let skip = args.skip.join(",");
        return fleet::run(&args.fleet, None, |relay| {
            let mut argv = fleet::relay_args("test", relay);
            if let Some(address) = &relay.address {
                argv.extend(["--address".into(), address.into()]);
            }
            if !skip.is_empty() {
                argv.extend([OsString::from("--skip"), skip.as_str().into()]);
            }
            argv
        });
    }
    let known: Vec<&str> = CHECKS.iter().map(|c| c.name).chain([DNS]).collect();
    if let Some(unknown) = args.skip.iter().find(|n| !known.contains(&n.as_str())) {
        bail!(
            "--skip {unknown:?}: no such check (checks: {})",
            known.join(", ")
        );
    }
    let config = crate::load_config(config_path, &chatmail_core::Registry::linked()?)?;
    let relay = Relay::new(&config, args.address.as_deref());
    println!(
        "testing {} at {} ({})",
        relay.mail_domain,
        relay.host,
        match relay.self_signed {
            true => "self-signed certificate accepted",
            false => "certificate verified",
        }
    );
    let width = known.iter().map(|n| n.len()).max().unwrap_or(0);
    let print = |outcome: &Outcome| println!("{}", outcome.line(width));
    let mut outcomes = checks::run_all(relay.clone(), &args.skip, print)?;
    let dns = match args.skip.iter().any(|n| n == DNS) {
        true => Outcome {
            name: DNS,
            verdict: Verdict::Skip("--skip".into()),
            took: Default::default(),
        },
        false => dns(config_path, &relay, &args.ssh)?,
    };
    print(&dns);
    outcomes.push(dns);
    println!("{}", checks::summary(&outcomes));
    let failed = outcomes
        .iter()
        .any(|o| matches!(o.verdict, Verdict::Fail(_)));
    Ok(match failed {
        true => ExitCode::FAILURE,
        false => ExitCode::SUCCESS,
    })
}

/// The DNS check: `cmdeploy dns` with the same settings and `--ssh-host`, its exit code the
/// verdict, the records it asks for the reason.
fn dns(config_path: &Path, relay: &Relay, ssh: &SshArgs) -> Result<Outcome> {
    let start = Instant::now();
    let verdict = if relay.ipv4 {
        Verdict::Skip("an IPv4 relay needs no DNS records".into())
    } else {
        let exe = std::env::current_exe().context("finding this cmdeploy")?;
        let mut argv: Vec<OsString> = vec!["dns".into(), "--config".into(), config_path.into()];
        if let Some(host) = &ssh.ssh_host {
            argv.extend(["--ssh-host".into(), host.into()]);
        }
        let output = duct::cmd(&exe, &argv)
            .stdin_null()
            .stderr_to_stdout()
            .stdout_capture()
            .unchecked()
            .run()
            .with_context(|| format!("running {} dns", exe.display()))?;
        let text = String::from_utf8_lossy(&output.stdout);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        match output.status.success() {
            true => Verdict::Pass(lines.last().unwrap_or(&"all records set").to_string()),
            false => Verdict::Fail(format!("`cmdeploy dns`: {}", lines.join(" | "))),
        }
    };
    Ok(Outcome {
        name: DNS,
        verdict,
        took: start.elapsed(),
    })
}

/// `cmdeploy bench`.
pub fn bench(config_path: &Path, args: &BenchArgs) -> Result<ExitCode> {
    let config = crate::load_config(config_path, &chatmail_core::Registry::linked()?)?;
    let relay = Relay::new(&config, args.address.as_deref());
    let rounds = usize::from(args.rounds);
    println!(
        "timing {} at {}, {rounds} rounds",
        relay.mail_domain, relay.host
    );
    let series = chatmail_probe::bench::run(relay, rounds, |done| {
        eprint!("\rround {done}/{rounds}");
    })?;
    eprintln!();
    print!("{}", chatmail_probe::bench::table(&series));
    Ok(ExitCode::SUCCESS)
}
