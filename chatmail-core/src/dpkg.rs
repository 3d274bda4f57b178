//! Installed Debian packages, read from the target's dpkg status file, the batched
//! `apt-get install` under a guard that keeps package scripts from starting services, the
//! batched removal of obsolete packages, and `--upgrade`'s `apt-get upgrade`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};

use crate::target::{Target, argv};

/// What dpkg records of one package on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// `installed`, `config-files`, `half-configured`, ...
    pub state: String,
    pub version: String,
}

/// The fully installed packages of the target, with their versions.
pub fn installed_versions(target: &Target) -> Result<BTreeMap<String, String>> {
    Ok(packages(target)?
        .into_iter()
        .filter(|(_, package)| package.state == "installed")
        .map(|(name, package)| (name, package.version))
        .collect())
}

/// Every package dpkg knows on the target, with its state and version.
pub fn packages(target: &Target) -> Result<BTreeMap<String, Package>> {
    let path = target.path("/var/lib/dpkg/status");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    };
    Ok(parse_status(&text))
}

fn parse_status(text: &str) -> BTreeMap<String, Package> {
    let mut packages = BTreeMap::new();
    for stanza in text.split("\n\n") {
        let mut name = None;
        let mut state = None;
        let mut version = "";
        for line in stanza.lines() {
            if let Some(value) = line.strip_prefix("Package: ") {
                name = Some(value.trim());
            } else if let Some(value) = line.strip_prefix("Status: ") {
                // want flag state, e.g. `install ok installed`, `deinstall ok config-files`
                state = value.split_whitespace().nth(2);
            } else if let Some(value) = line.strip_prefix("Version: ") {
                version = value.trim();
            }
        }
        if let (Some(name), Some(state)) = (name, state)
            && state != "not-installed"
        {
            let package = Package {
                state: state.to_owned(),
                version: version.to_owned(),
            };
            packages.insert(name.to_owned(), package);
        }
    }
    packages
}

/// `/usr/sbin/policy-rc.d` answering 101 ("action forbidden") while it exists, so that
/// installing a package never starts its daemon; removed on drop, even after a failure.
#[derive(Debug)]
pub struct NoStartGuard<'t> {
    target: &'t Target,
    previous: Option<Vec<u8>>,
}

const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

impl<'t> NoStartGuard<'t> {
    pub fn new(target: &'t Target) -> Result<Self> {
        let path = target.path(POLICY_RC_D);
        let previous = std::fs::read(&path).ok();
        write_executable(
            &path,
            b"#!/bin/sh\necho \"cmdeploy: not starting services while installing\" >&2\nexit 101\n",
        )?;
        Ok(NoStartGuard { target, previous })
    }
}

impl Drop for NoStartGuard<'_> {
    fn drop(&mut self) {
        let path = self.target.path(POLICY_RC_D);
        let _ = match &self.previous {
            Some(content) => write_executable(&path, content),
            None => std::fs::remove_file(&path).map_err(Into::into),
        };
    }
}

fn write_executable(path: &Path, content: &[u8]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, content).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

const APT_ENV: &[(&str, &str)] = &[("DEBIAN_FRONTEND", "noninteractive")];

/// Installs `packages` (names, or paths of `.deb` files on the target) in one
/// `apt-get install`, refreshing the package lists first when
/// they are missing or older than a day.
pub fn install(target: &Target, packages: &[String]) -> Result<()> {
    let _guard = NoStartGuard::new(target)?;
    if lists_are_stale(target) {
        target.run(&argv(&["apt-get", "update", "-q"]), APT_ENV)?;
    }
    let mut command = argv(&[
        "apt-get",
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        // Switching between builds of a package (Debian's, or one from .deb files) may go
        // down in version; an apt preference or a pinned file decides which build is wanted.
        "--allow-downgrades",
    ]);
    command.extend(KEEP_CONFIG.iter().map(|arg| (*arg).to_owned()));
    command.extend(packages.iter().cloned());
    target.run(&command, APT_ENV)?;
    Ok(())
}

/// One package a pending upgrade replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// The package name.
    pub package: String,
    /// The installed version.
    pub from: String,
    /// The version the upgrade installs.
    pub to: String,
}

impl std::fmt::Display for Upgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} -> {}", self.package, self.from, self.to)
    }
}

