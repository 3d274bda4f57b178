//! The manifest: what the engine manages on a target (files and units, per component), so a
//! later run can take away what it no longer declares.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::engine::Planned;
use crate::files::{self, Meta};
use crate::target::Target;

/// Where the manifest lives on the target.
pub const MANIFEST_PATH: &str = "/var/lib/cmdeploy/manifest";

/// One managed item.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Item {
    /// A file the component writes (never a generated secret: those are kept).
    File(PathBuf),
    /// A systemd unit the component runs or keeps stopped.
    Unit(String),
}

/// A managed item and the component that declared it.
pub type Entry = (String, Item);

/// The items a target's earlier runs declared.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Manifest {
    entries: BTreeSet<Entry>,
}

impl Manifest {
    /// The manifest of `target` (empty when no run recorded one yet).
    pub fn load(target: &Target) -> Result<Manifest> {
        let path = target.path(MANIFEST_PATH);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
        };
        let entries = text.lines().filter_map(parse).collect();
        Ok(Manifest { entries })
    }

    /// What `plans` declare, for a run that planned configure and activate.
    pub fn declared(plans: &[Planned]) -> Manifest {
        let mut entries = BTreeSet::new();
        for planned in plans {
            let name = planned.component;
            let install = &planned.install;
            let configured = planned.configure.iter().flat_map(|c| &c.files);
            for file in install
                .files
                .iter()
                .chain(&install.apt_files)
                .chain(configured)
            {
                entries.insert((name.to_owned(), Item::File(file.path.clone())));
            }
            for service in planned.activate.iter().flat_map(|a| &a.services) {
                entries.insert((name.to_owned(), Item::Unit(service.unit.clone())));
            }
        }
        Manifest { entries }
    }

    /// The items of the components in `plans` that this manifest holds but `declared` no
    /// longer does (by any component: an item that moved is kept).
    pub fn orphans(&self, plans: &[Planned], declared: &Manifest) -> Vec<Entry> {
        let items: BTreeSet<&Item> = declared.entries.iter().map(|(_, item)| item).collect();
        self.entries
            .iter()
            .filter(|(component, item)| {
                plans.iter().any(|p| p.component == component) && !items.contains(item)
            })
            .cloned()
            .collect()
    }

    /// The manifest after a run: the entries of the components in `plans` replaced by
    /// `declared`, except the orphans in `kept` that are still there.
    pub fn updated(&self, plans: &[Planned], declared: &Manifest, kept: &[Entry]) -> Manifest {
        let mut entries: BTreeSet<Entry> = self
            .entries
            .iter()
            .filter(|(component, _)| !plans.iter().any(|p| p.component == component))
            .cloned()
            .collect();
        entries.extend(declared.entries.iter().cloned());
        entries.extend(kept.iter().cloned());
        Manifest { entries }
    }

    /// Writes the manifest to `target` (atomically) if it differs from `previous`.
    pub fn save(&self, target: &Target, previous: &Manifest) -> Result<()> {
        if self == previous {
            return Ok(());
        }
        let text: String = self.entries.iter().map(line).collect();
        let root = Meta {
            uid: 0,
            gid: 0,
            mode: 0o644,
        };
        files::write_atomic(&target.path(MANIFEST_PATH), text.as_bytes(), root)
    }
}

fn line((component, item): &Entry) -> String {
    match item {
        Item::File(path) => format!("{component} file {}\n", path.display()),
        Item::Unit(unit) => format!("{component} unit {unit}\n"),
    }
}

fn parse(line: &str) -> Option<Entry> {
    let (component, rest) = line.split_once(' ')?;
    let item = match rest.split_once(' ')? {
        ("file", path) => Item::File(Path::new(path).to_owned()),
        ("unit", unit) => Item::Unit(unit.to_owned()),
        _ => return None,
    };
    Some((component.to_owned(), item))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_back_as_written() {
        let entries = [
            (
                "tls".to_owned(),
                Item::File("/etc/systemd/system/a b.path".into()),
            ),
            ("tls".to_owned(), Item::Unit("tls-cert-reload.path".into())),
        ];
        for entry in entries {
            assert_eq!(parse(line(&entry).trim_end()), Some(entry));
        }
        assert_eq!(parse("tls folder /x"), None);
    }
}
