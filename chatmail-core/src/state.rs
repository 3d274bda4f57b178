//! State the engine keeps between runs: what is owed on the target (restarts, reloads, change
//! commands), and the run lock.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::files::{self, Meta};
use crate::target::Target;

/// Where pending restarts live on the target.
pub const PENDING_PATH: &str = "/var/lib/cmdeploy/pending-restarts";

/// One thing activation still owes the target.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Owed {
    /// `systemctl daemon-reload` (a unit file changed).
    DaemonReload,
    /// Restart every running service of a component.
    Component(String),
    /// Restart one unit.
    Unit(String),
    /// Reload one unit (its configuration changed; a restart owed as well supersedes it).
    Reload(String),
    /// Run a component's change command for a file that changed (e.g. `sysctl --load`).
    Command(String, PathBuf),
}

impl Owed {
    fn line(&self) -> String {
        match self {
            Owed::DaemonReload => "daemon-reload".to_owned(),
            Owed::Component(name) => format!("component {name}"),
            Owed::Unit(unit) => format!("unit {unit}"),
            Owed::Reload(unit) => format!("reload {unit}"),
            Owed::Command(component, path) => format!("command {component} {}", path.display()),
        }
    }

    fn parse(line: &str) -> Option<Owed> {
        match line.split_once(' ') {
            None if line == "daemon-reload" => Some(Owed::DaemonReload),
            Some(("component", name)) => Some(Owed::Component(name.to_owned())),
            Some(("unit", unit)) => Some(Owed::Unit(unit.to_owned())),
            Some(("reload", unit)) => Some(Owed::Reload(unit.to_owned())),
            Some(("command", rest)) => {
                let (component, path) = rest.split_once(' ')?;
                Some(Owed::Command(component.to_owned(), path.into()))
            }
            _ => None,
        }
    }
}

/// Restarts that configure (or install) made necessary and activate has not done yet.
/// Written before the change they stem from, cleared only after a successful activation,
/// so a run that is interrupted, or split into `--phase configure` and `--phase activate`,
/// still restarts the right services.
#[derive(Debug)]
pub struct Pending {
    path: PathBuf,
    owed: BTreeSet<Owed>,
    persist: bool,
}

impl Pending {
    /// Loads the pending restarts of `target`; `persist = false` (dry runs) never writes.
    pub fn load(target: &Target, persist: bool) -> Result<Pending> {
        let path = target.path(PENDING_PATH);
        let owed = match std::fs::read_to_string(&path) {
            Ok(text) => text.lines().filter_map(Owed::parse).collect(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
        };
        Ok(Pending {
            path,
            owed,
            persist,
        })
    }

    pub fn contains(&self, owed: &Owed) -> bool {
        self.owed.contains(owed)
    }

    /// Records `owed` (saved at once).
    pub fn add(&mut self, owed: impl IntoIterator<Item = Owed>) -> Result<()> {
        let before = self.owed.len();
        self.owed.extend(owed);
        if self.owed.len() != before {
            self.save()?;
        }
        Ok(())
    }

    /// Forgets `owed` once done (saved at once).
    pub fn remove(&mut self, owed: &[Owed]) -> Result<()> {
        let before = self.owed.len();
        self.owed.retain(|o| !owed.contains(o));
        if self.owed.len() != before {
            self.save()?;
        }
        Ok(())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Owed> {
        self.owed.iter()
    }

    fn save(&self) -> Result<()> {
        if !self.persist {
            return Ok(());
        }
        if self.owed.is_empty() {
            files::remove(&self.path)?;
            return Ok(());
        }
        let text: String = self.owed.iter().map(|o| o.line() + "\n").collect();
        files::write_atomic(
            &self.path,
            text.as_bytes(),
            Meta {
                uid: 0,
                gid: 0,
                mode: 0o644,
            },
        )
    }
}

/// Where run locks are kept, on the machine running cmdeploy.
pub const RUN_LOCK_DIR: &str = "/run/lock/cmdeploy";

/// An exclusive lock on a target, held for the duration of a run. Its file is named after
/// the canonical target path (escaped without collisions) and removed when the run ends.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock of `target`, kept on this machine (outside the target directory, so
    /// even a dry run of a directory target changes nothing in it).
    pub fn acquire(target: &Target) -> Result<RunLock> {
        Self::take(target, |file, path| match file.try_lock() {
            Ok(()) => Ok(()),
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "another cmdeploy run is deploying {} (lock {}); wait for it to finish",
                target.root().display(),
                path.display()
            ),
            Err(std::fs::TryLockError::Error(err)) => {
                Err(err).with_context(|| format!("locking {}", path.display()))
            }
        })
    }

