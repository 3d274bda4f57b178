//! A test host: a Debian root directory booted with `systemd-nspawn --boot` in its own network
//! namespace, with an address on a veth link to this machine. Commands run inside through
//! `nsenter`. Stopping kills only the nspawn process this harness started.

use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::check;

/// A booted test host.
#[derive(Debug)]
pub struct Host {
    pub name: String,
    pub root: PathBuf,
    /// The nspawn process this harness started.
    pub nspawn_pid: u32,
    /// PID 1 of the guest, as seen from this machine.
    pub leader_pid: u32,
    /// The nspawn child process, when this handle started it (and must reap it).
    process: Option<Child>,
    /// The guest's address; this machine is `.1` on the same /24.
    pub address: Ipv4Addr,
    stop_on_drop: bool,
}

impl Host {
    /// Boots `root` as machine `name` (at most 11 characters) with address `10.77.<net>.2`,
    /// on a point-to-point link to this machine (`.1`).
    /// The nspawn process is detached; its console goes to `<root>.console.log`.
    pub fn boot(root: &Path, name: &str, net: u8) -> Result<Host> {
        let address = Ipv4Addr::new(10, 77, net, 2);
        let host = Host::start(root, name, address, &[])?;
        let link = format!("ve-{name}");
        check(Command::new("ip").args([
            "addr",
            "replace",
            &format!("10.77.{net}.1/24"),
            "dev",
            &link,
        ]))?;
        check(Command::new("ip").args(["link", "set", &link, "up"]))?;
        host.configure_guest_network()?;
        Ok(host)
    }

    /// Boots `root` as machine `name` (at most 11 characters) with `address` (a /24) on the
    /// bridge `bridge` inside network namespace `netns`, where other hosts can reach it. The
    /// guest keeps the `/etc/resolv.conf` of its root (nspawn copies nothing in).
    pub fn boot_on_bridge(
        root: &Path,
        name: &str,
        address: Ipv4Addr,
        netns: &str,
        bridge: &str,
    ) -> Result<Host> {
        let host = Host::start(root, name, address, &["--resolv-conf=off"])?;
        let link = format!("ve-{name}");
        check(Command::new("ip").args(["link", "set", &link, "netns", netns]))?;
        check(Command::new("ip").args(["-n", netns, "link", "set", &link, "master", bridge]))?;
        check(Command::new("ip").args(["-n", netns, "link", "set", &link, "up"]))?;
        host.configure_guest_network()?;
        Ok(host)
    }

    /// Starts nspawn with `options` and waits until the guest has booted.
    fn start(root: &Path, name: &str, address: Ipv4Addr, options: &[&str]) -> Result<Host> {
        if name.len() > 11 {
            bail!("machine name {name:?} is longer than 11 characters");
        }
        let log_path = root.with_extension("console.log");
        let log = std::fs::File::create(&log_path)?;
        let mut child = Command::new("systemd-nspawn")
            .args([
                "--boot",
                "--register=no",
                "--keep-unit",
                "--console=passive",
            ])
            .args(options)
            .arg("--network-veth")
            .arg(format!("--machine={name}"))
            .arg("--directory")
            .arg(root)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("starting systemd-nspawn (is systemd-container installed?)")?;
        let leader_pid = wait_for_leader(child.id(), &log_path, || {
            child.try_wait().is_ok_and(|status| status.is_none())
        })?;
        let host = Host {
            name: name.to_owned(),
            root: root.to_owned(),
            nspawn_pid: child.id(),
            leader_pid,
            process: Some(child),
            address,
            stop_on_drop: true,
        };
        host.wait_until_booted()?;
        Ok(host)
    }

    /// Re-attaches to a host booted earlier (by `cargo xtask demo`), found by its nspawn PID.
    pub fn attach(root: &Path, name: &str, net: u8, nspawn_pid: u32) -> Result<Host> {
        let log = root.with_extension("console.log");
        let leader_pid = wait_for_leader(nspawn_pid, &log, || is_nspawn(nspawn_pid))?;
        Ok(Host {
            name: name.to_owned(),
            root: root.to_owned(),
            nspawn_pid,
            leader_pid,
            process: None,
            address: Ipv4Addr::new(10, 77, net, 2),
            stop_on_drop: false,
        })
    }

    /// Leaves the host running when this handle is dropped.
    pub fn keep_running(mut self) -> u32 {
        self.stop_on_drop = false;
        self.nspawn_pid
    }

    /// Runs `argv` inside the guest (all its namespaces), capturing the output.
    pub fn exec(&self, argv: &[&str]) -> Result<Output> {
        Command::new("nsenter")
            .arg("--target")
            .arg(self.leader_pid.to_string())
            .args(["--mount", "--uts", "--ipc", "--net", "--pid", "--"])
            .args(argv)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {argv:?} in {}", self.name))
    }

