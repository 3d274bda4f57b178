//! `cargo xtask bench`: the deploy benchmarks reported in BENCHMARKS.md. Each figure is the
//! wall time of the real thing on this machine, in a fresh copy of the cached rootfs.
//! `cargo xtask bench --relays 2`: Delta Chat round trips between the two relays of the
//! testbed, beside round trips within one of them, in the same run.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use xtask::host::{self, Host};
use xtask::{bundle, check, rootfs, testbed, workspace};

/// The release build of every program; returns the path of `cmdeploy`.
fn release() -> Result<std::path::PathBuf> {
    check(xtask::cargo().args(["build", "--release", "--quiet", "--workspace"]))?;
    Ok(workspace().join("target/release/cmdeploy"))
}

pub fn run() -> Result<()> {
    let tarball = rootfs::ensure()?;
    let cmdeploy = release()?;
    let scratch = workspace().join("target/bench");
    std::fs::create_dir_all(&scratch)?;
    let config = scratch.join("chatmail.ini");
    std::fs::write(&config, "[params]\nmail_domain = _bench.example.org\n")?;
    let packages = capture(
        Command::new(&cmdeploy)
            .args(["list", "--packages"])
            .arg("--config")
            .arg(&config),
    )?;
    let packages: Vec<&str> = packages.split_whitespace().collect();

    let bare_root = rootfs::extract(&tarball, &scratch.join("bare"))?;
    let start = Instant::now();
    rootfs::apt_install(&bare_root, &packages)?;
    let bare = start.elapsed();

    let root = rootfs::extract(&tarball, &scratch.join("cmdeploy"))?;
    let deploy = |phase: &str| -> Result<Duration> {
        let start = Instant::now();
        check(
            Command::new(&cmdeploy)
                .args(["run", "--phase", phase, "--root"])
                .arg(&root)
                .arg("--config")
                .arg(&config)
                .stdout(std::process::Stdio::null()),
        )?;
        Ok(start.elapsed())
    };
    let install = deploy("install")?;
    let configure = deploy("configure")?;
    let mut noop: Vec<Duration> = (0..5)
        .map(|_| deploy("install,configure"))
        .collect::<Result<_>>()?;
    noop.sort();

    println!("| what | time |");
    println!("|---|---|");
    println!(
        "| bare `apt-get install` of the same {} packages | {:.1} s |",
        packages.len(),
        bare.as_secs_f64()
    );
    println!(
        "| `cmdeploy run --phase install` (fresh rootfs) | {:.1} s ({:.2}x) |",
        install.as_secs_f64(),
        install.as_secs_f64() / bare.as_secs_f64()
    );
    println!(
        "| `cmdeploy run --phase configure`, first run | {:.2} s |",
        configure.as_secs_f64()
    );
    println!(
        "| no-op re-run `--phase install,configure` (median of 5) | {:.3} s |",
        noop[2].as_secs_f64()
    );
    std::fs::remove_dir_all(&bare_root)?;
    std::fs::remove_dir_all(&root)?;
    booted_host(&cmdeploy, &scratch)
}

/// `cargo xtask bench host`: the booted-host part of [`run`] alone.
pub fn host() -> Result<()> {
    let cmdeploy = release()?;
    let scratch = workspace().join("target/bench");
    std::fs::create_dir_all(&scratch)?;
    booted_host(&cmdeploy, &scratch)
}

/// Median of `runs` timings of `f`.
fn median(runs: usize, mut f: impl FnMut() -> Result<Duration>) -> Result<Duration> {
    let mut times: Vec<Duration> = (0..runs).map(|_| f()).collect::<Result<_>>()?;
    times.sort();
    Ok(times[runs / 2])
}

