//! Acting on a fleet: an inventory of relays (TOML), and `run`, `status`, `dns` or `test` on each of
//! them in parallel with bounded concurrency, each relay by a `cmdeploy` of its own over the
//! same SSH path as a single relay; live progress per relay, then a table.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Deserialize;

use crate::progress::Totals;

/// The flags every command that can act on a fleet shares.
#[derive(Debug, Clone, clap::Args)]
pub struct FleetArgs {
    /// Act on every relay of this inventory (a TOML file of `[[relay]]` entries, each with
    /// `name`, `config` and optionally `ssh_host`, `templates`, `skip_dns_check`, `address`),
    /// a few at a time, instead of on one relay.
    #[arg(long, value_name = "FILE", conflicts_with = "ssh_host")]
    pub inventory: Option<PathBuf>,
    /// With --inventory: only these relays (comma-separated names).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "NAMES",
        requires = "inventory"
    )]
    pub limit: Vec<String>,
    /// With --inventory: how many relays at a time [default: 3].
    #[arg(long, value_name = "N", requires = "inventory", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
}

/// The largest inventory file read: a list of relays, never megabytes.
const MAX_INVENTORY_BYTES: u64 = 1024 * 1024;

/// How many relays at a time without `--jobs`.
const DEFAULT_JOBS: u16 = 3;

/// The relays to act on.
#[derive(Debug)]
pub struct Inventory {
    /// The inventory file.
    pub path: PathBuf,
    /// Its relays, in file order.
    pub relays: Vec<Relay>,
}

/// One relay of an inventory. Paths are relative to the inventory file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Relay {
    /// How the relay is called in progress, tables and `--limit` (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// Its `chatmail.ini`.
    pub config: PathBuf,
    /// Where to reach it over SSH; default: its mail domain.
    #[serde(default)]
    pub ssh_host: Option<String>,
    /// Its template overrides (`run --templates`).
    #[serde(default)]
    pub templates: Option<PathBuf>,
    /// Deploy without checking its DNS first (`run --skip-dns-check`).
    #[serde(default)]
    pub skip_dns_check: bool,
    /// Where `test` connects (`test --address`); default: its mail domain.
    #[serde(default)]
    pub address: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(rename = "relay", default)]
    relays: Vec<Relay>,
}

