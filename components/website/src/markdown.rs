//! A `www_folder` written in Markdown, built as upstream builds its website: each `*.md` page
//! of `src/` becomes HTML inside `src/page-layout.html`, rendered as a Jinja template until it
//! no longer changes (so settings written in the Markdown are filled in too); the other files
//! are copied as they are. The build happens in memory: the operator's folder stays untouched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use minijinja::{Environment, Value, context};
use pulldown_cmark::{Options, Parser, html};

/// The page every Markdown page is placed in, with `{{ markdown_html }}` where it goes.
pub const LAYOUT: &str = "page-layout.html";

/// How often a page is rendered again at most while it still changes.
const MAX_RENDERS: usize = 10;

/// What the pages' templates see besides the page itself.
#[derive(Debug)]
pub struct Vars {
    /// The settings, under upstream's names.
    pub config: Value,
    /// Length limits, as the pages say them.
    pub username_min_length: u32,
    pub username_max_length: u32,
    pub password_min_length: u32,
}

/// The built site from the files of `src` (relative path to content): pages as
/// `<stem>.html`, the layout left out, everything else as it is.
pub fn build(
    src: &Path,
    files: &BTreeMap<PathBuf, Vec<u8>>,
    vars: &Vars,
) -> Result<BTreeMap<PathBuf, Vec<u8>>> {
    let layout = files
        .get(Path::new(LAYOUT))
        .with_context(|| format!("{}: no {LAYOUT} for the Markdown pages", src.display()))?;
    let layout = text(&src.join(LAYOUT), layout)?;
    let mut site = BTreeMap::new();
    for (relative, content) in files {
        if relative == Path::new(LAYOUT) {
            continue;
        }
        if relative.extension().is_some_and(|ext| ext == "md") {
            let path = src.join(relative);
            let page = render_page(layout, text(&path, content)?, relative, vars)
                .with_context(|| format!("building {}", path.display()))?;
            site.insert(relative.with_extension("html"), page.into_bytes());
        } else {
            site.insert(relative.clone(), content.clone());
        }
    }
    Ok(site)
}

/// Fails naming the first file and line of an unresolved merge (`<<<<<<<` up to `>>>>>>>`)
/// in the pages and styles, which would otherwise be published.
pub fn check_conflicts(src: &Path, files: &BTreeMap<PathBuf, Vec<u8>>) -> Result<()> {
    for (relative, content) in files {
        let checked = ["md", "html", "css"];
        if !relative
            .extension()
            .is_some_and(|ext| checked.iter().any(|c| ext == *c))
        {
            continue;
        }
        let content = String::from_utf8_lossy(content);
        let mut start = None;
        for (number, line) in content.lines().enumerate() {
            if line.starts_with("<<<<<<<") {
                start = Some(number + 1);
            } else if let (Some(first), true) = (start, line.starts_with(">>>>>>>")) {
                bail!(
                    "{}:{first}: an unresolved merge conflict; resolve it before deploying",
                    src.join(relative).display()
                );
            }
        }
    }
    Ok(())
}

fn text<'a>(path: &Path, content: &'a [u8]) -> Result<&'a str> {
    std::str::from_utf8(content).with_context(|| format!("{}: not UTF-8 text", path.display()))
}

/// One page: Markdown to HTML, placed in the layout, rendered until stable.
fn render_page(layout: &str, markdown: &str, relative: &Path, vars: &Vars) -> Result<String> {
    let mut markdown_html = String::new();
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    html::push_html(&mut markdown_html, Parser::new_ext(markdown, options));
    let stem = relative
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    let pagename = if relative == Path::new("index.md") {
        "home".to_owned()
    } else {
        stem
    };
    let context = context! {
        config => vars.config.clone(),
        pagename => pagename,
        markdown_html => markdown_html,
        username_min_length => in_words(vars.username_min_length),
        username_max_length => in_words(vars.username_max_length),
        password_min_length => in_words(vars.password_min_length),
    };
    let mut env = Environment::new();
    env.set_keep_trailing_newline(true);
    let mut page = env
        .render_str(layout, context.clone())
        .context("rendering the layout")?;
    for _ in 0..MAX_RENDERS {
        let again = env
            .render_str(&page, context.clone())
            .context("rendering")?;
        if again == page {
            return Ok(page);
        }
        page = again;
    }
    bail!("the page still changes after {MAX_RENDERS} renderings (a template that renders itself?)")
}

