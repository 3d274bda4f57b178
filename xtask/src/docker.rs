//! A Docker engine of the tests' own: `dockerd` started on a private socket with its data
//! under `target/docker/` (the layer cache survives between runs), no iptables and no bridge
//! (the relay's containers use the host's network), stopped by the PID it was started with.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::image::Engine;
use crate::workspace;

/// A running `dockerd`; stopped (by its PID) when dropped.
#[derive(Debug)]
pub struct Dockerd {
    child: Child,
    /// The value for `DOCKER_HOST`.
    pub host: String,
}

impl Dockerd {
    /// Starts dockerd with data in `target/docker/`, runtime files in `/tmp/cmdeploy-dockerd/`,
    /// and waits until it answers.
    pub fn start() -> Result<Dockerd> {
        let data = workspace().join("target/docker");
        // Socket paths must stay short: the runtime directory is under /tmp.
        let exec = PathBuf::from("/tmp/cmdeploy-dockerd");
        std::fs::create_dir_all(&data)?;
        std::fs::create_dir_all(&exec)?;
        let socket = exec.join("docker.sock");
        let pidfile = exec.join("dockerd.pid");
        stop_stale(&pidfile);
        let log = std::fs::File::create(data.join("dockerd.log"))?;
        let child = Command::new("dockerd")
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .arg("--data-root")
            .arg(&data)
            .arg("--exec-root")
            .arg(exec.join("exec"))
            .arg("--pidfile")
            .arg(&pidfile)
            .args(["--iptables=false", "--bridge=none"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting dockerd (apt-get install docker.io)")?;
        let dockerd = Dockerd {
            child,
            host: format!("unix://{}", socket.display()),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if dockerd.docker(&["version"]).output()?.status.success() {
                return Ok(dockerd);
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        bail!(
            "dockerd did not answer within 60 s; see {}",
            data.join("dockerd.log").display()
        )
    }

    /// This engine as the tests drive it: Debian's client in /usr/bin with `DOCKER_HOST` set.
    pub fn engine(&self) -> Engine {
        Engine {
            program: "/usr/bin/docker".into(),
            env: vec![("DOCKER_HOST".into(), self.host.clone())],
        }
    }

    /// A `docker` command talking to this engine.
    pub fn docker(&self, args: &[&str]) -> Command {
        self.engine().command(args)
    }
}

/// A dockerd left by a killed test run holds the pidfile: stop it by that PID.
fn stop_stale(pidfile: &Path) {
    let Ok(pid) = std::fs::read_to_string(pidfile) else {
        return;
    };
    let pid = pid.trim();
    let is_dockerd = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .is_ok_and(|comm| comm.trim() == "dockerd");
    if is_dockerd {
        let _ = Command::new("kill").arg(pid).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").arg(&pid).status();
        let _ = self.child.wait();
    }
}