/// A full deploy inside a booted test host, as an operator runs it, and a Delta Chat round
/// trip through the deployed relay.
fn booted_host(cmdeploy: &Path, scratch: &Path) -> Result<()> {
    let root = rootfs::extract(&rootfs::ensure_bootable()?, &scratch.join("host"))?;
    check(
        Command::new(cmdeploy)
            .args(["run", "--phase", "install", "--root"])
            .arg(&root)
            .stdout(std::process::Stdio::null()),
    )?;
    bundle::copy(
        cmdeploy,
        &root.join(bundle::HOST_DIR.trim_start_matches('/')),
    )?;
    let config = "[params]\nmail_domain = 10.77.46.2\nmax_load_1m = 1000\n";
    std::fs::write(
        root.join(bundle::HOST_CONFIG.trim_start_matches('/')),
        config,
    )?;
    let host = Host::boot(&root, "cm-bench", 46)?;
    let deploy = |extra: &[&str]| -> Result<Duration> {
        let start = Instant::now();
        let argv = bundle::host_run(extra);
        host.exec_ok(&argv.iter().map(String::as_str).collect::<Vec<_>>())?;
        Ok(start.elapsed())
    };
    // The first run with -v, which names every command that took 0.1 s or more.
    let start = Instant::now();
    let argv = bundle::host_run(&["-v"]);
    let output = host.exec(&argv.iter().map(String::as_str).collect::<Vec<_>>())?;
    let first = start.elapsed();
    if !output.status.success() {
        anyhow::bail!(
            "the first deploy failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let slow: Vec<String> = String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|line| line.starts_with('[') && line.contains(" s for `"))
        .map(str::to_owned)
        .collect();
    let noop = median(5, || deploy(&[]))?;
    let only = median(5, || deploy(&["--only", "postfix"]))?;
    let accounts = scratch.join("deltachat");
    let _ = std::fs::remove_dir_all(&accounts);
    let report = capture(
        delta_chat()
            .args(["10.77.46.2", "[10.77.46.2]"])
            .arg(&accounts),
    )?;
    println!(
        "| first full `cmdeploy run` in a booted host (configure + activate; packages preinstalled) | {:.2} s |",
        first.as_secs_f64()
    );
    println!(
        "| no-op re-run in the booted host (median of 5) | {:.3} s |",
        noop.as_secs_f64()
    );
    println!("\ncommands of the first run that took 0.1 s or more:");
    for line in &slow {
        println!("  {line}");
    }
    println!(
        "| `--only postfix` re-run in the booted host (median of 5) | {:.3} s |",
        only.as_secs_f64()
    );
    println!(
        "| Delta Chat encrypted ping-pong round trip | {} |",
        report.trim()
    );
    Ok(())
}

/// The Delta Chat client script (`cli/tests/e2e/deltachat_exchange.py`) with the venv's
/// `deltachat-rpc-server` on the PATH; arguments follow.
pub(crate) fn delta_chat() -> Command {
    let venv = workspace().join("target/venv/bin");
    let mut command = Command::new(venv.join("python"));
    command
        .arg(workspace().join("cli/tests/e2e/deltachat_exchange.py"))
        .env(
            "PATH",
            format!(
                "{}:{}",
                venv.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
    command
}

/// `cargo xtask bench --relays 2`: on the two-relay testbed (release build), the median of
/// 5 Delta Chat round trips between an account on each relay (alpha -> beta -> alpha), and
/// of 5 round trips between two accounts on alpha alone, measured in the same run; then the
/// wall time of a fleet deploy over SSH to one relay and to both.
pub fn relays() -> Result<()> {
    let options = testbed::Options {
        prefix: "cmbn".into(),
        net: 72,
        dir: workspace().join("target/bench/relays"),
        cmdeploy: release()?,
    };
    let testbed = testbed::Testbed::start(&options)?;
    let (alpha, beta) = (&testbed.alpha, &testbed.beta);
    let accounts = options.dir.join("deltachat");
    let _ = std::fs::remove_dir_all(&accounts);
    let commands = "exchange\n".repeat(5);
    let mut federation = delta_chat()
        .arg("--federation")
        .args([alpha.host.address.to_string(), alpha.domain.clone()])
        .args([beta.host.address.to_string(), beta.domain.clone()])
        .arg(accounts.join("federation"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting the Delta Chat client")?;
    std::io::Write::write_all(
        &mut federation.stdin.take().context("stdin")?,
        commands.as_bytes(),
    )?;
    let output = federation.wait_with_output()?;
    if !output.status.success() {
        bail!("the Delta Chat client failed between the relays");
    }
    let between = round_trips(&String::from_utf8(output.stdout)?)?;
    let mut within = Vec::new();
    for run in 0..5 {
        let report = capture(
            delta_chat()
                .arg(alpha.host.address.to_string())
                .arg(&alpha.domain)
                .arg(accounts.join(format!("alpha-{run}"))),
        )?;
        within.extend(round_trips(&report)?);
    }
    println!("| Delta Chat round trip (median of 5) | seconds | all runs |");
    println!("|---|---|---|");
    for (what, mut times) in [
        ("between the relays, alpha -> beta -> alpha", between),
        ("within relay alpha", within),
    ] {
        times.sort_by(f64::total_cmp);
        println!("| {what} | {:.2} | {times:?} |", times[times.len() / 2]);
    }
    fleet(&options, &testbed)
}

/// A fleet from this machine over SSH (`cmdeploy run --inventory`): a settings change
/// deployed to one relay, then another to both in one command, then the no-op over both.
fn fleet(options: &testbed::Options, testbed: &testbed::Testbed) -> Result<()> {
    let dir = options.dir.join("fleet");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let relays = [("alpha", &testbed.alpha), ("beta", &testbed.beta)];
    let ssh = host::authorize_ssh(&dir, &relays.map(|(_, relay)| relay.root()))?;
    let mut inventory = String::new();
    for (name, relay) in relays {
        inventory += &format!(
            "[[relay]]\nname = \"{name}\"\nconfig = \"{name}.ini\"\nssh_host = \"{}\"\n",
            relay.host.address
        );
    }
    std::fs::write(dir.join("fleet.toml"), inventory)?;
    let configure = |size: u32| -> Result<()> {
        for (name, relay) in relays {
            let deployed = relay
                .root()
                .join(bundle::HOST_CONFIG.trim_start_matches('/'));
            let base = std::fs::read_to_string(&deployed)?;
            let settings = format!("{base}max_message_size = {size}\n");
            std::fs::write(dir.join(format!("{name}.ini")), settings)?;
        }
        Ok(())
    };
    let run = |extra: &[&str]| -> Result<Duration> {
        let start = Instant::now();
        check(
            Command::new(&options.cmdeploy)
                .args(["run", "--inventory"])
                .arg(dir.join("fleet.toml"))
                .args(extra)
                .env("CMDEPLOY_SSH", &ssh)
                .stdout(std::process::Stdio::null()),
        )?;
        Ok(start.elapsed())
    };
    configure(2_000_000)?;
    let one = run(&["--limit", "alpha"])?;
    configure(3_000_000)?;
    let two = run(&[])?;
    let noop = median(5, || run(&[]))?;
    println!("\n| fleet over SSH (`cmdeploy run --inventory`) | seconds |");
    println!("|---|---|");
    println!(
        "| a settings change on 1 relay | {:.2} |",
        one.as_secs_f64()
    );
    println!(
        "| a settings change on 2 relays | {:.2} |",
        two.as_secs_f64()
    );
    println!(
        "| no-op over 2 relays (median of 5) | {:.2} |",
        noop.as_secs_f64()
    );
    Ok(())
}

/// The `round_trip_seconds` values of the client's JSON lines.
fn round_trips(report: &str) -> Result<Vec<f64>> {
    report
        .lines()
        .filter_map(|line| line.split("\"round_trip_seconds\": ").nth(1))
        .map(|rest| {
            let number = rest.split([',', '}']).next().unwrap_or_default().trim();
            number
                .parse()
                .with_context(|| format!("round trip {number:?} in {report}"))
        })
        .collect()
}

fn capture(command: &mut Command) -> Result<String> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}
