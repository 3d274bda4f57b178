//! File primitives shared by the services: atomic replacement, lock files with a timeout,
//! and timestamps set on files.

use std::fs::{File, FileTimes, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

/// Seconds in a day; last-login times are rounded down to a multiple of it.
pub const DAY: i64 = 86_400;

/// `ts` rounded down to the start of its UTC day.
pub fn day_start(ts: i64) -> i64 {
    ts.div_euclid(DAY) * DAY
}

/// Replaces `path` with `contents`: written to `<name>.tmp-<random>` in the same folder, then
/// renamed over `path`, so readers see the old or the new content, never a part.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(
        ".tmp-{}",
        crate::random::string(b"0123456789", 10)?
    ));
    let tmp = PathBuf::from(tmp_name);
    let written = File::create(&tmp)
        .and_then(|mut file| file.write_all(contents))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(err) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(err).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}

/// An exclusive `flock` on a lock file, released when dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Takes an exclusive `flock` on `path` (created if missing), waiting at most `timeout`.
pub fn lock(path: &Path, timeout: Duration) -> Result<Lock> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening lock file {}", path.display()))?;
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Lock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                bail!(
                    "timed out after {timeout:?} waiting for lock {}",
                    path.display()
                )
            }
            Err(std::fs::TryLockError::Error(err)) => {
                return Err(err).with_context(|| format!("locking {}", path.display()));
            }
        }
    }
}

/// The modification time of `meta` in Unix seconds.
pub fn mtime(meta: &std::fs::Metadata) -> i64 {
    match meta.modified().map(|t| t.duration_since(UNIX_EPOCH)) {
        Ok(Ok(d)) => d.as_secs() as i64,
        Ok(Err(before_epoch)) => -(before_epoch.duration().as_secs() as i64),
        Err(_) => 0,
    }
}

/// Sets both the access and the modification time of `path` to `ts` (Unix seconds).
pub fn set_times(path: &Path, ts: i64) -> Result<()> {
    let time = if ts >= 0 {
        UNIX_EPOCH + Duration::from_secs(ts as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(ts.unsigned_abs())
    };
    let set = File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_times(FileTimes::new().set_accessed(time).set_modified(time)));
    set.with_context(|| format!("setting the times of {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_rounding_matches_upstream() {
        assert_eq!(day_start(100_000), 86_400);
        assert_eq!(day_start(200_000), 172_800);
        assert_eq!(day_start(172_800), 172_800);
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let missing = dir.path().join("no/such/f");
        let err = write_atomic(&missing, b"x").unwrap_err();
        assert!(format!("{err:#}").contains("no/such/f"), "{err:#}");
    }

    #[test]
    fn concurrent_atomic_writes_leave_one_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"first").unwrap();
        let contents: Vec<String> = (0..30).map(|i| format!("content {i}")).collect();
        std::thread::scope(|scope| {
            for content in &contents {
                let path = &path;
                scope.spawn(move || write_atomic(path, content.as_bytes()).unwrap());
            }
        });
        let last = std::fs::read_to_string(&path).unwrap();
        assert!(contents.contains(&last), "{last:?}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_held_lock_times_out_and_is_free_after_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let held = lock(&path, Duration::from_secs(1)).unwrap();
        let err = lock(&path, Duration::from_millis(50)).unwrap_err();
        assert!(err.to_string().contains("timed out"), "{err}");
        drop(held);
        lock(&path, Duration::from_millis(50)).unwrap();
    }

    #[test]
    fn set_times_sets_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "").unwrap();
        set_times(&path, 172_800).unwrap();
        assert_eq!(mtime(&std::fs::metadata(&path).unwrap()), 172_800);
    }
}
