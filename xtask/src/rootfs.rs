//! The cached Debian 12 (bookworm) rootfs: debootstrapped once, kept as a tarball under
//! `target/rootfs/`, extracted afresh by every test that deploys into it. The tarballs are
//! also kept outside the clone (`$CMDEPLOY_CACHE/rootfs-<key>/`, as the Dovecot packages), so
//! a fresh clone (CI) links them instead of debootstrapping again.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::{check, workspace};

/// The tarball's path; `CMDEPLOY_ROOTFS` overrides it.
pub fn tarball() -> PathBuf {
    std::env::var_os("CMDEPLOY_ROOTFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/rootfs/bookworm-minbase.tar"))
}

/// What the bootable variant adds to minbase: systemd as init, D-Bus, and an SSH server (the
/// tests deploy into booted hosts over SSH as an operator does from a laptop).
pub const BOOTABLE_PACKAGES: &[&str] = &["systemd", "systemd-sysv", "dbus", "openssh-server"];

/// The bootable variant's path. Its name changes with [`BOOTABLE_PACKAGES`] (bump the number
/// when they change), so a tarball cached with other packages is never reused.
pub fn bootable_tarball() -> PathBuf {
    tarball().with_file_name("bookworm-bootable-2.tar")
}

/// What debootstrap is given: the suite, the variant and the mirror.
const DEBOOTSTRAP: [&str; 3] = [
    "bookworm",
    "--variant=minbase",
    "http://deb.debian.org/debian",
];

/// Builds the bootable tarball (and the minbase one it starts from) unless it exists.
pub fn ensure_bootable() -> Result<PathBuf> {
    let bootable = bootable_tarball();
    cached_or(&bootable, || {
        let minbase = ensure()?;
        let parent = bootable.parent().context("rootfs path has no parent")?;
        let staging = staging_dir(parent)?;
        extract(&minbase, &staging)?;
        make_bootable(&staging)?;
        pack(&staging, &bootable)
    })
}

/// Builds the minbase tarball unless it exists; returns its path.
pub fn ensure() -> Result<PathBuf> {
    let tarball = tarball();
    cached_or(&tarball, || {
        let parent = tarball.parent().context("rootfs path has no parent")?;
        std::fs::create_dir_all(parent)?;
        let staging = staging_dir(parent)?;
        eprintln!("debootstrapping Debian 12 into {} ...", staging.display());
        let [suite, variant, mirror] = DEBOOTSTRAP;
        check(
            Command::new("debootstrap")
                .args([variant, suite])
                .arg(&staging)
                .arg(mirror),
        )
        .context("debootstrap failed (is the debootstrap package installed?)")?;
        pack(&staging, &tarball)
    })
}

/// `tarball`, linked from the cache outside the clone when it is there, else made by `make`
/// unless it exists; then kept in the cache too.
fn cached_or(tarball: &Path, make: impl FnOnce() -> Result<PathBuf>) -> Result<PathBuf> {
    let name = tarball
        .file_name()
        .context("rootfs path has no file name")?;
    let cached = cache_dir().join(name);
    if !tarball.exists() {
        if cached.exists() {
            std::fs::create_dir_all(tarball.parent().context("rootfs path has no parent")?)?;
            link_or_copy(&cached, tarball)?;
        } else {
            make()?;
        }
    }
    if !cached.exists() {
        std::fs::create_dir_all(cache_dir())
            .with_context(|| format!("creating {}", cache_dir().display()))?;
        let partial = cached.with_extension("tar.partial");
        link_or_copy(tarball, &partial)?;
        std::fs::rename(&partial, &cached)?;
    }
    Ok(tarball.to_owned())
}

/// `$CMDEPLOY_CACHE/rootfs-<key>/`, key = sha256 of what debootstrap is given and
/// [`BOOTABLE_PACKAGES`] (the file names carry the rest).
fn cache_dir() -> PathBuf {
    let mut hasher = Sha256::new();
    for part in DEBOOTSTRAP.iter().chain(BOOTABLE_PACKAGES) {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let key = format!("{:x}", hasher.finalize());
    crate::cache_root().join(format!("rootfs-{}", &key[..16]))
}

/// A hard link of `from` at `to` (the cache and the clone share a file system), or a copy.
fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    let _ = std::fs::remove_file(to);
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

/// Packs `dir` into `tarball` (atomically) and removes `dir`.
fn pack(dir: &Path, tarball: &Path) -> Result<PathBuf> {
    let partial = tarball.with_extension("tar.partial");
    check(
        Command::new("tar")
            .arg("-C")
            .arg(dir)
            .arg("-cf")
            .arg(&partial)
            .arg("."),
    )?;
    std::fs::rename(&partial, tarball)?;
    std::fs::remove_dir_all(dir)?;
    Ok(tarball.to_owned())
}

fn staging_dir(parent: &Path) -> Result<PathBuf> {
    let dir = parent.join(format!("staging-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Extracts `tarball` into `dir`, replacing whatever was there.
pub fn extract(tarball: &Path, dir: &Path) -> Result<PathBuf> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    check(
        Command::new("tar")
            .arg("-C")
            .arg(dir)
            .arg("-xf")
            .arg(tarball),
    )?;
    Ok(dir.to_owned())
}

/// Installs [`BOOTABLE_PACKAGES`] into `root`, keeping package scripts from starting anything.
fn make_bootable(root: &Path) -> Result<()> {
    apt_install(root, BOOTABLE_PACKAGES)
}

/// `apt-get install --no-install-recommends packages` inside `root`, the way an operator would
/// by hand: /proc mounted, and package scripts kept from starting services.
pub fn apt_install(root: &Path, packages: &[&str]) -> Result<()> {
    in_chroot(root, || {
        check(
            Command::new("chroot")
                .arg(root)
                .args(["apt-get", "install", "-y", "-q", "--no-install-recommends"])
                .args(packages)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(std::process::Stdio::null()),
        )
    })
}

/// Runs `work` (commands under `chroot root`) with /proc mounted in `root` and package scripts
/// kept from starting services; undoes both afterwards, also when `work` fails.
pub fn in_chroot(root: &Path, work: impl FnOnce() -> Result<()>) -> Result<()> {
    let policy = root.join("usr/sbin/policy-rc.d");
    std::fs::write(&policy, "#!/bin/sh\nexit 101\n")?;
    check(Command::new("chmod").arg("755").arg(&policy))?;
    check(
        Command::new("mount")
            .args(["-t", "proc", "proc"])
            .arg(root.join("proc")),
    )?;
    let result = work();
    check(Command::new("umount").arg(root.join("proc")))?;
    std::fs::remove_file(&policy)?;
    result
}
