//! `cargo xtask bench`: the deploy benchmarks reported in BENCHMARKS.md. Each figure is the
//! wall time of the real thing on this machine, in a fresh copy of the cached rootfs.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use xtask::{check, rootfs, workspace};

pub fn run() -> Result<()> {
    let tarball = rootfs::ensure()?;
    check(Command::new("cargo").args(["build", "--release", "--quiet", "-p", "cmdeploy"]))?;
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
    let bare = time_chroot_apt(&bare_root, &packages)?;

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
    Ok(())
}

/// Installs `packages` the way an operator would by hand, with services kept from starting.
fn time_chroot_apt(root: &Path, packages: &[&str]) -> Result<Duration> {
    let policy = root.join("usr/sbin/policy-rc.d");
    std::fs::write(&policy, "#!/bin/sh\nexit 101\n")?;
    check(Command::new("chmod").arg("755").arg(&policy))?;
    check(
        Command::new("mount")
            .args(["-t", "proc", "proc"])
            .arg(root.join("proc")),
    )?;
    let start = Instant::now();
    let result = check(
        Command::new("chroot")
            .arg(root)
            .args(["apt-get", "install", "-y", "-q", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(std::process::Stdio::null()),
    );
    let elapsed = start.elapsed();
    check(Command::new("umount").arg(root.join("proc")))?;
    std::fs::remove_file(&policy)?;
    result.map(|()| elapsed)
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
