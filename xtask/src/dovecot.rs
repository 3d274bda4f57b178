//! The delay-free Dovecot (`cargo xtask dovecot`): Debian bookworm's own source package with
//! our patches (xtask/dovecot/*.patch), built in a chroot of the cached minbase rootfs, its
//! `.deb` files cached outside the clone under a key of source version and patches.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::{cache_root, check, rootfs, workspace};

/// The Debian source version the build starts from (`apt-get source dovecot=...`). Bump it,
/// and [`LOCAL_VERSION`] with it, when bookworm's archive moves on: to bookworm-security's
/// release as soon as the mirror serves its source (deb12u7's is not served here: its `.dsc`
/// is a 404, while its binary packages are, so Debian's own packages are newer than ours).
pub const SOURCE_VERSION: &str = "1:2.3.19.1+dfsg1-2.1+deb12u6";

/// Our packages' version: Debian's with a local suffix (`chatmail_dovecot::OUR_MARKER`, by
/// which the install phase tells our build from Debian's), so apt never takes them for
/// Debian's (dpkg sorts it just above the version it starts from).
pub const LOCAL_VERSION: &str = "1:2.3.19.1+dfsg1-2.1+deb12u6+chatmail2";

/// Our patches, in the order quilt applies them after Debian's.
const PATCHES: [(&str, &str); 2] = [
    (
        "no-notify-delay.patch",
        include_str!("../dovecot/no-notify-delay.patch"),
    ),
    (
        "stop-without-sleep.patch",
        include_str!("../dovecot/stop-without-sleep.patch"),
    ),
];

/// The chroot's apt sources besides minbase's `bookworm main`: the security archive (its
/// Dovecot, and the build dependencies' security updates) and the source packages of both.
const BUILD_SOURCES: &str = "\
deb http://deb.debian.org/debian-security bookworm-security main
deb-src http://deb.debian.org/debian bookworm main
deb-src http://deb.debian.org/debian-security bookworm-security main
";

/// Build options: no test suite (it runs Debian's tests of code we do not change, for many
/// minutes), and as many jobs as this machine has cores.
const BUILD_OPTIONS: &str = "nocheck";

/// The install phase's choice of Dovecot build: a directory such as [`ensure`]'s.
pub use chatmail_dovecot::DEBS_ENV;

/// A short hash of everything that decides the packages' contents.
fn key() -> String {
    let mut hasher = Sha256::new();
    for part in [SOURCE_VERSION, LOCAL_VERSION, BUILD_SOURCES, BUILD_OPTIONS] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    for (name, text) in PATCHES {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        hasher.update([0]);
    }
    format!("{:x}", hasher.finalize())[..16].to_owned()
}

/// Where the packages of this source version and these patches are cached:
/// `<cache>/dovecot-<key>/`. A directory of that name is complete (it appears by rename).
pub fn debs_dir() -> PathBuf {
    cache_root().join(format!("dovecot-{}", key()))
}

