//! Which Dovecot build a relay gets. Delay-free by default: Dovecot 2.3 waits 500 ms before it
//! tells IMAP IDLE clients about new mail, builds without that wait (upstream's 2.3.21, or ours
//! from `cargo xtask dovecot`) deliver each message about half a second sooner. Install cannot
//! read chatmail.ini, so [`DEBS_ENV`] chooses:
//!
//! - unset: keep the delay-free build that is installed; else upstream's pinned download; when
//!   its server cannot be reached, Debian's packages with one warning naming the cost.
//! - `download`: upstream's pinned download, or fail.
//! - `debian`: Debian's packages, on purpose.
//! - a directory: the `.deb` files of one delay-free build in it (found by their control data).
//!
//! Every choice writes one apt preference: a delay-free build is pinned against Debian's
//! versions; Debian's choice replaces any other build with the archive's (a downgrade if need
//! be). Mail, indexes and settings stay: packages change, `/etc/dovecot` keeps its files.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use chatmail_core::Install;
use chatmail_core::plan::Download;

use crate::fork;

/// Chooses the build at install time: `download`, `debian`, or a directory of `.deb` files.
pub const DEBS_ENV: &str = "CMDEPLOY_DOVECOT_DEBS";

/// The packages a relay uses, whichever build they come from.
pub const PACKAGES: [&str; 3] = ["dovecot-core", "dovecot-imapd", "dovecot-lmtpd"];

/// The local version suffix of our builds (`cargo xtask dovecot`'s `LOCAL_VERSION`).
pub const OUR_MARKER: &str = "+chatmail";

/// The apt preference every choice writes (one path, so a switch replaces it).
const PIN: &str = "pin-dovecot";

const DELAY_FREE_PIN: &str = "\
# A delay-free Dovecot is installed from .deb files (cmdeploy, CMDEPLOY_DOVECOT_DEBS);
# Debian's versions must not replace it.
Package: dovecot-*
Pin: release o=Debian
Pin-Priority: -1
";

const DEBIAN_PIN: &str = "\
# Debian's Dovecot (cmdeploy: CMDEPLOY_DOVECOT_DEBS=debian, or no delay-free build could be
# had): apt replaces any other build with the archive's.
Package: dovecot-*
Pin: release o=Debian
Pin-Priority: 1001
";

/// Declares the build [`DEBS_ENV`] asks for.
pub fn install(install: &mut Install<'_>) -> Result<()> {
    match std::env::var_os(DEBS_ENV) {
        None => default(install),
        Some(choice) if choice == "download" => upstream(install),
        Some(choice) if choice == "debian" => {
            debian(install);
            Ok(())
        }
        Some(dir) => local(install, &dir),
    }
}

/// Delay-free unless it cannot be had: the installed delay-free build stays (no download
/// needed), else upstream's when its server answers, else Debian's with a warning.
fn default(install: &mut Install<'_>) -> Result<()> {
    let installed = install.facts.installed.get(PACKAGES[0]).cloned();
    match installed {
        Some(version) if version.contains(OUR_MARKER) => {
            install.packages(&PACKAGES);
            install.apt_preference(PIN, DELAY_FREE_PIN);
            Ok(())
        }
        Some(version) if version == fork::VERSION => upstream(install),
        _ => match fork::url(install.facts).map(|url| chatmail_core::reachable(&url)) {
            Ok(Ok(())) => upstream(install),
            Ok(Err(err)) | Err(err) => {
                install.warn(&format!(
                    "installing Debian's Dovecot: the delay-free build could not be had \
                     ({err:#}). With Debian's, IMAP IDLE clients see each new message about \
                     0.5 s later (its built-in notify delay). Choose with {DEBS_ENV}=download \
                     (upstream's build), {DEBS_ENV}=DIR (the .deb files of `cargo xtask \
                     dovecot`) or {DEBS_ENV}=debian (this choice, without this warning)"
                ));
                debian(install);
                Ok(())
            }
        },
    }
}

/// Upstream's pinned download, pinned against Debian's.
fn upstream(install: &mut Install<'_>) -> Result<()> {
    fork::install(install)?;
    install.apt_preference(PIN, DELAY_FREE_PIN);
    Ok(())
}

/// Debian's packages; any other build is replaced by the archive's.
fn debian(install: &mut Install<'_>) {
    install.packages(&PACKAGES);
    install.foreign_builds(&PACKAGES, &[OUR_MARKER, fork::VERSION]);
    install.apt_preference(PIN, DEBIAN_PIN);
}

/// The `.deb` files of one build of [`PACKAGES`] for the target's architecture in `dir`,
/// pinned against Debian's.
fn local(install: &mut Install<'_>, dir: &OsStr) -> Result<()> {
    let dir = Path::new(dir);
    let found = read_debs(dir, &install.facts.deb_arch)?;
    let version = one_version(dir, &found, &install.facts.deb_arch)?;
    for (package, _, path) in &found {
        let file = path.file_name().context("a .deb file name")?;
        let dest = format!("/var/cache/cmdeploy/debs/{}", file.to_string_lossy());
        install.deb(package, &version, Download::local_file(&dest, path)?);
    }
    install.apt_preference(PIN, DELAY_FREE_PIN);
    Ok(())
}

/// `(package, version, file)` of each `.deb` in `dir` that is one of [`PACKAGES`] for `arch`.
fn read_debs(dir: &Path, arch: &str) -> Result<Vec<(String, String, std::path::PathBuf)>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("{DEBS_ENV}={}: reading the directory", dir.display()))?;
    let mut found = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension() != Some(OsStr::new("deb")) {
            continue;
        }
        let output = Command::new("dpkg-deb")
            .arg("--field")
            .arg(&path)
            .args(["Package", "Version", "Architecture"])
            .output()
            .with_context(|| format!("running dpkg-deb --field {}", path.display()))?;
        if !output.status.success() {
            bail!(
                "{DEBS_ENV}: {} is not a readable .deb file: {}",
                path.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let text = String::from_utf8_lossy(&output.stdout);
        let field = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
                .map(str::to_owned)
        };
        let (Some(package), Some(version), Some(deb_arch)) =
            (field("Package"), field("Version"), field("Architecture"))
        else {
            bail!(
                "{DEBS_ENV}: {} has no Package, Version and Architecture fields",
                path.display()
            );
        };
        if PACKAGES.contains(&package.as_str()) && deb_arch == arch {
            found.push((package, version, path));
        }
    }
    found.sort();
    Ok(found)
}

/// The one version all of [`PACKAGES`] have in `found`, or an error naming `dir` and what is
/// missing or mixed.
fn one_version(
    dir: &Path,
    found: &[(String, String, std::path::PathBuf)],
    arch: &str,
) -> Result<String> {
    let listed: Vec<String> = found
        .iter()
        .map(|(package, version, _)| format!("{package} {version}"))
        .collect();
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|package| !found.iter().any(|(p, _, _)| p == package))
        .collect();
    if !missing.is_empty() {
        bail!(
            "{DEBS_ENV}={}: no {arch} .deb file of {} (found: {}); build them with \
             `cargo xtask dovecot`",
            dir.display(),
            missing.join(", "),
            if listed.is_empty() {
                "none".to_owned()
            } else {
                listed.join(", ")
            }
        );
    }
    let version = &found[0].1;
    if found.len() != PACKAGES.len() || found.iter().any(|(_, v, _)| v != version) {
        bail!(
            "{DEBS_ENV}={}: the .deb files must be one build, one of each of {} at one \
             version; found: {}",
            dir.display(),
            PACKAGES.join(", "),
            listed.join(", ")
        );
    }
    Ok(version.clone())
}
