//! `cargo xtask demo`: a relay in a local test host. Prepares a bootable Debian 12 root (once,
//! kept under `target/demo/`), runs the install phase into it with our delay-free Dovecot,
//! boots it with systemd-nspawn and runs `cmdeploy run` inside, as an operator would on a
//! real server. With `--relays 2`: the two-relay testbed ([`xtask::testbed`]), kept running
//! until `cargo xtask demo stop`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;
use xtask::host::{self, Host};
use xtask::{bundle, check, dovecot, rootfs, testbed, workspace};

const NAME: &str = "chatmail";
/// Where the deploy bundle goes in the host.
const NET: u8 = 0;

fn demo_dir() -> PathBuf {
    workspace().join("target/demo")
}

fn pid_file() -> PathBuf {
    demo_dir().join("nspawn.pid")
}

pub fn start() -> Result<()> {
    stop()?;
    let tarball = rootfs::ensure_bootable()?;
    check(xtask::cargo().args(["build", "--quiet", "--workspace"]))?;
    let cmdeploy = workspace().join("target/debug/cmdeploy");
    let root = demo_dir().join("root");
    if !root.join("etc/debian_version").exists() {
        std::fs::create_dir_all(demo_dir())?;
        rootfs::extract(&tarball, &root)?;
    }
    // The host has no route out: everything from the Debian mirror is installed beforehand,
    // exactly what the install phase is for (it needs no chatmail.ini), with our delay-free
    // Dovecot.
    check(
        Command::new(&cmdeploy)
            .args(["run", "--phase", "install", "--root"])
            .arg(&root)
            .env(dovecot::DEBS_ENV, dovecot::ensure()?),
    )?;
    bundle::copy(
        &cmdeploy,
        &root.join(bundle::HOST_DIR.trim_start_matches('/')),
    )?;
    let config = root.join(bundle::HOST_CONFIG.trim_start_matches('/'));
    if !config.exists() {
        check(
            Command::new(&cmdeploy)
                .args(["init", "10.77.0.2", "--config"])
                .arg(&config),
        )?;
    }

    let host = Host::boot(&root, NAME, NET)?;
    let argv = bundle::host_run(&[]);
    let output = host.exec(&argv.iter().map(String::as_str).collect::<Vec<_>>())?;
    print!("{}", String::from_utf8_lossy(&output.stdout));
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    let leader = host.leader_pid;
    let address = host.address;
    std::fs::write(pid_file(), host.keep_running().to_string())?;
    if !output.status.success() {
        anyhow::bail!(
            "cmdeploy run failed inside the test host (still running; `cargo xtask demo stop`)"
        );
    }
    println!(
        "\nrelay {address} is running in test host {NAME:?} (systemd-nspawn, root {})\n\
         \x20 IMAP  {address}:993 (TLS), {address}:143 (STARTTLS)\n\
         \x20 SMTP  {address}:465 (TLS), {address}:587 (STARTTLS)\n\
         \x20 shell: nsenter -t {leader} -a\n\
         \x20 stop:  cargo xtask demo stop",
        root.display()
    );
    Ok(())
}

/// The demo's testbed: its own names and network, apart from the tests' (`cmfed`, 10.77.71).
fn testbed_options() -> testbed::Options {
    testbed::Options {
        prefix: "cmtb".into(),
        net: 70,
        dir: workspace().join("target/demo-relays"),
        cmdeploy: workspace().join("target/debug/cmdeploy"),
    }
}

/// `cargo xtask demo --relays 2`: the two-relay testbed, left running.
pub fn start_two() -> Result<()> {
    stop()?;
    check(xtask::cargo().args(["build", "--quiet", "--workspace"]))?;
    let options = testbed_options();
    let testbed = testbed::Testbed::start(&options)?;
    let here = options.address(1);
    println!(
        "\ntwo relays are running (systemd-nspawn test hosts on a bridge, this machine {here}):"
    );
    for relay in [&testbed.alpha, &testbed.beta] {
        let address = relay.host.address;
        println!(
            "  {domain} at {address} (test host {name:?}, root {root})\n\
             \x20   IMAP {address}:993, SMTP {address}:465; shell: nsenter -t {leader} -a",
            domain = relay.domain,
            name = relay.host.name,
            root = relay.root().display(),
            leader = relay.host.leader_pid,
        );
    }
    println!(
        "  DNS: nsd at {} serves {}; test CA {}\n  stop: cargo xtask demo stop",
        options.address(53),
        testbed::ZONE,
        testbed.ca.display()
    );
    testbed.keep_running(&options)
}

pub fn stop() -> Result<()> {
    testbed::stop_kept(&testbed_options())?;
    if let Ok(pid) = std::fs::read_to_string(pid_file()) {
        if let Ok(pid) = pid.trim().parse() {
            host::stop_pid(pid)?;
        }
        std::fs::remove_file(pid_file())?;
    }
    Ok(())
}
