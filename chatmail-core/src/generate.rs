//! What a run does about a generated secret (a key, a certificate, a link), decided from the
//! files it creates: an interrupted generator leaves empty or wrongly owned files, which are
//! repaired; a valid file is never replaced.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

/// One created file as found on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    Missing,
    /// A regular file of zero bytes: what a generator killed before writing leaves.
    Empty,
    /// Anything else (a file with content, a link), with its owner.
    Present {
        uid: u32,
        gid: u32,
    },
}

impl Found {
    /// Looks at `path` without following a final symbolic link.
    pub(crate) fn at(path: &Path) -> Found {
        match std::fs::symlink_metadata(path) {
            Err(_) => Found::Missing,
            Ok(meta) if meta.is_file() && meta.len() == 0 => Found::Empty,
            Ok(meta) => Found::Present {
                uid: meta.uid(),
                gid: meta.gid(),
            },
        }
    }
}

/// The decision for one generate step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Every file is there, owned as declared.
    Done,
    /// Every file is there but some are not owned as declared: give them the owner.
    Chown(Vec<PathBuf>),
    /// Nothing valid is there: remove these empty leftovers, then run the generator.
    Run { empty: Vec<PathBuf> },
    /// Some files are valid and others missing: running would replace the valid ones.
    Partial { missing: PathBuf, present: PathBuf },
}

/// Decides from `files` (each created path with what was found) and the declared owner's
/// numeric ids, if any.
pub(crate) fn decide(files: &[(PathBuf, Found)], owner: Option<(u32, u32)>) -> Step {
    let present = files
        .iter()
        .find(|(_, found)| matches!(found, Found::Present { .. }));
    let absent = files
        .iter()
        .find(|(_, found)| !matches!(found, Found::Present { .. }));
    match (present, absent) {
        (Some((present, _)), Some((missing, _))) => Step::Partial {
            missing: missing.clone(),
            present: present.clone(),
        },
        (None, _) => Step::Run {
            empty: files
                .iter()
                .filter(|(_, found)| *found == Found::Empty)
                .map(|(path, _)| path.clone())
                .collect(),
        },
        (Some(_), None) => {
            let Some((uid, gid)) = owner else {
                return Step::Done;
            };
            let wrong: Vec<PathBuf> = files
                .iter()
                .filter(|(_, found)| *found != Found::Present { uid, gid })
                .map(|(path, _)| path.clone())
                .collect();
            match wrong.is_empty() {
                true => Step::Done,
                false => Step::Chown(wrong),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "/etc/dkimkeys/opendkim.private";
    const TXT: &str = "/etc/dkimkeys/opendkim.txt";

    fn files(key: Found, txt: Found) -> Vec<(PathBuf, Found)> {
        vec![(KEY.into(), key), (TXT.into(), txt)]
    }

    const OURS: Found = Found::Present { uid: 110, gid: 112 };
    const ROOTS: Found = Found::Present { uid: 0, gid: 0 };

    #[test]
    fn nothing_there_runs_and_empty_leftovers_are_cleared_first() {
        let run = |key, txt| decide(&files(key, txt), Some((110, 112)));
        assert_eq!(
            run(Found::Missing, Found::Missing),
            Step::Run { empty: vec![] }
        );
        assert_eq!(
            run(Found::Empty, Found::Missing),
            Step::Run {
                empty: vec![KEY.into()]
            }
        );
        assert_eq!(
            run(Found::Empty, Found::Empty),
            Step::Run {
                empty: vec![KEY.into(), TXT.into()]
            }
        );
    }

    #[test]
    fn valid_files_are_kept_and_only_their_owner_repaired() {
        assert_eq!(decide(&files(OURS, OURS), Some((110, 112))), Step::Done);
        assert_eq!(decide(&files(ROOTS, ROOTS), None), Step::Done);
        assert_eq!(
            decide(&files(ROOTS, OURS), Some((110, 112))),
            Step::Chown(vec![KEY.into()])
        );
    }

    #[test]
    fn a_valid_file_beside_a_missing_one_is_never_replaced() {
        for txt in [Found::Missing, Found::Empty] {
            assert_eq!(
                decide(&files(OURS, txt), Some((110, 112))),
                Step::Partial {
                    missing: TXT.into(),
                    present: KEY.into()
                }
            );
        }
    }

    #[test]
    fn files_are_seen_as_they_are_links_included() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        assert_eq!(Found::at(&path), Found::Missing);
        std::fs::write(&path, "").unwrap();
        assert_eq!(Found::at(&path), Found::Empty);
        std::fs::write(&path, "key").unwrap();
        assert!(matches!(Found::at(&path), Found::Present { .. }));
        let dangling = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(matches!(Found::at(&dangling), Found::Present { .. }));
    }
}
