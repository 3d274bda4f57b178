//! Mailbox expiry (`chatmail-expire`) and the quota trim (`chatmail-quota-expire`): removes
//! inactive accounts, old messages, large old messages that were seen, and the oldest
//! messages of mailboxes over their trim target. Without `remove` it only reports.

use std::collections::HashSet;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chatmail_config::Config;

use crate::files::{self, DAY};

/// Messages larger than this (bytes) are "large" and expire after `delete_large_after`.
pub const LARGE_MESSAGE: u64 = 200_000;

/// A file seen by the scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub path: PathBuf,
    pub mtime: i64,
    pub size: u64,
}

/// What one mailbox folder holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailboxStats {
    pub dir: PathBuf,
    /// The mtime of the `password` file, if there is one.
    pub last_login: Option<i64>,
    /// Regular files directly inside any `cur`, `new` or `tmp` folder.
    pub messages: Vec<FileEntry>,
    /// Every other file, largest first.
    pub extra: Vec<FileEntry>,
}

/// The mailbox folders of `mailboxes_dir` (names with `@`), sorted, at most `maxnum`.
pub fn mailbox_dirs(mailboxes_dir: &Path, maxnum: Option<usize>) -> Result<Vec<PathBuf>> {
    let addrs = crate::accounts::list_addresses(mailboxes_dir)?;
    Ok(addrs
        .into_iter()
        .take(maxnum.unwrap_or(usize::MAX))
        .map(|addr| mailboxes_dir.join(addr))
        .collect())
}

/// Scans one mailbox folder recursively.
pub fn scan(dir: &Path) -> Result<MailboxStats> {
    let mut stats = MailboxStats {
        dir: dir.to_owned(),
        ..MailboxStats::default()
    };
    walk(dir, false, &mut stats)?;
    stats.last_login = stats
        .extra
        .iter()
        .find(|f| f.path == dir.join("password"))
        .map(|f| f.mtime);
    stats
        .extra
        .sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.path.cmp(&b.path)));
    Ok(stats)
}

fn walk(dir: &Path, in_maildir_folder: bool, stats: &mut MailboxStats) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // Dovecot may remove folders while we look.
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err).with_context(|| format!("listing {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let path = entry.path();
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(err) if err.kind() == ErrorKind::NotFound => continue,
            Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
        };
        if meta.is_dir() {
            let name = entry.file_name();
            let maildir_folder = matches!(name.to_str(), Some("cur" | "new" | "tmp"));
            walk(&path, maildir_folder, stats)?;
        } else if meta.is_file() {
            let file = FileEntry {
                path,
                mtime: files::mtime(&meta),
                size: meta.len(),
            };
            if in_maildir_folder {
                stats.messages.push(file);
            } else {
                stats.extra.push(file);
            }
        }
    }
    Ok(())
}

/// The time and size Dovecot put in a message file name: `<time>.<...>,S=<size>...`.
pub fn parse_dovecot_filename(name: &str) -> Option<(i64, u64)> {
    let (time, rest) = name.split_once('.')?;
    if time.is_empty() || !time.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // The last `,S=<digits>` with at least one character before it.
    let (at, _) = rest
        .rmatch_indices(",S=")
        .find(|(i, _)| *i > 0 && rest[i + 3..].starts_with(|c: char| c.is_ascii_digit()))?;
    let digits: String = rest[at + 3..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((time.parse().ok()?, digits.parse().ok()?))
}

/// A message the quota trim may delete, with the time and size from its name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Candidate {
    pub mtime: i64,
    pub size: u64,
    pub path: PathBuf,
}

/// The messages directly in `<mailbox>/cur` and `<mailbox>/new` whose names Dovecot made.
pub fn quota_candidates(mailbox: &Path) -> Result<Vec<Candidate>> {
    let mut candidates = Vec::new();
    for folder in ["cur", "new"] {
        let dir = mailbox.join(folder);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == ErrorKind::NotFound => continue,
            Err(err) => return Err(err).with_context(|| format!("listing {}", dir.display())),
        };
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let name = entry.file_name();
            if let Some((mtime, size)) = name.to_str().and_then(parse_dovecot_filename) {
                candidates.push(Candidate {
                    mtime,
                    size,
                    path: entry.path(),
                });
            }
        }
    }
    Ok(candidates)
}