    /// Takes the lock of `target`, waiting while another run holds it. The containers' `init`
    /// mounts [`RUN_LOCK_DIR`] as a volume, so two inits never make a secret twice.
    pub fn wait(target: &Target) -> Result<RunLock> {
        Self::take(target, |file, path| {
            file.lock()
                .with_context(|| format!("locking {}", path.display()))
        })
    }

    /// Opens the lock file and locks it with `lock`; starts over when the holder it waited
    /// for removed the file meanwhile (the lock would then guard nothing).
    fn take(target: &Target, lock: impl Fn(&File, &Path) -> Result<()>) -> Result<RunLock> {
        let dir = PathBuf::from(RUN_LOCK_DIR);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(lock_name(target.root()));
        loop {
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            lock(&file, &path)?;
            let held = file.metadata().map(|m| (m.dev(), m.ino()));
            let current = std::fs::metadata(&path).map(|m| (m.dev(), m.ino()));
            if let (Ok(held), Ok(current)) = (held, current)
                && held == current
            {
                return Ok(RunLock { file, path });
            }
        }
    }
}

impl Drop for RunLock {
    /// Removes the file while still holding the lock, so lock files never pile up.
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

/// The lock file's name for `root`: bytes other than letters, digits, `-`, `_` and `.` are
/// written `%XX`, so two paths never share a name (`/x/root_a` and `/x/root-a` do not).
fn lock_name(root: &Path) -> String {
    let mut name = String::new();
    for byte in root.as_os_str().as_bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                name.push(char::from(*byte))
            }
            other => name.push_str(&format!("%{other:02X}")),
        }
    }
    name + ".lock"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owed_entries_read_back_as_written() {
        for owed in [
            Owed::DaemonReload,
            Owed::Component("postfix".into()),
            Owed::Unit("nginx.service".into()),
            Owed::Reload("dovecot.service".into()),
        ] {
            assert_eq!(Owed::parse(&owed.line()), Some(owed.clone()), "{owed:?}");
        }
        assert_eq!(Owed::parse("reboot now"), None);
    }

    #[test]
    fn lock_names_never_collide() {
        assert_eq!(lock_name(Path::new("/")), "%2F.lock");
        assert_eq!(lock_name(Path::new("/x/root_a")), "%2Fx%2Froot_a.lock");
        assert_ne!(
            lock_name(Path::new("/x/root_a")),
            lock_name(Path::new("/x/root-a"))
        );
        assert_ne!(
            lock_name(Path::new("/x/a%2Fb")),
            lock_name(Path::new("/x/a/b"))
        );
    }

    #[test]
    fn a_lock_excludes_a_second_run_and_leaves_no_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        let target = Target::new(dir.path(), false).unwrap();
        let path = Path::new(RUN_LOCK_DIR).join(lock_name(target.root()));
        let lock = RunLock::acquire(&target).unwrap();
        assert!(path.exists());
        let err = RunLock::acquire(&target).unwrap_err();
        assert!(
            err.to_string()
                .contains("another cmdeploy run is deploying"),
            "{err}"
        );
        drop(lock);
        assert!(!path.exists(), "the lock file is removed with the lock");
        drop(RunLock::wait(&target).unwrap());
        assert!(!path.exists());
    }
}
