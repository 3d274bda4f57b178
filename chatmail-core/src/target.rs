//! The machine (or directory) being deployed: path mapping, and commands run through `duct`,
//! inside `chroot` (with a private `/proc`) when the target is a directory.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Output;

use anyhow::{Context, Result, bail};

/// Where the deployment goes: `/` or a root directory given with `--root`.
#[derive(Debug)]
pub struct Target {
    root: PathBuf,
    verbose: bool,
}

/// With `-v`, commands that take at least this long are reported with their duration.
const SLOW: std::time::Duration = std::time::Duration::from_millis(100);

/// The environment every command gets, so results do not depend on the caller's locale or PATH.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl Target {
    /// The target rooted at `root` (`/` for this machine); `verbose` prints every command.
    pub fn new(root: &Path, verbose: bool) -> Result<Target> {
        let root = std::fs::canonicalize(root)
            .with_context(|| format!("target root {} does not exist", root.display()))?;
        Ok(Target { root, verbose })
    }

    /// The target's root directory, canonicalized.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// True when the target is this machine itself rather than a directory.
    pub fn is_host_root(&self) -> bool {
        self.root == Path::new("/")
    }

    /// The host path of `path` on the target.
    pub fn path(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref();
        self.root.join(path.strip_prefix("/").unwrap_or(path))
    }

    /// The argv actually executed for `argv` on the target.
    fn full_argv(&self, argv: &[String]) -> Vec<OsString> {
        let mut full: Vec<OsString> = Vec::new();
        if !self.is_host_root() {
            // Package scripts need /proc: each command gets the target's own, mounted in a
            // mount and PID namespace of its own, so nothing stays mounted whatever happens
            // to the run.
            let proc = self.path("/proc");
            if proc.is_dir() {
                let mut mount_proc = OsString::from("--mount-proc=");
                mount_proc.push(&proc);
                full.extend([
                    "unshare".into(),
                    "--fork".into(),
                    "--pid".into(),
                    mount_proc,
                ]);
            }
            full.push("chroot".into());
            full.push(self.root.clone().into());
        }
        full.extend(argv.iter().map(OsString::from));
        full
    }

    /// Runs `argv` on the target, capturing its output, whatever its exit status.
    pub fn run_unchecked(&self, argv: &[String], env: &[(&str, &str)]) -> Result<Output> {
        let full = self.full_argv(argv);
        if self.verbose {
            eprintln!("[$ {}]", shell_words(argv));
        }
        let mut expr = duct::cmd(&full[0], &full[1..])
            .env("PATH", PATH)
            .env("LC_ALL", "C")
            .stdin_null()
            .stdout_capture()
            .stderr_capture()
            .unchecked();
        for (key, value) in env {
            expr = expr.env(key, value);
        }
        let start = std::time::Instant::now();
        let output = expr
            .run()
            .with_context(|| format!("cannot run `{}`", shell_words(argv)))?;
        let took = start.elapsed();
        if self.verbose && took >= SLOW {
            eprintln!("[{:.2} s for `{}`]", took.as_secs_f64(), shell_words(argv));
        }
        Ok(output)
    }

    /// Runs `argv` on the target; a non-zero exit is an error showing the tail of its output.
    pub fn run(&self, argv: &[String], env: &[(&str, &str)]) -> Result<Output> {
        let output = self.run_unchecked(argv, env)?;
        if !output.status.success() {
            bail!(
                "`{}` failed ({}):\n{}",
                shell_words(argv),
                output.status,
                tail(&output)
            );
        }
        Ok(output)
    }
}

/// The last lines of a command's stderr (or stdout, if stderr is empty).
pub fn tail(output: &Output) -> String {
    let text = if output.stderr.iter().all(u8::is_ascii_whitespace) {
        String::from_utf8_lossy(&output.stdout)
    } else {
        String::from_utf8_lossy(&output.stderr)
    };
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// argv as a POSIX shell command line: plain words as they are, anything else single-quoted.
/// Used for messages, and where a shell is unavoidable: the command line `ssh` hands to the
/// remote user's shell, and crontab lines, which cron hands to `/bin/sh`.
pub fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|arg| {
            if !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
            {
                arg.clone()
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Turns `&["a", "b"]` into owned argv.
pub fn argv(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}
