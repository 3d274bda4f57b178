//! Test infrastructure shared by `cargo xtask` and the slow tests.
//!
//! - [`rootfs`]: the cached debootstrapped Debian 12 tarball and fresh copies of it.
//! - [`host`]: a Debian root directory booted with systemd-nspawn in its own network
//!   namespace, reachable at its own address on this machine.
//! - [`bundle`]: cmdeploy and the relay's programs, copied together onto a target.
//! - [`image`]: the relay's container image (`cargo xtask image`).
//! - [`docker`]: a Docker engine of the tests' own, started and stopped by them.

pub mod bundle;
pub mod docker;
pub mod host;
pub mod image;
pub mod rootfs;

use anyhow::{Result, bail};

/// The workspace root (the parent of this crate).
pub fn workspace() -> std::path::PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_owned()
}

/// Runs a command, failing with its name and status.
pub fn check(command: &mut std::process::Command) -> Result<()> {
    let status = command.status()?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}
