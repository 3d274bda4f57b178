//! `website`: the relay's web pages under `/var/www/html`. `www_folder` empty: built-in pages
//! made from the settings (how to get an account, the limits, the privacy contacts) and a
//! `robots.txt` that turns crawlers away;
//! `www_folder = disabled`: no website; otherwise: the files of that folder, as they are.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chatmail_core::config::Config;
use chatmail_core::plan::Owner;
use chatmail_core::{Component, Configure, Install, register};
use include_dir::{Dir, include_dir};

static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../templates/website");

/// nginx's document root.
const WEBROOT: &str = "/var/www/html";

/// The built-in pages: template, then the file it becomes.
const PAGES: [(&str, &str); 5] = [
    ("index.html.j2", "index.html"),
    ("info.html.j2", "info.html"),
    ("privacy.html.j2", "privacy.html"),
    ("style.css", "style.css"),
    ("robots.txt", "robots.txt"),
];

/// The relay's website.
#[derive(Debug)]
pub struct Website;

/// Where the website comes from.
#[derive(Debug, PartialEq, Eq)]
enum Source {
    BuiltIn,
    Disabled,
    Folder(PathBuf),
}

impl Source {
    /// `www_folder` as written; a relative folder is relative to the settings file's directory.
    fn of(config: &Config) -> Source {
        match config.www_folder.as_str() {
            "" => Source::BuiltIn,
            "disabled" => Source::Disabled,
            folder => {
                let base = config.origin.parent().unwrap_or(Path::new(""));
                Source::Folder(base.join(folder))
            }
        }
    }
}

impl Component for Website {
    fn name(&self) -> &'static str {
        "website"
    }

    fn after(&self) -> &'static [&'static str] {
        &["base"]
    }

    fn templates(&self) -> Option<&'static Dir<'static>> {
        Some(&TEMPLATES)
    }

    fn install(&self, install: &mut Install<'_>) -> Result<()> {
        install.dir("/var/www", Owner::root(), 0o755);
        Ok(())
    }

    /// Pages are static: a change restarts nothing. Files that were deployed earlier but are
    /// no longer in the source stay (see ARCHITECTURE.md).
    fn configure(&self, configure: &mut Configure<'_>) -> Result<()> {
        match Source::of(configure.config) {
            Source::Disabled => configure.warn(
                "www_folder = disabled: no web pages are deployed (earlier ones stay in /var/www/html)",
            ),
            Source::BuiltIn => {
                for (template, page) in PAGES {
                    configure
                        .template(format!("{WEBROOT}/{page}"), template, ())?
                        .owner("www-data", "www-data")
                        .restarts(&[]);
                }
            }
            Source::Folder(folder) => {
                let (dirs, files) = walk(&folder)?;
                for dir in dirs {
                    let owner = Owner::new("www-data", "www-data");
                    configure.dir(Path::new(WEBROOT).join(dir), owner, 0o755);
                }
                for (relative, content) in files {
                    configure
                        .file(Path::new(WEBROOT).join(relative), content)
                        .owner("www-data", "www-data")
                        .restarts(&[]);
                }
            }
        }
        Ok(())
    }
}

/// Subdirectories and files (with content) of `folder`, relative to it, in sorted order.
/// Hidden entries (`.git`, editor files) are left out, except `.well-known`.
#[allow(clippy::type_complexity)]
fn walk(folder: &Path) -> Result<(Vec<PathBuf>, BTreeMap<PathBuf, Vec<u8>>)> {
    if !folder.is_dir() {
        bail!(
            "www_folder: {} is not a directory (use `disabled` for no website, or leave it \
             empty for the built-in pages)",
            folder.display()
        );
    }
    let mut dirs = Vec::new();
    let mut files = BTreeMap::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let dir = folder.join(&relative);
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') && name != ".well-known" {
                continue;
            }
            let path = entry.path();
            let inner = relative.join(&name);
            // Symbolic links are followed, as a web server would.
            let meta =
                std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?;
            if meta.is_dir() {
                dirs.push(inner.clone());
                pending.push(inner);
            } else if meta.is_file() {
                let content =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                files.insert(inner, content);
            }
        }
    }
    dirs.sort();
    Ok((dirs, files))
}

register!(Website);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test fails by panicking

    use super::*;

    #[test]
    fn walk_lists_files_and_dirs_and_skips_hidden_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("img/icons")).unwrap();
        std::fs::create_dir_all(dir.path().join(".git")).unwrap();
        std::fs::create_dir_all(dir.path().join(".well-known")).unwrap();
        std::fs::write(dir.path().join("index.html"), "hi").unwrap();
        std::fs::write(dir.path().join("img/icons/a.png"), [0u8, 1, 2]).unwrap();
        std::fs::write(dir.path().join(".git/HEAD"), "x").unwrap();
        std::fs::write(dir.path().join(".well-known/security.txt"), "s").unwrap();
        let (dirs, files) = walk(dir.path()).unwrap();
        assert_eq!(
            dirs,
            [
                PathBuf::from(".well-known"),
                "img".into(),
                "img/icons".into()
            ]
        );
        let names: Vec<&Path> = files.keys().map(PathBuf::as_path).collect();
        assert_eq!(
            names,
            [
                Path::new(".well-known/security.txt"),
                Path::new("img/icons/a.png"),
                Path::new("index.html")
            ]
        );
        assert_eq!(files[Path::new("img/icons/a.png")], [0u8, 1, 2]);
    }

    #[test]
    fn a_missing_folder_is_a_clear_error() {
        let err = walk(Path::new("/nonexistent/www")).unwrap_err();
        assert!(
            err.to_string()
                .contains("/nonexistent/www is not a directory")
        );
    }
}
