//! `cmdeploy run` (and `dns`) on a relay over SSH: check that the relay's architecture is this binary's,
//! copy the deploy bundle (this cmdeploy, the relay's programs beside it, the effective
//! settings, the template overrides) into [`REMOTE_DIR`] as one tar stream holding only the
//! programs whose checksum differs, and run the copied cmdeploy there with the output streamed
//! back. Two `ssh` sessions: the probe, then the copy and the run.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};

use anyhow::{Context, Result, bail};
use chatmail_core::argv;
use sha2::{Digest, Sha256};

use crate::remote::Ssh;

/// Where the bundle lives on the relay.
pub const REMOTE_DIR: &str = "/usr/local/lib/cmdeploy";
/// The copied settings file (the effective settings, `CHATMAIL_*` overrides included).
const SETTINGS: &str = "chatmail.ini";
/// The copied template override directory.
const TEMPLATES: &str = "templates";

/// What travels to the relay.
#[derive(Debug)]
pub struct Bundle {
    /// This cmdeploy and the relay's programs, each copied under its file name.
    pub programs: Vec<PathBuf>,
    /// The settings file's content, when the phases read settings.
    pub settings: Option<String>,
    /// The template override directory, if one is in effect.
    pub templates: Option<PathBuf>,
}

impl Bundle {
    /// The relay's path of the copied settings, if any.
    pub fn remote_settings(&self) -> Option<String> {
        self.settings
            .as_ref()
            .map(|_| format!("{REMOTE_DIR}/{SETTINGS}"))
    }

    /// The relay's path of the copied template overrides, if any.
    pub fn remote_templates(&self) -> Option<String> {
        self.templates
            .as_ref()
            .map(|_| format!("{REMOTE_DIR}/{TEMPLATES}"))
    }
}

/// Prints nothing on success; lists `uname -m`, then `sha256  name` per file in the bundle dir.
const PROBE: &str = r#"uname -m
cd "$1" 2>/dev/null || exit 0
for f in *; do [ -f "$f" ] && sha256sum -- "$f"; done
exit 0"#;

/// Unpacks the tar stream on stdin into the bundle dir, after removing the old settings and
/// overrides and the programs named before `--`, then runs the command after `--`.
const UNPACK_AND_RUN: &str = r#"set -e
dir=$1; shift
mkdir -p "$dir"; cd "$dir"
rm -rf -- chatmail.ini templates
while [ "$1" != "--" ]; do rm -f -- "$1"; shift; done; shift
tar -x --no-same-owner -f -
exec "$@""#;

/// Ships `bundle` to the relay and runs the copied cmdeploy there with `run_args` (the
/// arguments after `cmdeploy`), its standard output going to `stdout` (default: this
/// process's); returns its exit code. Nothing is copied when the architectures differ.
pub fn deploy(
    ssh: &Ssh,
    bundle: &Bundle,
    run_args: &[String],
    stdout: Option<std::fs::File>,
) -> Result<ExitCode> {
    let probe = ssh.output(&argv(&["sh", "-c", PROBE, "sh", REMOTE_DIR]))?;
    let text = String::from_utf8_lossy(&probe.stdout);
    let mut lines = text.lines();
    let arch = lines.next().unwrap_or_default().trim();
    let local = std::env::consts::ARCH;
    if arch != local {
        bail!(
            "{} is {arch:?}, but this cmdeploy and the relay's programs are built for {local:?}: \
             deploy with a cmdeploy built for {arch}; nothing was changed on the relay",
            ssh.destination
        );
    }
    let remote: BTreeMap<&str, &str> = lines
        .filter_map(|line| line.split_once("  "))
        .map(|(sum, name)| (name, sum))
        .collect();

    let mut changed = Vec::new();
    let mut names = Vec::new();
    for program in &bundle.programs {
        let name = file_name(program)?;
        if remote.get(name.as_str()) != Some(&sha256_file(program)?.as_str()) {
            changed.push(program);
        }
        names.push(name);
    }
    let stale = remote
        .keys()
        .filter(|name| **name != SETTINGS && !names.iter().any(|n| n == *name))
        .map(|name| (*name).to_owned());

    let mut command = argv(&["sh", "-c", UNPACK_AND_RUN, "sh", REMOTE_DIR]);
    command.extend(stale);
    command.push("--".to_owned());
    command.push(format!("{REMOTE_DIR}/cmdeploy"));
    command.extend(run_args.iter().cloned());
    let mut child = ssh
        .command(&command)
        .stdin(Stdio::piped())
        .stdout(stdout.map_or_else(Stdio::inherit, Stdio::from))
        .spawn()
        .context("cannot run ssh (is openssh-client installed?)")?;
    let stdin = child.stdin.take().context("ssh has no stdin")?;
    let sent = send(stdin, &changed, bundle);
    let status = child.wait()?;
    ssh.check_connection(status, || "(see above)".to_owned())?;
    if let Err(err) = sent
        && status.success()
    {
        return Err(err.context(format!("copying the bundle to {}", ssh.destination)));
    }
    let code = status.code().unwrap_or(1);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// Writes the tar stream: the changed programs, the settings (0600: they may hold secrets)
/// and the template overrides.
fn send(stdin: impl Write, programs: &[&PathBuf], bundle: &Bundle) -> Result<()> {
    let mut tar = tar::Builder::new(stdin);
    for program in programs {
        let content =
            std::fs::read(program).with_context(|| format!("reading {}", program.display()))?;
        append(&mut tar, &file_name(program)?, &content, 0o755)?;
    }
    if let Some(settings) = &bundle.settings {
        append(&mut tar, SETTINGS, settings.as_bytes(), 0o600)?;
    }
    if let Some(dir) = &bundle.templates {
        append_tree(&mut tar, dir, Path::new(TEMPLATES))?;
    }
    tar.into_inner()?.flush()?;
    Ok(())
}

/// Appends the files below `dir` as `prefix/...`.
fn append_tree(tar: &mut tar::Builder<impl Write>, dir: &Path, prefix: &Path) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading template overrides in {}", dir.display()))?
        .collect::<std::io::Result<_>>()?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let path = entry.path();
        let name = prefix.join(entry.file_name());
        if path.is_dir() {
            append_tree(tar, &path, &name)?;
        } else {
            let content = std::fs::read(&path)?;
            append(tar, &name.to_string_lossy(), &content, 0o644)?;
        }
    }
    Ok(())
}

fn append(tar: &mut tar::Builder<impl Write>, name: &str, content: &[u8], mode: u32) -> Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    tar.append_data(&mut header, name, content)
        .with_context(|| format!("sending {name}"))
}

fn file_name(path: &Path) -> Result<String> {
    Ok(path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?
        .to_string_lossy()
        .into_owned())
}

fn sha256_file(path: &Path) -> Result<String> {
    let content = std::fs::read(path).with_context(|| {
        format!(
            "reading {} (build it with `cargo build --workspace`)",
            path.display()
        )
    })?;
    Ok(format!("{:x}", Sha256::digest(content)))
}
