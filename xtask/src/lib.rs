//! Test infrastructure shared by `cargo xtask` and the slow tests.
//!
//! - [`rootfs`]: the cached debootstrapped Debian 12 tarball and fresh copies of it.
//! - [`host`]: a Debian root directory booted with systemd-nspawn in its own network
//!   namespace, reachable at its own address on this machine.
//! - [`nsd`]: an authoritative name server in a network namespace, serving test zones.
//! - [`testbed`]: two relays on booted hosts that reach each other, with DNS from nsd.
//! - [`bundle`]: cmdeploy and the relay's programs, copied together onto a target.
//! - [`image`]: the relay's container image (`cargo xtask image`).
//! - [`docker`]: a Docker engine of the tests' own, started and stopped by them.
//! - [`dovecot`]: the delay-free Dovecot packages, built from Debian's source with our patch.
//! - [`iroh_relay`]: the iroh relay server, built from crates.io at upstream's pinned version.
//! - [`latency`]: how soon a relay's IMAP IDLE clients see a new message.

pub mod bundle;
pub mod docker;
pub mod dovecot;
pub mod host;
pub mod image;
pub mod iroh_relay;
pub mod latency;
pub mod nsd;
pub mod rootfs;
pub mod testbed;

use anyhow::{Result, bail};

/// The workspace root (the parent of this crate).
pub fn workspace() -> std::path::PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_owned()
}

/// The cache directory shared by clones of this repository (the Dovecot packages, the rootfs
/// tarballs, the iroh relay server); `CMDEPLOY_CACHE` overrides it.
pub fn cache_root() -> std::path::PathBuf {
    std::env::var_os("CMDEPLOY_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("/var/cache/cmdeploy"))
}

/// A `cargo` command for the workspace, from a process that cargo started (`cargo xtask`, a
/// test): without the variables cargo set for that process, which build scripts watch
/// (ring's reruns on `CARGO_MANIFEST_DIR`), so the build reuses what a plain `cargo build`
/// made instead of rebuilding dozens of crates, and the next plain build does the same.
pub fn cargo() -> std::process::Command {
    let mut command =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (name, _) in std::env::vars() {
        let set_by_cargo = name == "CARGO_MANIFEST_DIR"
            || name == "CARGO_MANIFEST_PATH"
            || name == "CARGO_CRATE_NAME"
            || name == "CARGO_BIN_NAME"
            || name == "CARGO_PRIMARY_PACKAGE"
            || name == "CARGO_TARGET_TMPDIR"
            || name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_EXE_");
        if set_by_cargo {
            command.env_remove(name);
        }
    }
    command.current_dir(workspace());
    command
}

/// Runs a command, failing with its name and status.
pub fn check(command: &mut std::process::Command) -> Result<()> {
    let status = command.status()?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}
