//! Files and directories on the target: comparing with the wanted state, atomic writes with
//! owner and mode, unified diffs, and backups for rolling back a failed validation.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Numeric owner and mode as they are (or should be) on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// What is at a path now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Existing {
    Missing,
    File {
        content: Vec<u8>,
        meta: Meta,
    },
    /// A symlink, directory or device: replaced by the wanted file.
    Other,
}

impl Existing {
    pub fn read(path: &Path) -> Result<Existing> {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Existing::Missing),
            Err(err) => return Err(err).with_context(|| format!("inspecting {}", path.display())),
        };
        if !meta.file_type().is_file() {
            return Ok(Existing::Other);
        }
        let content = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(Existing::File {
            content,
            meta: Meta {
                uid: meta.uid(),
                gid: meta.gid(),
                mode: meta.mode() & 0o7777,
            },
        })
    }

    pub fn content(&self) -> Option<&[u8]> {
        match self {
            Existing::File { content, .. } => Some(content),
            _ => None,
        }
    }
}

/// How every temporary file (or directory) of cmdeploy on a target begins.
const TEMP_PREFIX: &str = ".cmdeploy-";

/// Writes `content` to `path` atomically (temporary file in the same directory, then rename),
/// with the given owner and mode already set when it appears. Creates missing parents.
pub fn write_atomic(path: &Path, content: &[u8], meta: Meta) -> Result<()> {
    let parent = path
        .parent()
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let mut temp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(parent)
        .with_context(|| format!("creating a temporary file in {}", parent.display()))?;
    temp.write_all(content)
        .and_then(|()| temp.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    std::os::unix::fs::fchown(temp.as_file(), Some(meta.uid), Some(meta.gid))
        .with_context(|| format!("setting the owner of {}", path.display()))?;
    temp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(meta.mode))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        std::fs::remove_dir_all(path)
            .with_context(|| format!("removing directory {}", path.display()))?;
    }
    temp.persist(path)
        .with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// How far [`backdate`] moves a file's modification time into the past.
pub const BACKDATE: std::time::Duration = std::time::Duration::from_secs(60);

/// Dates `path`'s modification time a minute (`BACKDATE`) back. Postfix re-reads a `main.cf`
/// younger than two seconds every 300 ms until it is older ("pausing to let it cool down"), so
/// each Postfix command on a file just written waits up to 2 s: staged copies, the files a
/// container writes at its start and the files declared settled (`FileRef::settled`:
/// Postfix's `main.cf`, read at each `daemon-reload` by Debian's instance generator) are
/// backdated, since nothing else reads their times.
pub fn backdate(path: &Path) -> Result<()> {
    let file = std::fs::File::options()
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let past = std::time::SystemTime::now() - BACKDATE;
    file.set_modified(past)
        .with_context(|| format!("dating back {}", path.display()))
}

/// The temporary files and directories (of [`write_atomic`], of generators) that a killed
/// run left in `dir` (none if `dir` is missing).
pub fn leftovers(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err).with_context(|| format!("listing {}", dir.display())),
    };
    let mut temps = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        if entry
            .file_name()
            .as_encoded_bytes()
            .starts_with(TEMP_PREFIX.as_bytes())
        {
            temps.push(entry.path());
        }
    }
    Ok(temps)
}

/// Sets owner and mode of `path` if they differ; true if something changed.
pub fn set_meta(path: &Path, meta: Meta) -> Result<bool> {
    let current =
        std::fs::metadata(path).with_context(|| format!("inspecting {}", path.display()))?;
    let mut changed = false;
    if (current.uid(), current.gid()) != (meta.uid, meta.gid) {
        std::os::unix::fs::chown(path, Some(meta.uid), Some(meta.gid))
            .with_context(|| format!("setting the owner of {}", path.display()))?;
        changed = true;
    }
    if current.mode() & 0o7777 != meta.mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(meta.mode))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
        changed = true;
    }
    Ok(changed)
}

/// A unified diff from `old` (None: the file does not exist) to `new`, labelled with `path`.
pub fn diff(path: &Path, old: Option<&[u8]>, new: &[u8]) -> String {
    let label = path.display().to_string();
    match (old.map(std::str::from_utf8), std::str::from_utf8(new)) {
        (Some(Err(_)), _) | (_, Err(_)) => format!("binary file {label} differs\n"),
        (old, Ok(new)) => {
            let old = old.and_then(Result::ok).unwrap_or_default();
            similar::TextDiff::from_lines(old, new)
                .unified_diff()
                .context_radius(3)
                .header(
                    &format!("{label} (on target)"),
                    &format!("{label} (planned)"),
                )
                .to_string()
        }
    }
}