/// A count as the pages say it: spelled out up to twelve, in digits up to fifty, else "more".
pub fn in_words(count: u32) -> String {
    const WORDS: [&str; 13] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve",
    ];
    match count {
        0..=12 => WORDS[count as usize].to_owned(),
        13..=50 => count.to_string(),
        _ => "more".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test fails by panicking

    use super::*;

    fn vars() -> Vars {
        Vars {
            config: Value::from_serialize(BTreeMap::from([
                ("mail_domain", "chat.example.org"),
                ("tls_cert_mode", "acme"),
            ])),
            username_min_length: 9,
            username_max_length: 20,
            password_min_length: 60,
        }
    }

    fn files(entries: &[(&str, &str)]) -> BTreeMap<PathBuf, Vec<u8>> {
        entries
            .iter()
            .map(|(path, content)| (PathBuf::from(path), content.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn pages_are_placed_in_the_layout_with_settings_filled_in() {
        let src = files(&[
            (
                LAYOUT,
                "<title>{{ pagename }}</title>\n<main>{{ markdown_html }}</main>\n",
            ),
            (
                "index.md",
                "# Welcome to {{ config.mail_domain }}\n\nNames of {{ username_min_length }} \
                 to {{ username_max_length }} letters, passwords of {{ password_min_length }}.\n",
            ),
            ("privacy.md", "| a | b |\n|---|---|\n| 1 | 2 |\n"),
            ("logo.svg", "<svg/>"),
        ]);
        let site = build(Path::new("/www/src"), &src, &vars()).unwrap();
        let names: Vec<&Path> = site.keys().map(PathBuf::as_path).collect();
        assert_eq!(
            names,
            [
                Path::new("index.html"),
                Path::new("logo.svg"),
                Path::new("privacy.html")
            ]
        );
        let index = String::from_utf8(site[Path::new("index.html")].clone()).unwrap();
        assert_eq!(
            index,
            "<title>home</title>\n<main><h1>Welcome to chat.example.org</h1>\n\
             <p>Names of nine to 20 letters, passwords of more.</p>\n</main>\n"
        );
        let privacy = String::from_utf8(site[Path::new("privacy.html")].clone()).unwrap();
        assert!(privacy.starts_with("<title>privacy</title>"), "{privacy}");
        assert!(privacy.contains("<table>"), "{privacy}");
        assert_eq!(site[Path::new("logo.svg")], b"<svg/>");
    }

    #[test]
    fn a_missing_layout_and_a_broken_template_are_named() {
        let err = build(
            Path::new("/www/src"),
            &files(&[("index.md", "hi")]),
            &vars(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "/www/src: no page-layout.html for the Markdown pages"
        );
        let broken = files(&[(LAYOUT, "{{ markdown_html }}"), ("a/b.md", "{% if %}")]);
        let err = build(Path::new("/www/src"), &broken, &vars()).unwrap_err();
        assert_eq!(err.to_string(), "building /www/src/a/b.md");
    }

    #[test]
    fn merge_conflicts_are_refused_with_file_and_line() {
        let src = files(&[
            ("a.png", "<<<<<<<\n>>>>>>>\n"),
            (
                "index.md",
                "one\n<<<<<<< HEAD\nours\n=======\ntheirs\n>>>>>>> b\n",
            ),
        ]);
        let err = check_conflicts(Path::new("/www/src"), &src).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/www/src/index.md:2: an unresolved merge conflict; resolve it before deploying"
        );
        check_conflicts(Path::new("/www/src"), &files(&[("index.md", "<<<<<<<\n")])).unwrap();
    }

    #[test]
    fn counts_in_words() {
        assert_eq!(in_words(0), "zero");
        assert_eq!(in_words(12), "twelve");
        assert_eq!(in_words(13), "13");
        assert_eq!(in_words(50), "50");
        assert_eq!(in_words(51), "more");
    }
}
