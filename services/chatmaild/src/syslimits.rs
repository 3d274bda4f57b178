//! System limits checked before an account is created: 1-minute load, available memory and
//! free disk space of `mailboxes_dir`. A value that cannot be read is skipped with a warning.

use std::path::Path;

use chatmail_config::Config;

/// The thresholds, from `max_load_1m`, `min_available_memory` and `min_free_disk_space`.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_load_1m: f64,
    pub min_available_memory_mb: u64,
    pub min_free_disk_space_mb: u64,
}

impl Limits {
    pub fn from_config(config: &Config) -> Limits {
        Limits {
            max_load_1m: config.max_load_1m,
            min_available_memory_mb: config.min_available_memory_mb,
            min_free_disk_space_mb: config.min_free_disk_space_mb,
        }
    }

    /// `Err(reason)` if this machine is over a limit; `data_dir` is where accounts are stored.
    pub fn check(&self, data_dir: &Path) -> Result<(), String> {
        if let Some(load) = readable("1-minute load", load_1m())
            && load > self.max_load_1m
        {
            return Err(format!("load average {load} is above {}", self.max_load_1m));
        }
        if let Some(mb) = readable("available memory", available_memory_mb())
            && mb < self.min_available_memory_mb
        {
            return Err(format!(
                "available memory {mb} MB is below {} MB",
                self.min_available_memory_mb
            ));
        }
        if let Some(mb) = readable("free disk space", free_disk_mb(data_dir))
            && mb < self.min_free_disk_space_mb
        {
            return Err(format!(
                "free disk space {mb} MB in {} is below {} MB",
                data_dir.display(),
                self.min_free_disk_space_mb
            ));
        }
        Ok(())
    }
}

fn readable<T>(what: &str, value: Result<T, String>) -> Option<T> {
    value
        .map_err(|err| eprintln!("warning: ignoring unreadable system limit {what}: {err}"))
        .ok()
}

fn load_1m() -> Result<f64, String> {
    let text =
        std::fs::read_to_string("/proc/loadavg").map_err(|e| format!("/proc/loadavg: {e}"))?;
    text.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("/proc/loadavg: unexpected content {text:?}"))
}

fn available_memory_mb() -> Result<u64, String> {
    let text =
        std::fs::read_to_string("/proc/meminfo").map_err(|e| format!("/proc/meminfo: {e}"))?;
    text.lines()
        .find_map(|line| line.strip_prefix("MemAvailable:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kb| kb / 1024)
        .ok_or_else(|| "/proc/meminfo: no readable MemAvailable line".to_owned())
}

fn free_disk_mb(dir: &Path) -> Result<u64, String> {
    let stat = rustix::fs::statvfs(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize) / (1024 * 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn permissive() -> Limits {
        Limits {
            max_load_1m: 1e12,
            min_available_memory_mb: 0,
            min_free_disk_space_mb: 0,
        }
    }

    #[test]
    fn permissive_limits_pass() {
        permissive().check(Path::new("/")).unwrap();
    }

    #[test]
    fn each_limit_rejects() {
        let load = Limits {
            max_load_1m: -1.0,
            ..permissive()
        };
        assert!(load.check(Path::new("/")).unwrap_err().contains("load"));
        let memory = Limits {
            min_available_memory_mb: 99_999_999 * 1024,
            ..permissive()
        };
        assert!(memory.check(Path::new("/")).unwrap_err().contains("memory"));
        let disk = Limits {
            min_free_disk_space_mb: 99_999_999 * 1024,
            ..permissive()
        };
        assert!(disk.check(Path::new("/")).unwrap_err().contains("disk"));
    }

    #[test]
    fn unreadable_disk_is_ignored_but_other_limits_still_apply() {
        let missing = Path::new("/nonexistent/chatmail/dir");
        let disk = Limits {
            min_free_disk_space_mb: u64::MAX,
            ..permissive()
        };
        disk.check(missing).unwrap();
        let load = Limits {
            max_load_1m: -1.0,
            ..disk
        };
        assert!(load.check(missing).is_err());
    }
}