/// `content` without the lines equal to `line` (ignoring trailing blanks and a `\r`), or
/// `None` when it has no such line. Every other byte stays as it was.
pub fn without_line(content: &[u8], line: &str) -> Option<Vec<u8>> {
    let mut kept = Vec::with_capacity(content.len());
    let mut found = false;
    for chunk in content.split_inclusive(|b| *b == b'\n') {
        if chunk.trim_ascii_end() == line.as_bytes() {
            found = true;
        } else {
            kept.extend_from_slice(chunk);
        }
    }
    found.then_some(kept)
}

/// Removes a file or directory tree; true if something was there.
pub fn remove(path: &Path) -> Result<bool> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(err) => return Err(err).with_context(|| format!("inspecting {}", path.display())),
    };
    if meta.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
    .with_context(|| format!("removing {}", path.display()))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The current user's ids, so the tests run unprivileged too.
    fn me(mode: u32) -> Meta {
        let dir = tempfile::tempdir().unwrap();
        let meta = std::fs::metadata(dir.path()).unwrap();
        Meta {
            uid: meta.uid(),
            gid: meta.gid(),
            mode,
        }
    }

    #[test]
    fn atomic_write_sets_mode_and_replaces_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("etc/resolv.conf");
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink("/nonexistent", &target).unwrap();
        assert_eq!(Existing::read(&target).unwrap(), Existing::Other);
        write_atomic(&target, b"nameserver 127.0.0.1\n", me(0o640)).unwrap();
        match Existing::read(&target).unwrap() {
            Existing::File { content, meta } => {
                assert_eq!(content, b"nameserver 127.0.0.1\n");
                assert_eq!(meta.mode, 0o640);
            }
            other => panic!("{other:?}"),
        }
        let leftovers: Vec<_> = std::fs::read_dir(target.parent().unwrap())
            .unwrap()
            .collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn a_backdated_file_keeps_its_content_and_is_dated_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("main.cf");
        write_atomic(&path, b"settled\n", me(0o644)).unwrap();
        let before = std::time::SystemTime::now();
        backdate(&path).unwrap();
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert!(modified <= before - BACKDATE + std::time::Duration::from_secs(1));
        assert_eq!(std::fs::read(&path).unwrap(), b"settled\n");
    }

    #[test]
    fn leftovers_are_found_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".cmdeploy-Ab12cd"), "half").unwrap();
        std::fs::write(dir.path().join(".cmdeployed"), "kept").unwrap();
        std::fs::write(dir.path().join("main.cf"), "kept").unwrap();
        std::fs::create_dir(dir.path().join(".cmdeploy-new-7")).unwrap();
        let mut found = leftovers(dir.path()).unwrap();
        found.sort();
        assert_eq!(
            found,
            [".cmdeploy-Ab12cd", ".cmdeploy-new-7"].map(|name| dir.path().join(name))
        );
        assert!(leftovers(&dir.path().join("missing")).unwrap().is_empty());
    }

    #[test]
    fn only_whole_matching_lines_are_removed() {
        let obs = "deb [signed-by=/k.gpg] https://obs.example/ ./";
        let sources =
            format!("deb http://deb.debian.org/debian bookworm main\n{obs}  \r\n# {obs}\n{obs}");
        let kept = without_line(sources.as_bytes(), obs).unwrap();
        assert_eq!(
            String::from_utf8(kept).unwrap(),
            format!("deb http://deb.debian.org/debian bookworm main\n# {obs}\n")
        );
        assert_eq!(without_line(b"a\nab\n", "b"), None, "no partial matches");
        assert_eq!(without_line(b"", "b"), None);
    }

    #[test]
    fn diffs_are_unified_and_labelled() {
        let text = diff(Path::new("/etc/x.conf"), Some(b"a\nb\n"), b"a\nc\n");
        assert!(text.contains("--- /etc/x.conf (on target)"), "{text}");
        assert!(text.contains("-b\n+c\n"), "{text}");
        assert_eq!(
            diff(Path::new("/k"), Some(&[0xff]), b"x"),
            "binary file /k differs\n"
        );
    }
}
