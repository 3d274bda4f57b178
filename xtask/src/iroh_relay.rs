//! The iroh relay server (`cargo xtask iroh-relay`): crates.io's `iroh-relay` at the version
//! upstream pins, built with `cargo install --locked`, its binary cached outside the clone under
//! a key of version and build options, and copied beside cmdeploy so that the install phase
//! ships it as one of the relay's bundled programs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::{cache_root, check, workspace};

/// The crate's version: upstream chatmail's pin (v0.35.0), the protocol Delta Chat speaks.
pub const VERSION: &str = "0.35.0";

/// The program's name, beside cmdeploy and in the crate.
pub const NAME: &str = "iroh-relay";

/// `cargo install`'s choices besides the version: the server and its binary, with the
/// dependency versions of the crate's own lock file.
const INSTALL_OPTIONS: [&str; 5] = ["--features", "server", "--locked", "--bin", NAME];

/// A short hash of everything that decides the binary.
fn key() -> String {
    let mut hasher = Sha256::new();
    for part in std::iter::once(VERSION).chain(INSTALL_OPTIONS) {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    format!("{:x}", hasher.finalize())[..16].to_owned()
}

/// Where the binary of this version is cached: `<cache>/iroh-relay-<key>/iroh-relay`. The
/// directory is complete when it exists (it appears by rename).
fn cached_dir() -> PathBuf {
    cache_root().join(format!("{NAME}-{}", key()))
}

/// The cached binary, built first unless it is there (one build at a time per cache: others
/// wait for it). The first build compiles some 300 crates: minutes on two cores.
pub fn ensure() -> Result<PathBuf> {
    let dir = cached_dir();
    if !dir.is_dir() {
        let root = cache_root();
        std::fs::create_dir_all(&root)
            .with_context(|| format!("creating the cache directory {}", root.display()))?;
        let lock_path = root.join(format!("{NAME}.lock"));
        let lock = std::fs::File::create(&lock_path)
            .with_context(|| format!("creating {}", lock_path.display()))?;
        lock.lock()
            .with_context(|| format!("locking {}", lock_path.display()))?;
        if !dir.is_dir() {
            build(&dir)?;
        }
    }
    Ok(dir.join(NAME))
}

/// `cargo install` into a partial directory beside `dir`, then renamed to it. Its build
/// directory is under target/ and goes once the binary is cached.
fn build(dir: &Path) -> Result<()> {
    let partial = dir.with_extension("partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("removing {}", partial.display()))?;
    }
    let work = workspace().join("target/iroh-relay-build");
    let version = format!("={VERSION}");
    eprintln!("building {NAME} {VERSION} from crates.io (minutes on a first build) ...");
    check(
        crate::cargo()
            .args(["install", NAME, "--version", &version, "--no-track"])
            .args(INSTALL_OPTIONS)
            .arg("--root")
            .arg(&partial)
            .arg("--target-dir")
            .arg(&work),
    )
    .with_context(|| format!("building {NAME} {VERSION} with cargo install"))?;
    let built = partial.join("bin").join(NAME);
    if !built.is_file() {
        bail!("cargo install made no {}", built.display());
    }
    std::fs::rename(&built, partial.join(NAME))?;
    std::fs::remove_dir(partial.join("bin"))
        .with_context(|| format!("removing {}", partial.join("bin").display()))?;
    std::fs::rename(&partial, dir)
        .with_context(|| format!("renaming {} to {}", partial.display(), dir.display()))?;
    std::fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    Ok(())
}

/// Copies the cached binary (built unless cached) into `dir` unless the same bytes are there;
/// returns the copy's path.
pub fn copy_to(dir: &Path) -> Result<PathBuf> {
    let cached = ensure()?;
    let dest = dir.join(NAME);
    let bytes = std::fs::read(&cached).with_context(|| format!("reading {}", cached.display()))?;
    if std::fs::read(&dest).ok().as_deref() != Some(&bytes[..]) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::copy(&cached, &dest)
            .with_context(|| format!("copying {} to {}", cached.display(), dest.display()))?;
    }
    Ok(dest)
}

/// The directories cmdeploy is built into (`cargo build`, `cargo build --release`), where
/// cmdeploy looks for the relay's programs.
pub fn profile_dirs() -> [PathBuf; 2] {
    ["debug", "release"].map(|profile| workspace().join("target").join(profile))
}