    /// Starts `argv` inside the guest with its output piped; the first line of its stdout is
    /// its PID in the guest (for [`Host::kill`]), the rest is the program's own output.
    pub fn spawn(&self, argv: &[&str]) -> Result<Child> {
        Command::new("nsenter")
            .arg("--target")
            .arg(self.leader_pid.to_string())
            .args(["--mount", "--uts", "--ipc", "--net", "--pid", "--"])
            .args(["/bin/sh", "-c", "echo $$; exec \"$@\"", "sh"])
            .args(argv)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {argv:?} in {}", self.name))
    }

    /// Sends SIGKILL to the guest process `pid` (as printed by [`Host::spawn`]).
    pub fn kill(&self, pid: &str) -> Result<()> {
        // The shell's builtin: a minimal Debian has no kill binary.
        self.exec_ok(&["/bin/sh", "-c", &format!("kill -KILL {pid}")])
            .map(drop)
    }

    /// Runs `argv` inside the guest and fails unless it succeeds.
    pub fn exec_ok(&self, argv: &[&str]) -> Result<String> {
        let output = self.exec(argv)?;
        if !output.status.success() {
            bail!(
                "{argv:?} failed in {} ({}):\n{}{}",
                self.name,
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn wait_until_booted(&self) -> Result<()> {
        let start = Instant::now();
        loop {
            let state = self.exec(&["systemctl", "is-system-running"]);
            if let Ok(output) = state {
                let text = String::from_utf8_lossy(&output.stdout);
                if matches!(text.trim(), "running" | "degraded") {
                    return Ok(());
                }
            }
            if start.elapsed() > Duration::from_secs(90) {
                bail!("{} did not finish booting within 90 s", self.name);
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The guest's address (a /24) on its end of the veth link, and its loopback.
    fn configure_guest_network(&self) -> Result<()> {
        let address = format!("{}/24", self.address);
        for argv in [
            vec!["ip", "addr", "replace", address.as_str(), "dev", "host0"],
            vec!["ip", "link", "set", "host0", "up"],
            vec!["ip", "link", "set", "lo", "up"],
        ] {
            // This machine's `ip`, run in the guest's network namespace only.
            check(
                Command::new("nsenter")
                    .arg("--target")
                    .arg(self.leader_pid.to_string())
                    .arg("--net")
                    .arg("--")
                    .args(&argv),
            )?;
        }
        Ok(())
    }

    /// Powers the guest off and waits for the nspawn process to end (killing it after 30 s).
    pub fn stop(&mut self) -> Result<()> {
        let Some(child) = &mut self.process else {
            return stop_pid(self.nspawn_pid);
        };
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        check(Command::new("kill").args(["-TERM", &child.id().to_string()]))?;
        let start = Instant::now();
        while child.try_wait()?.is_none() {
            if start.elapsed() > Duration::from_secs(30) {
                child.kill()?;
                child.wait()?;
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if self.stop_on_drop {
            let _ = self.stop();
        }
    }
}

/// Stops the nspawn process `pid` (started by this harness): SIGTERM makes nspawn shut the
/// guest down; SIGKILL after 30 s.
pub fn stop_pid(pid: u32) -> Result<()> {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    if !is_nspawn(pid) {
        return Ok(());
    }
    check(Command::new("kill").args(["-TERM", &pid.to_string()]))?;
    let start = Instant::now();
    while proc.exists() && is_nspawn(pid) {
        if start.elapsed() > Duration::from_secs(30) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

fn is_nspawn(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .is_ok_and(|comm| comm.trim() == "systemd-nspawn")
}

/// The guest's PID 1: the child of the nspawn process running systemd.
fn wait_for_leader(nspawn_pid: u32, log: &Path, mut alive: impl FnMut() -> bool) -> Result<u32> {
    let start = Instant::now();
    loop {
        if !alive() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            bail!("systemd-nspawn exited:\n{log}");
        }
        let children =
            std::fs::read_to_string(format!("/proc/{nspawn_pid}/task/{nspawn_pid}/children"))
                .unwrap_or_default();
        for child in children
            .split_whitespace()
            .filter_map(|c| c.parse::<u32>().ok())
        {
            let comm = std::fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
            if comm.trim() == "systemd" {
                return Ok(child);
            }
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("no guest systemd under nspawn PID {nspawn_pid} after 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Makes a throw-away key pair in `dir` and lets it log in as root on the hosts booted from
/// `roots`; returns the ssh options that use it (for `$CMDEPLOY_SSH`).
pub fn authorize_ssh(dir: &Path, roots: &[&Path]) -> Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let key = dir.join("id_ed25519");
    let _ = std::fs::remove_file(&key);
    let _ = std::fs::remove_file(key.with_extension("pub"));
    check(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "cmdeploy-test", "-f"])
            .arg(&key),
    )?;
    let public = std::fs::read_to_string(key.with_extension("pub"))?;
    for root in roots {
        let ssh = root.join("root/.ssh");
        std::fs::create_dir_all(&ssh)?;
        std::fs::write(ssh.join("authorized_keys"), &public)?;
        std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o700))?;
        std::fs::set_permissions(
            ssh.join("authorized_keys"),
            std::fs::Permissions::from_mode(0o600),
        )?;
    }
    Ok(format!(
        "-i {} -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o LogLevel=ERROR \
         -o ConnectTimeout=10",
        key.display()
    ))
}
