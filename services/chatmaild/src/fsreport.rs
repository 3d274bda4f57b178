//! chatmail-fsreport: account and storage statistics of `mailboxes_dir`, as a human summary,
//! Prometheus text (`--textfile`) or upstream's legacy metrics file.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::expire::{MailboxStats, mailbox_dirs, scan};
use crate::files::{self, DAY};

/// Login buckets: accounts that logged in within this many days.
pub const ACTIVE_DAYS: [i64; 7] = [1, 10, 30, 40, 80, 100, 150];
/// Message size buckets: messages of at least this many bytes.
pub const MIN_SIZES: [u64; 7] = [0, 100 << 10, 512 << 10, 1 << 20, 2 << 20, 5 << 20, 10 << 20];
/// Upstream's place for the legacy metrics file.
pub const DEFAULT_LEGACY_METRICS: &str = "/var/www/html/metrics";

/// Which messages are counted.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only accounts whose last login is at least this many days before `now`.
    pub min_login_age_days: i64,
    /// Only messages inside the mailbox's top folder of this name (`cur`, `new` or `tmp`).
    pub mdir: Option<String>,
}

/// The collected statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Mailboxes with a `password` file.
    pub accounts: u64,
    /// Accounts whose name starts with `ci-`.
    pub ci_accounts: u64,
    /// Per [`ACTIVE_DAYS`] entry: accounts (not `ci-`) that logged in within that many days.
    pub active: [u64; ACTIVE_DAYS.len()],
    /// Bytes of every message of every mailbox (not filtered).
    pub message_bytes: u64,
    /// Bytes of every other file of every mailbox (not filtered).
    pub extra_bytes: u64,
    /// Per [`MIN_SIZES`] entry: count and bytes of the messages of at least that size (of the
    /// accounts and folder the [`Filter`] selects).
    pub sizes: [(u64, u64); MIN_SIZES.len()],
}

impl Report {
    /// Scans the first `maxnum` mailboxes of `mailboxes_dir`.
    pub fn collect(
        mailboxes_dir: &Path,
        maxnum: Option<usize>,
        now: i64,
        filter: &Filter,
    ) -> Result<Report> {
        let mut report = Report::default();
        for dir in mailbox_dirs(mailboxes_dir, maxnum)? {
            report.add(&scan(&dir)?, now, filter);
        }
        Ok(report)
    }

    /// Adds one mailbox as upstream counts it: only a mailbox with a `password` file is an
    /// account; storage totals take every mailbox, unfiltered; the size buckets take the
    /// messages of accounts whose last login is old enough, inside the `mdir` folder.
    fn add(&mut self, stats: &MailboxStats, now: i64, filter: &Filter) {
        self.message_bytes += stats.messages.iter().map(|f| f.size).sum::<u64>();
        self.extra_bytes += stats.extra.iter().map(|f| f.size).sum::<u64>();
        let Some(last_login) = stats.last_login else {
            return;
        };
        self.accounts += 1;
        let name = stats.dir.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with("ci-") {
            self.ci_accounts += 1;
        } else {
            for (count, days) in self.active.iter_mut().zip(ACTIVE_DAYS) {
                if last_login >= now - days * DAY {
                    *count += 1;
                }
            }
        }
        if last_login > now - filter.min_login_age_days * DAY {
            return;
        }
        for message in &stats.messages {
            let relative = message
                .path
                .strip_prefix(&stats.dir)
                .unwrap_or(&message.path);
            if let Some(mdir) = &filter.mdir
                && !relative.starts_with(mdir)
            {
                continue;
            }
            for ((count, bytes), min) in self.sizes.iter_mut().zip(MIN_SIZES) {
                if message.size >= min {
                    *count += 1;
                    *bytes += message.size;
                }
            }
        }
    }

    /// The human summary.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "accounts: {} ({} ci-, {} users)",
            self.accounts,
            self.ci_accounts,
            self.accounts - self.ci_accounts
        );
        for (days, count) in ACTIVE_DAYS.iter().zip(self.active) {
            let _ = writeln!(out, "  active within {days:>3} days: {count}");
        }
        let _ = writeln!(
            out,
            "storage: {} total, {} messages, {} other files",
            human(self.message_bytes + self.extra_bytes),
            human(self.message_bytes),
            human(self.extra_bytes)
        );
        for (min, (count, bytes)) in MIN_SIZES.iter().zip(self.sizes) {
            let _ = writeln!(
                out,
                "  messages >= {:>5}: {count} using {}",
                human(*min),
                human(bytes)
            );
        }
        out
    }

    /// Prometheus text exposition of the gauges.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, rows: Vec<(String, u64)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (labels, value) in rows {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        };
        gauge(
            "chatmail_storage_bytes",
            "Bytes used in mailboxes.",
            vec![
                ("kind=\"messages\"".into(), self.message_bytes),
                ("kind=\"extra\"".into(), self.extra_bytes),
                (
                    "kind=\"total\"".into(),
                    self.message_bytes + self.extra_bytes,
                ),
            ],
        );
        let by_size = |pick: fn(&(u64, u64)) -> u64| {
            MIN_SIZES
                .iter()
                .zip(&self.sizes)
                .map(|(min, bucket)| (format!("min_size=\"{min}\""), pick(bucket)))
                .collect()
        };
        gauge(
            "chatmail_messages_bytes",
            "Bytes of messages of at least min_size bytes.",
            by_size(|b| b.1),
        );
        gauge(
            "chatmail_messages_count",
            "Messages of at least min_size bytes.",
            by_size(|b| b.0),
        );
        gauge(
            "chatmail_accounts",
            "Accounts (ci: names starting with ci-).",
            vec![
                ("kind=\"all\"".into(), self.accounts),
                ("kind=\"ci\"".into(), self.ci_accounts),
                ("kind=\"user\"".into(), self.accounts - self.ci_accounts),
            ],
        );
        gauge(
            "chatmail_accounts_active",
            "Accounts that logged in within the last days.",
            ACTIVE_DAYS
                .iter()
                .zip(self.active)
                .map(|(days, count)| (format!("days=\"{days}\""), count))
                .collect(),
        );
        out
    }

    /// Upstream's legacy metrics: `accounts`, `ci_accounts`, `nonci_accounts`.
    pub fn legacy_metrics(&self) -> String {
        let mut out = String::new();
        for (name, value) in [
            ("accounts", self.accounts),
            ("ci_accounts", self.ci_accounts),
            ("nonci_accounts", self.accounts - self.ci_accounts),
        ] {
            let _ = writeln!(out, "# TYPE {name} gauge\n{name} {value}");
        }
        out
    }
}

/// Writes `text` atomically with mode 0644 (read by other users, e.g. node-exporter).
/// A folder `path` gets `fsreport.prom` inside it.
pub fn write_metrics(path: &Path, text: &str) -> Result<PathBuf> {
    let target = if path.is_dir() {
        path.join("fsreport.prom")
    } else {
        path.to_owned()
    };
    files::write_atomic(&target, text.as_bytes())?;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("setting the mode of {}", target.display()))?;
    Ok(target)
}

/// Bytes with base-1000 units: `999`, `1.5K`, `12.0M`, `3.2G`.
pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..=999 => format!("{bytes}"),
        1_000..=999_999 => format!("{:.1}K", b / 1e3),
        1_000_000..=999_999_999 => format!("{:.1}M", b / 1e6),
        _ => format!("{:.1}G", b / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human(999), "999");
        assert_eq!(human(1_500), "1.5K");
        assert_eq!(human(12_000_000), "12.0M");
        assert_eq!(human(3_200_000_000), "3.2G");
    }
}
