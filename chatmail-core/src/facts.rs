//! Facts about the target that decide defaults: architecture, systemd, container, and the
//! package versions installed.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::target::Target;

/// What the engine found out about the target before planning.
#[derive(Debug, Clone, Serialize)]
pub struct Facts {
    /// Kernel architecture name as `uname -m` prints it (`x86_64`, `aarch64`).
    pub arch: String,
    /// Debian's name for it (`amd64`, `arm64`).
    pub deb_arch: String,
    /// A running systemd manages the target (false for `--root` directories and containers).
    pub systemd: bool,
    /// The target is a container (port checks and sysctls do not apply).
    pub container: bool,
    /// Where the relay's own programs (filtermail, doveauth, ...) are found on the machine
    /// running cmdeploy: beside the cmdeploy executable unless `--binaries` says otherwise.
    #[serde(skip)]
    pub binaries: std::path::PathBuf,
    /// Versions of the packages fully installed on the target when planning began (its dpkg
    /// status): lets install keep a build an earlier run chose.
    #[serde(skip)]
    pub installed: BTreeMap<String, String>,
}

impl Facts {
    /// Detects the facts of `target`; the relay's programs are looked up in `binaries`.
    pub fn detect(target: &Target, binaries: std::path::PathBuf) -> Facts {
        let arch = std::env::consts::ARCH.to_owned();
        let local = target.is_host_root();
        Facts {
            deb_arch: deb_arch(&arch).to_owned(),
            arch,
            systemd: local && std::path::Path::new("/run/systemd/system").is_dir(),
            container: local && in_container(),
            binaries,
            installed: crate::dpkg::installed_versions(target).unwrap_or_default(),
        }
    }

    /// Daemons run as the processes of containers of their own, without systemd (the relay's
    /// image): they log to stdout or stderr and share sockets through volumes. Not so in a
    /// container that boots systemd (an nspawn or LXC host), which runs them as units.
    /// Templates see it as `foreground`.
    pub fn foreground(&self) -> bool {
        self.container && !self.systemd
    }
}

/// The running kernel's value of a numeric sysctl such as `fs.inotify.max_user_watches`;
/// 0 when the key is missing or unreadable (container runtimes may hide it).
pub fn kernel_setting(key: &str) -> u64 {
    let path = std::path::Path::new("/proc/sys").join(key.replace('.', "/"));
    std::fs::read_to_string(path)
        .ok()
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

/// Debian's architecture name for a kernel architecture name.
pub fn deb_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" | "i686" => "i386",
        "arm" => "armhf",
        other => other,
    }
}

fn in_container() -> bool {
    if std::path::Path::new("/.dockerenv").exists()
        || std::path::Path::new("/run/.containerenv").exists()
    {
        return true;
    }
    let environ = std::fs::read("/proc/1/environ").unwrap_or_default();
    environ
        .split(|b| *b == 0)
        .any(|var| var.starts_with(b"container="))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kernel_settings_and_takes_missing_ones_as_zero() {
        assert!(kernel_setting("kernel.pid_max") > 0);
        assert_eq!(kernel_setting("fs.no_such_setting"), 0);
    }
}
