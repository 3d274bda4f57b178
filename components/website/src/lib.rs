//! `website`: the relay's web pages under `/var/www/html`, from one of four sources:
//! - `www_folder` empty: built-in pages made from the settings (how to get an account, the
//!   limits, the privacy contacts), the invite QR code and a `robots.txt` that turns crawlers
//!   away;
//! - a folder with `src/index.md`: its Markdown pages built as upstream builds them
//!   ([`markdown`]), plus the invite QR code;
//! - any other folder: its files as they are;
//! - `disabled`, or a folder that does not exist (as upstream): no website.

mod markdown;
mod qr;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chatmail_core::config::Config;
use chatmail_core::plan::Owner;
use chatmail_core::{Component, Configure, Install, register};
use include_dir::{Dir, include_dir};
use serde::Serialize;

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
    /// A `www_folder` that is not a directory.
    Missing(PathBuf),
    /// The `src` directory of a `www_folder` written in Markdown.
    Markdown(PathBuf),
    /// A `www_folder` of finished files.
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
                let folder = base.join(folder);
                let src = folder.join("src");
                if !folder.is_dir() {
                    Source::Missing(folder)
                } else if src.join("index.md").is_file() {
                    Source::Markdown(src)
                } else {
                    Source::Folder(folder)
                }
            }
        }
    }
}

/// What the built-in pages see besides the settings.
#[derive(Serialize)]
struct Vars {
    /// The invite QR code's file name.
    qr: String,
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

    /// Pages are static: a change restarts nothing. Pages a run no longer declares are
    /// removed (the manifest); files someone else put there stay.
    fn configure(&self, configure: &mut Configure<'_>) -> Result<()> {
        let config = configure.config;
        let qr = qr::file_name(&config.mail_domain_bare);
        match Source::of(config) {
            Source::Disabled => configure.warn("www_folder = disabled: no web pages are deployed"),
            Source::Missing(folder) => configure.warn(&format!(
                "www_folder: {} is not a directory: no web pages are deployed (use `disabled` \
                 to say so, or leave it empty for the built-in pages)",
                folder.display()
            )),
            Source::BuiltIn => {
                for (template, page) in PAGES {
                    let vars = Vars { qr: qr.clone() };
                    configure
                        .template(format!("{WEBROOT}/{page}"), template, vars)?
                        .owner("www-data", "www-data")
                        .restarts(&[]);
                }
                publish(
                    configure,
                    BTreeMap::from([(qr.into(), invite_png(config)?)]),
                );
            }
            Source::Markdown(src) => {
                let files = walk(&src)?;
                markdown::check_conflicts(&src, &files)?;
                let mut site = markdown::build(&src, &files, &markdown_vars(config))?;
                site.insert(qr.into(), invite_png(config)?);
                publish(configure, site);
            }
            Source::Folder(folder) => {
                let files = walk(&folder)?;
                publish(configure, files);
            }
        }
        Ok(())
    }
}

/// Declares `site` (relative path to content) under the web root, with the directories
/// it needs, all owned by www-data.
fn publish(configure: &mut Configure<'_>, site: BTreeMap<PathBuf, Vec<u8>>) {
    let mut dirs: Vec<&Path> = site
        .keys()
        .flat_map(|path| path.ancestors().skip(1))
        .filter(|dir| !dir.as_os_str().is_empty())
        .collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        let owner = Owner::new("www-data", "www-data");
        configure.dir(Path::new(WEBROOT).join(dir), owner, 0o755);
    }
    for (relative, content) in site {
        configure
            .file(Path::new(WEBROOT).join(relative), content)
            .owner("www-data", "www-data")
            .restarts(&[]);
    }
}

/// The invite QR code of the relay.
fn invite_png(config: &Config) -> Result<Vec<u8>> {
    qr::png(&qr::invite_link(&config.mail_domain_bare))
}

/// The settings as upstream's website templates name them.
fn markdown_vars(config: &Config) -> markdown::Vars {
    markdown::Vars {
        config: minijinja::context! {
            tls_cert_mode => config.tls.mode.as_str(),
            webdev => false,
            ..minijinja::Value::from_serialize(config)
        },
        username_min_length: config.username_min_length,
        username_max_length: config.username_max_length,
        password_min_length: config.password_min_length,
    }
}

/// The files (with content) under `folder`, by path relative to it. Hidden entries (`.git`,
/// editor files) are left out, except `.well-known`; symbolic links are followed, as a web
/// server would.
fn walk(folder: &Path) -> Result<BTreeMap<PathBuf, Vec<u8>>> {
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
            let meta =
                std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?;
            if meta.is_dir() {
                pending.push(inner);
            } else if meta.is_file() {
                let content =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                files.insert(inner, content);
            }
        }
    }
    Ok(files)
}

register!(Website);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test fails by panicking

    use super::*;

    #[test]
    fn walk_lists_files_and_skips_hidden_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("img/icons")).unwrap();
        std::fs::create_dir_all(dir.path().join(".git")).unwrap();
        std::fs::create_dir_all(dir.path().join(".well-known")).unwrap();
        std::fs::write(dir.path().join("index.html"), "hi").unwrap();
        std::fs::write(dir.path().join("img/icons/a.png"), [0u8, 1, 2]).unwrap();
        std::fs::write(dir.path().join(".git/HEAD"), "x").unwrap();
        std::fs::write(dir.path().join(".well-known/security.txt"), "s").unwrap();
        let files = walk(dir.path()).unwrap();
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
    fn the_folder_decides_the_source_as_upstream() {
        let dir = tempfile::tempdir().unwrap();
        let source = |www_folder: &str| {
            let text =
                format!("[params]\nmail_domain = chat.example.org\nwww_folder = {www_folder}\n");
            let config = Config::parse(&text, &dir.path().join("chatmail.ini"), &|_| None).unwrap();
            Source::of(&config)
        };
        assert_eq!(source(""), Source::BuiltIn);
        assert_eq!(source("disabled"), Source::Disabled);
        assert_eq!(source("www"), Source::Missing(dir.path().join("www")));
        std::fs::create_dir_all(dir.path().join("www/src")).unwrap();
        assert_eq!(source("www"), Source::Folder(dir.path().join("www")));
        std::fs::write(dir.path().join("www/src/index.md"), "# hi").unwrap();
        assert_eq!(source("www"), Source::Markdown(dir.path().join("www/src")));
    }
}