/// The packages' directory, building them first unless they are cached (one build at a time
/// per cache: others wait for it). `target/dovecot-debs` points at it, for developers.
pub fn ensure() -> Result<PathBuf> {
    let dir = debs_dir();
    if !dir.is_dir() {
        let root = cache_root();
        std::fs::create_dir_all(&root)
            .with_context(|| format!("creating the cache directory {}", root.display()))?;
        let lock_path = root.join("dovecot.lock");
        let lock = std::fs::File::create(&lock_path)
            .with_context(|| format!("creating {}", lock_path.display()))?;
        lock.lock()
            .with_context(|| format!("locking {}", lock_path.display()))?;
        if !dir.is_dir() {
            build(&dir)?;
        }
    }
    let link = workspace().join("target/dovecot-debs");
    if std::fs::read_link(&link).ok().as_deref() != Some(dir.as_path()) {
        let _ = std::fs::remove_file(&link);
        std::fs::create_dir_all(workspace().join("target"))?;
        std::os::unix::fs::symlink(&dir, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    Ok(dir)
}

/// Builds the packages in a fresh chroot under target/ and moves them into `dir`.
fn build(dir: &Path) -> Result<()> {
    let work = workspace().join("target/dovecot-build");
    let root = rootfs::extract(&rootfs::ensure()?, &work.join("root"))?;
    std::fs::write(
        root.join("etc/apt/sources.list.d/build.list"),
        BUILD_SOURCES,
    )?;
    std::fs::create_dir_all(root.join("build"))?;
    let pinned = format!("dovecot={}", SOURCE_VERSION);
    eprintln!("building Dovecot {LOCAL_VERSION} in {} ...", root.display());
    rootfs::in_chroot(&root, || {
        chroot(&root, &["apt-get", "update", "-q"])?;
        chroot(
            &root,
            &[
                "apt-get",
                "build-dep",
                "-y",
                "-q",
                "--no-install-recommends",
                &pinned,
            ],
        )?;
        chroot(
            &root,
            &["env", "-C", "/build", "apt-get", "source", "-q", &pinned],
        )
        .context("fetching Dovecot's source (is the version still in bookworm's archive?)")?;
        let source = source_dir(&root.join("build"))?;
        add_patches(&source)?;
        add_changelog_entry(&source)?;
        let inside = Path::new("/build").join(source.file_name().context("source dir")?);
        let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
        check(
            Command::new("chroot")
                .arg(&root)
                .arg("env")
                .arg("-C")
                .arg(&inside)
                .args(["dpkg-buildpackage", "-b", "-uc", "-us"])
                .env(
                    "DEB_BUILD_OPTIONS",
                    format!("{BUILD_OPTIONS} parallel={jobs}"),
                )
                .stdout(std::process::Stdio::null()),
        )
        .context("dpkg-buildpackage failed (run it again in the chroot to see why)")
    })?;
    let partial = dir.with_extension("partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial)?;
    }
    std::fs::create_dir_all(&partial)
        .with_context(|| format!("creating the cache directory {}", partial.display()))?;
    let mut count = 0;
    for entry in std::fs::read_dir(root.join("build"))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        // Debug symbols are large and no relay installs them.
        if name.ends_with(".deb") && !name.contains("-dbg") {
            std::fs::copy(&path, partial.join(name))?;
            count += 1;
        }
    }
    if count == 0 {
        bail!("the build made no .deb files in {}", root.display());
    }
    std::fs::rename(&partial, dir)?;
    std::fs::remove_dir_all(&work)?;
    Ok(())
}

/// Runs `argv` inside `root`, its output out of sight, non-interactively.
fn chroot(root: &Path, argv: &[&str]) -> Result<()> {
    check(
        Command::new("chroot")
            .arg(root)
            .args(argv)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(std::process::Stdio::null()),
    )
}

/// The one unpacked source directory `apt-get source` made in `build`.
fn source_dir(build: &Path) -> Result<PathBuf> {
    for entry in std::fs::read_dir(build)? {
        let path = entry?.path();
        if path.is_dir() {
            return Ok(path);
        }
    }
    bail!("apt-get source unpacked nothing into {}", build.display())
}

/// Adds [`PATCHES`] to the quilt series; dpkg-buildpackage applies them before building.
fn add_patches(source: &Path) -> Result<()> {
    let patches = source.join("debian/patches");
    let series = patches.join("series");
    let mut list = std::fs::read_to_string(&series)
        .with_context(|| format!("reading {}", series.display()))?;
    if !list.ends_with('\n') {
        list.push('\n');
    }
    for (name, text) in PATCHES {
        std::fs::write(patches.join(name), text)?;
        list.push_str(name);
        list.push('\n');
    }
    std::fs::write(&series, list)?;
    Ok(())
}

/// Gives the packages [`LOCAL_VERSION`] with a changelog entry of ours, dated like Debian's
/// last one so that the build is reproducible.
fn add_changelog_entry(source: &Path) -> Result<()> {
    let path = source.join("debian/changelog");
    let changelog =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let date = changelog
        .lines()
        .find_map(|line| line.strip_prefix(" -- "))
        .and_then(|trailer| trailer.split_once(">  "))
        .map(|(_, date)| date)
        .with_context(|| format!("no trailer line in {}", path.display()))?;
    let mut entry = format!("dovecot ({LOCAL_VERSION}) bookworm; urgency=medium\n\n");
    for (name, text) in PATCHES {
        entry += &format!("  * cmdeploy, {name}: {}.\n", summary(text));
    }
    entry += &format!("\n -- cmdeploy <root@localhost>  {date}\n\n");
    std::fs::write(&path, entry + &changelog)?;
    Ok(())
}

/// A patch's one-line summary: its `Description:` header (DEP-3).
fn summary(patch: &str) -> &str {
    patch
        .lines()
        .find_map(|line| line.strip_prefix("Description: "))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_patch_has_a_summary_for_the_changelog() {
        for (name, text) in PATCHES {
            assert!(!summary(text).is_empty(), "{name} has no Description line");
        }
    }

    #[test]
    fn our_version_is_debians_with_the_marker_the_install_phase_knows() {
        let suffix = LOCAL_VERSION
            .strip_prefix(SOURCE_VERSION)
            .unwrap_or_default();
        assert!(
            suffix.starts_with(chatmail_dovecot::OUR_MARKER),
            "{LOCAL_VERSION}"
        );
    }
}
