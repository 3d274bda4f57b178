//! Staged copies of a component's planned files, where its validators check them before any
//! live file is replaced.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::files::{self, Meta};
use crate::target::Target;

/// Where staged files live on the target (in-target path), mirroring their live paths.
pub const STAGE_PATH: &str = "/var/lib/cmdeploy/stage";

/// A staging tree on the target, removed when dropped (and by [`clean`] after an interrupted
/// run).
#[derive(Debug)]
pub struct Stage<'t> {
    target: &'t Target,
}

impl<'t> Stage<'t> {
    /// An empty staging tree on `target`.
    pub fn new(target: &'t Target) -> Result<Stage<'t>> {
        clean(target)?;
        Ok(Stage { target })
    }

    /// Stages `input` and returns the in-target path of its staged copy: a file of `planned`
    /// with its planned content, a live directory with its files overlaid by the planned ones
    /// directly inside it, or a live file as it is.
    pub fn put(&self, input: &Path, planned: &BTreeMap<&Path, &[u8]>) -> Result<PathBuf> {
        let staged = Path::new(STAGE_PATH).join(input.strip_prefix("/").unwrap_or(input));
        let host = self.target.path(&staged);
        let root = Meta {
            uid: 0,
            gid: 0,
            mode: 0o644,
        };
        if let Some(content) = planned.get(input) {
            stage_file(&host, content, root)?;
            return Ok(staged);
        }
        let live = self.target.path(input);
        if live.is_file() {
            let content =
                std::fs::read(&live).with_context(|| format!("reading {}", live.display()))?;
            stage_file(&host, &content, root)?;
            return Ok(staged);
        }
        if !live.is_dir() {
            bail!(
                "the validator's input {} is neither planned nor on the target",
                input.display()
            );
        }
        std::fs::create_dir_all(&host).with_context(|| format!("creating {}", host.display()))?;
        let entries =
            std::fs::read_dir(&live).with_context(|| format!("listing {}", live.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", live.display()))?;
            let name = entry.file_name();
            let in_target = input.join(&name);
            if planned.contains_key(in_target.as_path()) || !entry.path().is_file() {
                continue;
            }
            let content = std::fs::read(entry.path())
                .with_context(|| format!("reading {}", entry.path().display()))?;
            stage_file(&host.join(&name), &content, root)?;
        }
        for (path, content) in planned {
            if path.parent() == Some(input)
                && let Some(name) = path.file_name()
            {
                stage_file(&host.join(name), content, root)?;
            }
        }
        Ok(staged)
    }
}

impl Drop for Stage<'_> {
    fn drop(&mut self) {
        let _ = clean(self.target);
    }
}

/// Writes one staged file, dated back ([`files::backdate`]): validators read it at once.
fn stage_file(path: &Path, content: &[u8], meta: Meta) -> Result<()> {
    files::write_atomic(path, content, meta)?;
    files::backdate(path)
}

/// Removes the staging tree (left by an interrupted run, or by the last validation).
pub fn clean(target: &Target) -> Result<()> {
    files::remove(&target.path(STAGE_PATH)).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_staged_with_its_files_overlaid_by_the_planned_ones() {
        let root = tempfile::tempdir().unwrap();
        let target = Target::new(root.path(), false).unwrap();
        let live = root.path().join("etc/postfix");
        std::fs::create_dir_all(live.join("sasl")).unwrap();
        std::fs::write(live.join("main.cf"), "live main\n").unwrap();
        std::fs::write(live.join("dynamicmaps.cf"), "live maps\n").unwrap();
        let planned = BTreeMap::from([
            (Path::new("/etc/postfix/main.cf"), &b"planned main\n"[..]),
            (
                Path::new("/etc/postfix/master.cf"),
                &b"planned master\n"[..],
            ),
            (Path::new("/etc/other.cf"), &b"elsewhere\n"[..]),
        ]);
        let stage = Stage::new(&target).unwrap();
        let staged = stage.put(Path::new("/etc/postfix"), &planned).unwrap();
        assert_eq!(staged, Path::new("/var/lib/cmdeploy/stage/etc/postfix"));
        let host = target.path(&staged);
        let read = |name: &str| std::fs::read_to_string(host.join(name)).unwrap();
        assert_eq!(read("main.cf"), "planned main\n");
        assert_eq!(read("master.cf"), "planned master\n");
        assert_eq!(read("dynamicmaps.cf"), "live maps\n");
        assert!(!host.join("sasl").exists() && !host.join("other.cf").exists());
        assert_eq!(
            std::fs::read_to_string(live.join("main.cf")).unwrap(),
            "live main\n"
        );
        drop(stage);
        assert!(!target.path(STAGE_PATH).exists(), "the stage is removed");
    }

    #[test]
    fn a_planned_file_is_staged_with_its_planned_content_and_a_missing_input_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        let target = Target::new(root.path(), false).unwrap();
        let planned = BTreeMap::from([(Path::new("/etc/nginx/nginx.conf"), &b"events {}\n"[..])]);
        let stage = Stage::new(&target).unwrap();
        let staged = stage
            .put(Path::new("/etc/nginx/nginx.conf"), &planned)
            .unwrap();
        assert_eq!(std::fs::read(target.path(&staged)).unwrap(), b"events {}\n");
        let err = stage
            .put(Path::new("/etc/missing.conf"), &planned)
            .unwrap_err();
        assert!(err.to_string().contains("/etc/missing.conf"), "{err}");
    }
}