/// The upgrades `apt-get upgrade` would apply with the package lists at hand (asked with
/// `--simulate`, which changes nothing); `refresh` runs `apt-get update` first.
pub fn upgradable(target: &Target, refresh: bool) -> Result<Vec<Upgrade>> {
    if refresh {
        target.run(&argv(&["apt-get", "update", "-q"]), APT_ENV)?;
    }
    let mut command = argv(&["apt-get", "upgrade", "--simulate", "-q"]);
    command.extend(KEEP_CONFIG.iter().map(|arg| (*arg).to_owned()));
    let output = target.run(&command, APT_ENV)?;
    Ok(parse_simulation(&String::from_utf8_lossy(&output.stdout)))
}

/// Applies every pending upgrade in one `apt-get upgrade`, with package scripts kept from
/// restarting services (activation restarts those that run replaced files) and the
/// configuration files the relay manages kept.
pub fn upgrade(target: &Target) -> Result<()> {
    let _guard = NoStartGuard::new(target)?;
    let mut command = argv(&["apt-get", "upgrade", "-y", "-q"]);
    command.extend(KEEP_CONFIG.iter().map(|arg| (*arg).to_owned()));
    target.run(&command, APT_ENV)?;
    Ok(())
}

/// Keep a changed configuration file, take a new one that was not changed, never ask.
const KEEP_CONFIG: &[&str] = &[
    "-o",
    "Dpkg::Options::=--force-confdef",
    "-o",
    "Dpkg::Options::=--force-confold",
];

/// Reads the `Inst <package> [<installed>] (<new> <archives> [<arch>])` lines of a simulated
/// `apt-get upgrade`; packages new to the system (no installed version) are not upgrades.
fn parse_simulation(text: &str) -> Vec<Upgrade> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("Inst ")?;
            let (package, rest) = rest.split_once(' ')?;
            let (from, rest) = rest.strip_prefix('[')?.split_once(']')?;
            let to = rest.trim_start().strip_prefix('(')?.split(' ').next()?;
            Some(Upgrade {
                package: package.to_owned(),
                from: from.to_owned(),
                to: to.to_owned(),
            })
        })
        .collect()
}

/// Removes `packages` in one `apt-get remove` (or `apt-get purge`, which also deletes their
/// configuration files). Package scripts may stop the daemons they remove.
pub fn remove(target: &Target, packages: &[String], purge: bool) -> Result<()> {
    let verb = if purge { "purge" } else { "remove" };
    let mut command = argv(&["apt-get", verb, "-y", "-q"]);
    command.extend(packages.iter().cloned());
    target.run(&command, APT_ENV)?;
    Ok(())
}

fn lists_are_stale(target: &Target) -> bool {
    let lists = target.path("/var/lib/apt/lists");
    let newest = std::fs::read_dir(&lists)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with("Packages"))
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .max();
    match newest {
        None => true,
        Some(time) => time.elapsed().is_ok_and(|age| age.as_secs() > 24 * 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simulated_upgrade_lists_the_packages_it_replaces() {
        let text = "Reading package lists...\n\
                    Inst libssl3 [3.0.15-1~deb12u1] (3.0.17-1~deb12u2 Debian-Security:12/stable-security [amd64])\n\
                    Inst nginx [1.22.1-9] (1.22.1-9+deb12u2 Debian:12.11/stable [amd64]) []\n\
                    Inst linux-image-6.1.0-40-amd64 (6.1.153-1 Debian-Security:12/stable-security [amd64])\n\
                    Conf libssl3 (3.0.17-1~deb12u2 Debian-Security:12/stable-security [amd64])\n";
        let upgrades: Vec<String> = parse_simulation(text)
            .iter()
            .map(|u| u.to_string())
            .collect();
        assert_eq!(
            upgrades,
            [
                "libssl3 3.0.15-1~deb12u1 -> 3.0.17-1~deb12u2",
                "nginx 1.22.1-9 -> 1.22.1-9+deb12u2",
            ]
        );
    }

    #[test]
    fn package_states_come_from_the_status_field() {
        let status = "Package: postfix\nStatus: install ok installed\nVersion: 3.7\n\n\
                      Package: nginx\nStatus: deinstall ok config-files\n\n\
                      Package: rspamd\nStatus: purge ok not-installed\n\n\
                      Package: dovecot-core\nArchitecture: amd64\nStatus: install ok installed\n";
        let packages: Vec<_> = parse_status(status)
            .into_iter()
            .map(|(name, package)| (name, package.state, package.version))
            .collect();
        let owned = |(a, b, c): (&str, &str, &str)| (a.to_owned(), b.to_owned(), c.to_owned());
        assert_eq!(
            packages,
            [
                ("dovecot-core", "installed", ""),
                ("nginx", "config-files", ""),
                ("postfix", "installed", "3.7"),
            ]
            .map(owned)
        );
    }
}