/// The messages to delete, oldest first, until the total is at most `target` bytes;
/// messages from the last 24 hours are never chosen.
pub fn trim_plan(mut candidates: Vec<Candidate>, target: u64, now: i64) -> Vec<Candidate> {
    candidates.sort();
    let mut total: u64 = candidates.iter().map(|c| c.size).sum();
    let mut chosen = Vec::new();
    for candidate in candidates {
        if total <= target || candidate.mtime > now - DAY {
            break;
        }
        total -= candidate.size;
        chosen.push(candidate);
    }
    chosen
}

/// Removes `path` (a file, or a whole tree); a path that is already gone is fine.
fn remove_path(path: &Path, tree: bool) -> Result<()> {
    let removed = if tree {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match removed {
        Err(err) if err.kind() != ErrorKind::NotFound => {
            Err(err).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Runs `chatmail-quota-expire`: trims `mailbox` to `target_mb` and, if anything went,
/// removes `maildirsize` so Dovecot recounts. Returns the number of messages removed.
pub fn quota_expire(mailbox: &Path, target_mb: u64, now: i64) -> Result<usize> {
    let plan = trim_plan(quota_candidates(mailbox)?, target_mb * 1024 * 1024, now);
    for candidate in &plan {
        remove_path(&candidate.path, false)?;
    }
    if !plan.is_empty() {
        remove_path(&mailbox.join("maildirsize"), false)?;
    }
    Ok(plan.len())
}

/// The settings of one `chatmail-expire` run.
#[derive(Debug, Clone)]
pub struct Expiry {
    /// The time considered "now" (Unix seconds).
    pub now: i64,
    /// Really delete; otherwise only report.
    pub remove: bool,
    /// Print every deletion.
    pub verbose: bool,
    pub delete_mails_after: i64,
    pub delete_large_after: i64,
    pub delete_inactive_users_after: i64,
    /// The quota trim target in bytes: 70% of `max_mailbox_size`.
    pub trim_target: u64,
}

/// Counts of one `chatmail-expire` run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub mailboxes: usize,
    pub removed_mailboxes: usize,
    pub files: usize,
    pub removed_files: usize,
}

impl Expiry {
    pub fn new(config: &Config, now: i64, remove: bool, verbose: bool) -> Expiry {
        Expiry {
            now,
            remove,
            verbose,
            delete_mails_after: i64::from(config.delete_mails_after) * DAY,
            delete_large_after: i64::from(config.delete_large_after) * DAY,
            delete_inactive_users_after: i64::from(config.delete_inactive_users_after) * DAY,
            trim_target: config.max_mailbox_size_mb * 1024 * 1024 * 7 / 10,
        }
    }

    /// Expires the first `maxnum` mailboxes of `mailboxes_dir`, reporting to `out`.
    pub fn run(
        &self,
        mailboxes_dir: &Path,
        maxnum: Option<usize>,
        out: &mut dyn Write,
    ) -> Result<Summary> {
        let mut summary = Summary::default();
        for dir in mailbox_dirs(mailboxes_dir, maxnum)? {
            summary.mailboxes += 1;
            let stats = scan(&dir)?;
            self.mailbox(&stats, &mut summary, out)?;
        }
        Ok(summary)
    }

    fn report(&self, out: &mut dyn Write, mtime: i64, path: &Path) -> Result<()> {
        if self.verbose {
            writeln!(out, "removing {} {}", month_day(mtime), path.display())
                .context("writing the report")?;
        }
        Ok(())
    }

    fn mailbox(
        &self,
        stats: &MailboxStats,
        summary: &mut Summary,
        out: &mut dyn Write,
    ) -> Result<()> {
        let Some(last_login) = stats.last_login else {
            let emptied = if self.remove {
                std::fs::remove_dir(&stats.dir).is_ok()
            } else {
                std::fs::read_dir(&stats.dir).is_ok_and(|mut entries| entries.next().is_none())
            };
            match emptied {
                true => summary.removed_mailboxes += 1,
                false => writeln!(
                    out,
                    "Skipped deleting {}, doesn't have last_login but isn't empty",
                    stats.dir.display()
                )
                .context("writing the report")?,
            }
            return Ok(());
        };
        if last_login < self.now - self.delete_inactive_users_after {
            self.report(out, last_login, &stats.dir)?;
            if self.remove {
                remove_path(&stats.dir, true)?;
            }
            summary.removed_mailboxes += 1;
            return Ok(());
        }
        summary.files += stats.messages.len();
        let mut removed = HashSet::new();
        for message in &stats.messages {
            let old = message.mtime < self.now - self.delete_mails_after;
            let seen_in_cur =
                message.path.parent().and_then(Path::file_name) == Some("cur".as_ref());
            let large_and_old = message.size > LARGE_MESSAGE
                && message.mtime < self.now - self.delete_large_after
                && seen_in_cur;
            if old || large_and_old {
                self.report(out, message.mtime, &message.path)?;
                if self.remove {
                    remove_path(&message.path, false)?;
                }
                removed.insert(message.path.clone());
            }
        }
        let left: Vec<Candidate> = quota_candidates(&stats.dir)?
            .into_iter()
            .filter(|c| !removed.contains(&c.path))
            .collect();
        for candidate in trim_plan(left, self.trim_target, self.now) {
            self.report(out, candidate.mtime, &candidate.path)?;
            if self.remove {
                remove_path(&candidate.path, false)?;
            }
            removed.insert(candidate.path);
        }
        summary.removed_files += removed.len();
        if !removed.is_empty() && self.remove {
            remove_path(&stats.dir.join("maildirsize"), false)?;
        }
        Ok(())
    }
}

/// `Jan 02`-style day of a Unix time (UTC).
pub fn month_day(ts: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // Civil date from days since 1970-01-01 (proleptic Gregorian calendar).
    let z = ts.div_euclid(DAY) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    format!("{} {day:02}", MONTHS[(month - 1) as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dovecot_filenames() {
        assert_eq!(
            parse_dovecot_filename("1688640327.M491284P1035066.c2,S=1530,W=1561:2,S"),
            Some((1_688_640_327, 1530))
        );
        assert_eq!(
            parse_dovecot_filename("1688640327.M4P1.host,S=12,W=13"),
            Some((1_688_640_327, 12))
        );
        for bad in [
            "msg_old1",
            "x1688640327.M4,S=1",
            "1688640327.M4P1.host",
            "123.,S=5",
            "123.x,S=z",
        ] {
            assert_eq!(parse_dovecot_filename(bad), None, "{bad}");
        }
    }

    #[test]
    fn trim_removes_oldest_first_and_never_the_last_day() {
        let now = 1_700_000_000;
        let mib = 1024 * 1024;
        let c = |age_days: i64, name: &str| Candidate {
            mtime: now - age_days * DAY,
            size: mib,
            path: name.into(),
        };
        let all = vec![c(0, "now"), c(10, "ten"), c(5, "five")];
        let plan = trim_plan(all.clone(), mib, now);
        let names: Vec<_> = plan.iter().map(|c| c.path.to_str().unwrap()).collect();
        assert_eq!(names, ["ten", "five"]);
        // a target below the newest message still keeps it
        assert_eq!(trim_plan(all, 0, now).len(), 2);
    }

    #[test]
    fn month_days() {
        assert_eq!(month_day(0), "Jan 01");
        assert_eq!(month_day(951_782_400), "Feb 29"); // 2000-02-29
        assert_eq!(month_day(1_765_432_100), "Dec 11");
    }
}