impl Inventory {
    /// Reads and checks an inventory: unique names, settings files that exist.
    pub fn load(path: &Path) -> Result<Inventory> {
        let size = std::fs::metadata(path)
            .with_context(|| format!("reading the inventory {}", path.display()))?
            .len();
        if size > MAX_INVENTORY_BYTES {
            bail!(
                "{}: {size} bytes; an inventory is at most {MAX_INVENTORY_BYTES} bytes",
                path.display()
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the inventory {}", path.display()))?;
        let file: File = toml::from_str(&text).map_err(|err| {
            // The line number, not toml's excerpt of the line (which could be huge).
            let line = err.span().map_or(String::new(), |span| {
                let before = text.get(..span.start).unwrap_or_default();
                format!(":{}", before.matches('\n').count() + 1)
            });
            anyhow::anyhow!("{}{line}: {}", path.display(), err.message())
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut relays: Vec<Relay> = Vec::new();
        for mut relay in file.relays {
            let valid = !relay.name.is_empty()
                && relay
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !valid {
                bail!(
                    "{}: relay name {:?}: expected letters, digits, '-', '_' or '.'",
                    path.display(),
                    chatmail_core::config::brief(&relay.name)
                );
            }
            if relays.iter().any(|r| r.name == relay.name) {
                bail!("{}: relay {:?} is listed twice", path.display(), relay.name);
            }
            relay.config = dir.join(&relay.config);
            relay.templates = relay.templates.map(|t| dir.join(t));
            if !relay.config.is_file() {
                bail!(
                    "{}: relay {}: its config {} does not exist",
                    path.display(),
                    relay.name,
                    relay.config.display()
                );
            }
            relays.push(relay);
        }
        if relays.is_empty() {
            bail!("{}: no [[relay]] entries", path.display());
        }
        Ok(Inventory {
            path: path.to_owned(),
            relays,
        })
    }

    /// The relays `--limit` names (all without it); an unknown name is an error.
    pub fn select(&self, limit: &[String]) -> Result<Vec<&Relay>> {
        if let Some(unknown) = limit
            .iter()
            .find(|name| !self.relays.iter().any(|r| &r.name == *name))
        {
            bail!(
                "--limit {unknown:?}: no such relay in {} (relays: {})",
                self.path.display(),
                self.relays
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok(self
            .relays
            .iter()
            .filter(|r| limit.is_empty() || limit.contains(&r.name))
            .collect())
    }
}

/// What one relay's command came to.
#[derive(Debug)]
struct Outcome {
    name: String,
    /// `None`: not started (a rolling deploy stopped before it).
    success: Option<bool>,
    totals: Totals,
    duration: Duration,
    /// The last lines of its output, shown for a failure.
    tail: Vec<String>,
}

/// Runs `command` (the arguments after the program, per relay) on the selected relays of
/// `inventory`: at most `jobs` at a time, or with `serial` in rolling batches of that size
/// that stop at the first failure. Each relay's whole output goes to
/// `<inventory dir>/logs/<relay>.log`. Exit code 1 unless every relay succeeded.
pub fn run(
    args: &FleetArgs,
    serial: Option<u16>,
    command: impl Fn(&Relay) -> Vec<OsString> + Sync,
) -> Result<ExitCode> {
    let path = args.inventory.as_deref().context("no --inventory")?;
    let inventory = Inventory::load(path)?;
    let relays = inventory.select(&args.limit)?;
    let logs = path.parent().unwrap_or(Path::new(".")).join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let exe = std::env::current_exe().context("finding this cmdeploy")?;
    let multi = MultiProgress::new();
    let width = relays.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let style =
        ProgressStyle::with_template("{spinner} {prefix} {wide_msg}").context("progress style")?;
    let mut outcomes: Vec<Outcome> = Vec::new();
    let batches: Vec<&[&Relay]> = match serial {
        Some(size) => relays.chunks(usize::from(size)).collect(),
        None => vec![&relays[..]],
    };
    let jobs = usize::from(serial.or(args.jobs).unwrap_or(DEFAULT_JOBS));
    for batch in batches {
        if serial.is_some() && outcomes.iter().any(|o| o.success == Some(false)) {
            outcomes.extend(batch.iter().map(|relay| Outcome {
                name: relay.name.clone(),
                success: None,
                totals: Totals::default(),
                duration: Duration::ZERO,
                tail: Vec::new(),
            }));
            continue;
        }
        let queue = Mutex::new(batch.iter().copied().collect::<VecDeque<&Relay>>());
        let done = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..jobs.min(batch.len()) {
                scope.spawn(|| {
                    while let Some(relay) = queue.lock().ok().and_then(|mut q| q.pop_front()) {
                        let bar = multi.add(ProgressBar::new_spinner());
                        bar.set_style(style.clone());
                        bar.set_prefix(format!("{:width$}", relay.name));
                        bar.enable_steady_tick(Duration::from_millis(200));
                        let log = logs.join(format!("{}.log", relay.name));
                        let outcome = one(&exe, relay, &command(relay), &log, &bar);
                        bar.finish_with_message(summary_of(&outcome));
                        if let Ok(mut done) = done.lock() {
                            done.push(outcome);
                        }
                    }
                });
            }
        });
        let mut done = done.into_inner().unwrap_or_default();
        done.sort_by_key(|o| relays.iter().position(|r| r.name == o.name));
        outcomes.extend(done);
    }
    print!("{}", table(&outcomes));
    for outcome in outcomes.iter().filter(|o| o.success == Some(false)) {
        println!("\n{} failed:", outcome.name);
        for line in &outcome.tail {
            println!("  {line}");
        }
    }
    println!("\nfull output per relay: {}/<relay>.log", logs.display());
    let all_ok = outcomes.iter().all(|o| o.success == Some(true));
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs one relay's `cmdeploy`, its output into `log` and its latest line onto `bar`.
fn one(exe: &Path, relay: &Relay, args: &[OsString], log: &Path, bar: &ProgressBar) -> Outcome {
    let start = Instant::now();
    let result = (|| -> Result<(bool, Vec<String>)> {
        let mut file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let reader = duct::cmd(exe, args)
            .env_remove("CHATMAIL_INI")
            .stdin_null()
            .stderr_to_stdout()
            .unchecked()
            .reader()
            .with_context(|| format!("starting {}", exe.display()))?;
        let mut lines = Vec::new();
        for line in BufReader::new(&reader).lines() {
            let line = line.context("reading the output")?;
            writeln!(file, "{line}").with_context(|| format!("writing {}", log.display()))?;
            if !line.trim().is_empty() {
                bar.set_message(line.clone());
            }
            lines.push(line);
        }
        let success = reader
            .try_wait()
            .context("waiting for cmdeploy")?
            .is_some_and(|output| output.status.success());
        Ok((success, lines))
    })();
    let (success, lines) = result.unwrap_or_else(|err| (false, vec![format!("error: {err:#}")]));
    Outcome {
        name: relay.name.clone(),
        success: Some(success),
        totals: Totals::of(&lines),
        duration: start.elapsed(),
        tail: lines[lines.len().saturating_sub(8)..].to_vec(),
    }
}

fn summary_of(outcome: &Outcome) -> String {
    match outcome.success {
        Some(true) => format!("ok ({})", outcome.totals),
        Some(false) => "FAILED".to_owned(),
        None => "skipped".to_owned(),
    }
}

/// The closing table: relay, result, changes, restarts, duration.
fn table(outcomes: &[Outcome]) -> String {
    let width = outcomes
        .iter()
        .map(|o| o.name.len())
        .chain(["relay".len()])
        .max()
        .unwrap_or(0);
    let mut out = format!(
        "\n{:width$}  {:7}  {:>7}  {:>8}  {:>8}\n",
        "relay", "result", "changes", "restarts", "time"
    );
    for outcome in outcomes {
        let result = match outcome.success {
            Some(true) => "ok",
            Some(false) => "FAILED",
            None => "skipped",
        };
        let count = |n: Option<usize>| n.map_or("-".to_owned(), |n| n.to_string());
        out.push_str(&format!(
            "{:width$}  {:7}  {:>7}  {:>8}  {:>7.1}s\n",
            outcome.name,
            result,
            count(outcome.totals.changes),
            count(outcome.totals.restarts),
            outcome.duration.as_secs_f64()
        ));
    }
    out
}

/// `--config` and `--ssh-host` for `relay`, the arguments every per-relay command starts with.
pub fn relay_args(command: &str, relay: &Relay) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![command.into(), "--config".into(), (&relay.config).into()];
    if let Some(host) = &relay.ssh_host {
        args.extend(["--ssh-host".into(), host.into()]);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory(text: &str) -> (tempfile::TempDir, Result<Inventory>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.ini"),
            "[params]\nmail_domain = a.example\n",
        )
        .unwrap();
        let path = dir.path().join("fleet.toml");
        std::fs::write(&path, text).unwrap();
        let loaded = Inventory::load(&path);
        (dir, loaded)
    }

    #[test]
    fn relays_are_read_with_paths_relative_to_the_inventory() {
        let (dir, loaded) = inventory(
            "[[relay]]\nname = \"a\"\nconfig = \"a.ini\"\nssh_host = \"10.0.0.1\"\n\
             [[relay]]\nname = \"b\"\nconfig = \"a.ini\"\nskip_dns_check = true\n",
        );
        let loaded = loaded.unwrap();
        assert_eq!(loaded.relays.len(), 2);
        assert_eq!(loaded.relays[0].config, dir.path().join("a.ini"));
        assert_eq!(loaded.relays[0].ssh_host.as_deref(), Some("10.0.0.1"));
        assert!(loaded.relays[1].skip_dns_check);
        let names = |limit: &[&str]| {
            let limit: Vec<String> = limit.iter().map(|s| (*s).to_owned()).collect();
            loaded
                .select(&limit)
                .map(|r| r.iter().map(|r| r.name.clone()).collect::<Vec<_>>())
        };
        assert_eq!(names(&[]).unwrap(), ["a", "b"]);
        assert_eq!(names(&["b"]).unwrap(), ["b"]);
        let err = names(&["c"]).unwrap_err().to_string();
        assert!(
            err.contains("\"c\"") && err.contains("relays: a, b"),
            "{err}"
        );
    }

    #[test]
    fn bad_inventories_are_refused_naming_the_problem() {
        for (text, expected) in [
            (
                "[[relay]]\nname = \"a\"\nconfig = \"a.ini\"\nport = 22\n",
                "unknown field `port`",
            ),
            ("[[relay]]\nname = \"a\"\n", "missing field `config`"),
            (
                "[[relay]]\nname = \"a b\"\nconfig = \"a.ini\"\n",
                "relay name \"a b\"",
            ),
            (
                "[[relay]]\nname = \"a\"\nconfig = \"nope.ini\"\n",
                "nope.ini does not exist",
            ),
            (
                "[[relay]]\nname = \"a\"\nconfig = \"a.ini\"\n[[relay]]\nname = \"a\"\nconfig = \"a.ini\"\n",
                "listed twice",
            ),
            ("", "no [[relay]] entries"),
            ("[[relay]\n", "fleet.toml:1: "),
        ] {
            let (_dir, loaded) = inventory(text);
            let err = format!("{:#}", loaded.unwrap_err());
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }
}
