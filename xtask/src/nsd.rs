//! An authoritative name server for tests: `nsd` in the foreground inside a network namespace,
//! serving zones from a directory of its own. Stopped (by the PID this harness started) when
//! dropped, unless kept running for `cargo xtask demo`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A running nsd.
#[derive(Debug)]
pub struct Nsd {
    /// The nsd process (`ip netns exec` executes it in place, so this is nsd's own PID).
    child: Option<Child>,
    pid: u32,
}

/// A zone: its name (no trailing dot) and its records (zone-file lines), to which [`Nsd`]
/// adds the SOA, the NS record and the name server's address.
#[derive(Debug)]
pub struct Zone {
    pub name: String,
    pub records: String,
}

impl Nsd {
    /// Writes `zones` into `dir` and starts nsd in namespace `netns` answering on `address`
    /// port 53; returns once it listens.
    pub fn start(netns: &str, address: &str, dir: &Path, zones: &[Zone]) -> Result<Nsd> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let conf = write_config(address, dir, zones)?;
        let log = dir.join("nsd.log");
        let child = Command::new("ip")
            .args(["netns", "exec", netns, "nsd", "-d", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nsd (is nsd installed?)")?;
        let pid = child.id();
        let mut nsd = Nsd {
            child: Some(child),
            pid,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let listening = Command::new("ip")
                .args(["netns", "exec", netns, "ss", "-Hlun", "sport = :53"])
                .output()
                .context("running ss")?;
            if !listening.stdout.is_empty() {
                return Ok(nsd);
            }
            let exited = nsd.child.as_mut().map(|c| c.try_wait()).transpose()?;
            if Instant::now() > deadline || exited.flatten().is_some() {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                bail!("nsd did not start in {netns} on {address}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Re-attaches to an nsd started earlier (by `cargo xtask demo`), by its PID.
    pub fn attach(pid: u32) -> Nsd {
        Nsd { child: None, pid }
    }

    /// Leaves nsd running when this handle is dropped; returns its PID.
    pub fn keep_running(mut self) -> u32 {
        self.child = None;
        let pid = self.pid;
        self.pid = 0;
        pid
    }

    /// Stops nsd (it ends its server and xfrd processes on SIGTERM).
    pub fn stop(&mut self) {
        if self.pid == 0 {
            return;
        }
        let ours = std::fs::read_to_string(format!("/proc/{}/comm", self.pid))
            .is_ok_and(|comm| comm.starts_with("nsd"));
        if ours {
            let _ = Command::new("kill").arg(self.pid.to_string()).status();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        } else {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Path::new(&format!("/proc/{}", self.pid)).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        self.pid = 0;
    }
}

impl Drop for Nsd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// nsd's configuration (no chroot, no privilege drop, everything under `dir`) and the zone
/// files, checked with `nsd-checkconf`; returns the configuration's path.
fn write_config(address: &str, dir: &Path, zones: &[Zone]) -> Result<PathBuf> {
    let mut conf = format!(
        "server:\n  ip-address: {address}\n  port: 53\n  server-count: 1\n  username: \"\"\n  \
         chroot: \"\"\n  zonesdir: \"{d}\"\n  database: \"\"\n  zonelistfile: \"{d}/zone.list\"\n  \
         xfrdfile: \"{d}/xfrd.state\"\n  xfrdir: \"{d}\"\n  pidfile: \"{d}/nsd.pid\"\n  \
         logfile: \"{d}/nsd.log\"\n  verbosity: 1\n\
         remote-control:\n  control-enable: no\n",
        d = dir.display()
    );
    for Zone { name, records } in zones {
        let head = format!(
            "{name}. 3600 IN SOA ns.{name}. admin.{name}. 1 3600 600 86400 300\n\
             {name}. 3600 IN NS ns.{name}.\nns.{name}. 3600 IN A {address}\n"
        );
        let file = dir.join(format!("{name}.zone"));
        std::fs::write(&file, head + records)
            .with_context(|| format!("writing {}", file.display()))?;
        conf.push_str(&format!("zone:\n  name: {name}\n  zonefile: {name}.zone\n"));
    }
    let path = dir.join("nsd.conf");
    std::fs::write(&path, conf).with_context(|| format!("writing {}", path.display()))?;
    let check = Command::new("nsd-checkconf")
        .arg(&path)
        .output()
        .context("running nsd-checkconf")?;
    if !check.status.success() {
        bail!(
            "nsd-checkconf {}: {}",
            path.display(),
            String::from_utf8_lossy(&check.stderr)
        );
    }
    Ok(path)
}
