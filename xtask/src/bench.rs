//! `cargo xtask bench`: the deploy benchmarks reported in BENCHMARKS.md. Each figure is the
//! wall time of the real thing on this machine, in a fresh copy of the cached rootfs.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use xtask::host::Host;
use xtask::{bundle, check, rootfs, workspace};

pub fn run() -> Result<()> {
    let tarball = rootfs::ensure()?;
    check(Command::new("cargo").args(["build", "--release", "--quiet", "--workspace"]))?;
    let cmdeploy = workspace().join("target/release/cmdeploy");
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
    let first = deploy(&[])?;
    let noop = median(5, || deploy(&[]))?;
    let only = median(5, || deploy(&["--only", "postfix"]))?;
    let venv = workspace().join("target/venv/bin");
    let accounts = scratch.join("deltachat");
    let _ = std::fs::remove_dir_all(&accounts);
    let report = capture(
        Command::new(venv.join("python"))
            .arg(workspace().join("cli/tests/e2e/deltachat_exchange.py"))
            .args(["10.77.46.2", "[10.77.46.2]"])
            .arg(&accounts)
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    venv.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            ),
    )?;
    println!(
        "| first full `cmdeploy run` in a booted host (configure + activate; packages preinstalled) | {:.2} s |",
        first.as_secs_f64()
    );
    println!(
        "| no-op re-run in the booted host (median of 5) | {:.3} s |",
        noop.as_secs_f64()
    );
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
