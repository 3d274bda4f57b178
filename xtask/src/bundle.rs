//! The deploy bundle: `cmdeploy` and the relay's own programs it installs, copied together
//! into a directory on the target, as an operator ships them to a server.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Where test hosts (and the demo host) keep the bundle, and their settings file.
pub const HOST_DIR: &str = "/usr/local/lib/cmdeploy";
pub const HOST_CONFIG: &str = "/root/chatmail.ini";

/// `cmdeploy run` as a test host runs it on itself, followed by `extra`: the bundled
/// cmdeploy, this machine, and no DNS pre-check (test hosts have no DNS).
pub fn host_run(extra: &[&str]) -> Vec<String> {
    let cmdeploy = format!("{HOST_DIR}/cmdeploy");
    let mut argv = vec![
        cmdeploy.as_str(),
        "run",
        "--ssh-host",
        "@local",
        "--skip-dns-check",
    ];
    argv.extend(["--config", HOST_CONFIG]);
    argv.extend(extra);
    argv.into_iter().map(str::to_owned).collect()
}

/// Copies `cmdeploy` and every program it bundles (asked with `cmdeploy list --bundled`),
/// all found beside `cmdeploy`, into `dest`; returns the path of the copied `cmdeploy`.
pub fn copy(cmdeploy: &Path, dest: &Path) -> Result<PathBuf> {
    let output = Command::new(cmdeploy)
        .args(["list", "--bundled", "--config", "/nonexistent"])
        .output()
        .with_context(|| format!("running {}", cmdeploy.display()))?;
    if !output.status.success() {
        bail!(
            "cmdeploy list --bundled failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let source = cmdeploy.parent().context("cmdeploy has no directory")?;
    std::fs::create_dir_all(dest)?;
    let names = String::from_utf8(output.stdout)?;
    for name in names.lines().chain(["cmdeploy"]) {
        let from = source.join(name);
        std::fs::copy(&from, dest.join(name)).with_context(|| {
            format!(
                "copying {} (build it with `cargo build --workspace`)",
                from.display()
            )
        })?;
    }
    Ok(dest.join("cmdeploy"))
}
