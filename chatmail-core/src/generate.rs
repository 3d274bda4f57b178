//! What a run does about a generated secret (a key, a certificate, a link), decided from the
//! files it creates: an interrupted generator leaves empty or wrongly owned files, which are
//! repaired; a valid secret is never replaced. Generators write to temporary twins of their
//! files, renamed into place once complete, the first declared file (the secret) last.

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
    /// The secret (the first file) is not there: remove these empty leftovers, then run the
    /// generator (what else is there belonged to a secret that is gone, or to a run
    /// interrupted between its renames).
    Run { empty: Vec<PathBuf> },
    /// The secret is there but another of its files is missing: running would replace it.
    Partial { missing: PathBuf, present: PathBuf },
}

/// Decides from `files` (each created path with what was found) and the declared owner's
/// numeric ids, if any.
pub(crate) fn decide(files: &[(PathBuf, Found)], owner: Option<(u32, u32)>) -> Step {
    let present = files
        .first()
        .filter(|(_, found)| matches!(found, Found::Present { .. }));
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

/// A generator's argv pointed at temporary twins of the files it creates, and the renames
/// that put them in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Redirect {
    /// The generator's argv, writing to the twins.
    pub argv: Vec<String>,
    /// A directory to create first and remove last, when the generator takes the directory
    /// of its files rather than their paths (`opendkim-genkey -D DIR`).
    pub dir: Option<PathBuf>,
    /// (twin, file) pairs, in the order to rename them: the first declared file last.
    pub renames: Vec<(PathBuf, PathBuf)>,
}

/// How twins begin: with the prefix of every temporary file of cmdeploy (so a later run
/// removes what an interrupted one left), then `new-` and a tag unique to the run.
const TWIN_PREFIX: &str = ".cmdeploy-new-";

/// Points `argv` at twins of `creates` (tagged `tag`): each argument that is one of the files
/// becomes its twin, or else an argument that is their common directory becomes a twin
/// directory. `None` when the argv names neither (the generator then writes in place).
pub(crate) fn redirect(argv: &[String], creates: &[PathBuf], tag: &str) -> Option<Redirect> {
    let twin = |path: &Path| {
        let name = path.file_name()?.to_string_lossy();
        Some(path.with_file_name(format!("{TWIN_PREFIX}{tag}-{name}")))
    };
    let named = |path: &PathBuf| argv.iter().any(|arg| Path::new(arg) == path);
    let (argv, dir, mut renames) = if creates.iter().all(named) {
        let twins: Vec<(PathBuf, PathBuf)> = creates
            .iter()
            .map(|path| Some((twin(path)?, path.clone())))
            .collect::<Option<_>>()?;
        let argv = argv
            .iter()
            .map(
                |arg| match twins.iter().find(|(_, path)| Path::new(arg) == path) {
                    Some((twin, _)) => twin.display().to_string(),
                    None => arg.clone(),
                },
            )
            .collect();
        (argv, None, twins)
    } else {
        let parent = creates.first()?.parent()?;
        if creates.iter().any(|path| path.parent() != Some(parent)) {
            return None;
        }
        let index = argv.iter().position(|arg| Path::new(arg) == parent)?;
        let dir = parent.join(format!("{TWIN_PREFIX}{tag}"));
        let mut argv = argv.to_vec();
        argv[index] = dir.display().to_string();
        let renames = creates
            .iter()
            .map(|path| Some((dir.join(path.file_name()?), path.clone())))
            .collect::<Option<_>>()?;
        (argv, Some(dir), renames)
    };
    renames.reverse();
    Some(Redirect { argv, dir, renames })
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
    fn without_the_secret_its_other_files_are_made_again() {
        assert_eq!(
            decide(&files(Found::Missing, OURS), Some((110, 112))),
            Step::Run { empty: vec![] }
        );
    }

    #[test]
    fn generators_write_twins_named_by_path_or_by_directory() {
        let argv = |args: &[&str]| args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
        let paths = |list: &[&str]| list.iter().map(PathBuf::from).collect::<Vec<_>>();
        let openssl = redirect(
            &argv(&["openssl", "req", "-keyout", "/k/key", "-out", "/c/cert"]),
            &paths(&["/k/key", "/c/cert"]),
            "7",
        )
        .unwrap();
        assert_eq!(
            openssl.argv,
            argv(&[
                "openssl",
                "req",
                "-keyout",
                "/k/.cmdeploy-new-7-key",
                "-out",
                "/c/.cmdeploy-new-7-cert"
            ])
        );
        assert_eq!(openssl.dir, None);
        assert_eq!(
            openssl.renames,
            [
                ("/c/.cmdeploy-new-7-cert".into(), "/c/cert".into()),
                ("/k/.cmdeploy-new-7-key".into(), "/k/key".into())
            ],
            "the secret comes last"
        );
        let genkey = redirect(
            &argv(&["opendkim-genkey", "-D", "/etc/dkimkeys", "-s", "opendkim"]),
            &paths(&[KEY, TXT]),
            "7",
        )
        .unwrap();
        assert_eq!(genkey.argv[2], "/etc/dkimkeys/.cmdeploy-new-7");
        assert_eq!(genkey.dir, Some("/etc/dkimkeys/.cmdeploy-new-7".into()));
        assert_eq!(
            genkey.renames[1],
            (
                "/etc/dkimkeys/.cmdeploy-new-7/opendkim.private".into(),
                KEY.into()
            )
        );
        let in_place = redirect(
            &argv(&["/usr/libexec/unbound-helper", "root_trust_anchor_update"]),
            &paths(&["/var/lib/unbound/root.key"]),
            "7",
        );
        assert_eq!(in_place, None);
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
