//! Helpers for the example binary's tests: running it, and a Debian rootfs copy to deploy into.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The example binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_cmdeploy-with-blackbox");

/// Stdout and stderr of one run, and whether it succeeded.
#[derive(Debug)]
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the example binary with `args`, with `env` and no `CHATMAIL_*`/`CMDEPLOY_*` variables
/// from the caller.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(BIN);
    command.args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("CHATMAIL_") || key.starts_with("CMDEPLOY_") {
            command.env_remove(key);
        }
    }
    let output = command.envs(env.iter().copied()).output().unwrap();
    let run = Run {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    eprintln!(
        "$ cmdeploy-with-blackbox {}\n{}{}",
        args.join(" "),
        run.stdout,
        run.stderr
    );
    run
}

/// Writes a chatmail.ini with `body` under `[params]` into `dir` and returns its path.
pub fn config_file(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("chatmail.ini");
    std::fs::write(&path, format!("[params]\n{body}")).unwrap();
    path
}

/// A fresh copy of the cached Debian 12 minbase rootfs (`cargo xtask rootfs`) under the
/// workspace's `target/`, removed when dropped.
pub fn fresh_root() -> tempfile::TempDir {
    let tarball = xtask::rootfs::tarball();
    assert!(
        tarball.exists(),
        "{} is missing: run `cargo xtask rootfs`",
        tarball.display()
    );
    let scratch = xtask::workspace().join("target");
    let dir = tempfile::Builder::new()
        .prefix("blackbox-root-")
        .tempdir_in(scratch)
        .unwrap();
    xtask::rootfs::extract(&tarball, dir.path()).unwrap();
    dir
}
