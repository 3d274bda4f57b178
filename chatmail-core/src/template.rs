//! The template environment: built-in templates embedded in the binary, operator overrides
//! from a directory, minijinja with strict undefined, no auto-escaping, trailing newlines kept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};

use crate::component::Component;

/// All templates of the selected components, by `<component>/<relative path>`.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
    overridden: Vec<(String, PathBuf)>,
}

impl Templates {
    /// Collects the built-in templates of `components`; a file in `overrides` with the same
    /// relative path (`postfix/main.cf.j2`) replaces the built-in one. Every override is
    /// parsed here, so a broken one fails before anything on the target is touched, and so
    /// does an `overrides` directory that does not exist or holds a file that replaces no
    /// template (a typo would otherwise be ignored). Hidden files (`.git`) are skipped.
    pub fn new(components: &[&'static dyn Component], overrides: Option<&Path>) -> Result<Self> {
        let mut sources: BTreeMap<String, Arc<str>> = BTreeMap::new();
        for component in components {
            if let Some(dir) = component.templates() {
                collect(dir, component.name(), &mut sources);
            }
        }
        let mut overridden = Vec::new();
        if let Some(root) = overrides {
            check_overrides(root, &sources)?;
            for name in sources.keys().cloned().collect::<Vec<_>>() {
                let path = root.join(&name);
                if path.is_file() {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading template override {}", path.display()))?;
                    sources.insert(name.clone(), text.into());
                    overridden.push((name, path));
                }
            }
        }
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        for (name, source) in sources {
            let origin = overridden
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, path)| path.display().to_string())
                .unwrap_or_else(|| format!("built-in template {name}"));
            env.add_template_owned(name, source.to_string())
                .map_err(|err| anyhow!("{origin}: {}", describe(&err)))?;
        }
        Ok(Templates { env, overridden })
    }

    /// Renders template `name` with `context`.
    pub fn render(&self, name: &str, context: minijinja::Value) -> Result<String> {
        let origin = self.origin(name);
        let template = self
            .env
            .get_template(name)
            .map_err(|err| anyhow!("{origin}: {}", describe(&err)))?;
        template
            .render(context)
            .map_err(|err| anyhow!("{origin}: {}", describe(&err)))
    }

    /// Templates replaced by an operator override, with the override's path.
    pub fn overridden(&self) -> &[(String, PathBuf)] {
        &self.overridden
    }

    fn origin(&self, name: &str) -> String {
        match self.overridden.iter().find(|(n, _)| n == name) {
            Some((_, path)) => format!("template override {}", path.display()),
            None => format!("template {name}"),
        }
    }
}

/// Fails unless `root` is a directory whose every (non-hidden) file has the relative path of
/// a template in `sources`.
fn check_overrides(root: &Path, sources: &BTreeMap<String, Arc<str>>) -> Result<()> {
    if !root.is_dir() {
        bail!("template overrides {}: no such directory", root.display());
    }
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir)
            .with_context(|| format!("reading template overrides {}", dir.display()))?;
        for entry in entries {
            let path = entry
                .with_context(|| format!("reading template overrides {}", dir.display()))?
                .path();
            if path
                .file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let name = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            if sources.contains_key(&name) {
                continue;
            }
            let component = name.split('/').next().unwrap_or_default();
            let prefix = format!("{component}/");
            let known: Vec<&str> = sources
                .keys()
                .filter_map(|known| known.strip_prefix(&prefix))
                .collect();
            if known.is_empty() {
                bail!(
                    "template override {} replaces nothing: no component {component:?} has templates",
                    path.display()
                );
            }
            bail!(
                "template override {} replaces nothing: {component}'s templates are {}",
                path.display(),
                known.join(", ")
            );
        }
    }
    Ok(())
}

fn collect(
    dir: &'static include_dir::Dir<'static>,
    component: &str,
    out: &mut BTreeMap<String, Arc<str>>,
) {
    for file in dir.files() {
        if let Some(text) = file.contents_utf8() {
            out.insert(
                format!("{component}/{}", file.path().display()),
                text.into(),
            );
        }
    }
    for sub in dir.dirs() {
        collect(sub, component, out);
    }
}

/// A minijinja error as one line: what went wrong and where (`line N`).
fn describe(err: &minijinja::Error) -> String {
    let mut text = match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    };
    if let Some(line) = err.line() {
        text = format!("line {line}: {text}");
    }
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        text.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use include_dir::{Dir, DirEntry, File};

    struct WithTemplates;

    static FILES: [DirEntry<'static>; 2] = [
        DirEntry::File(File::new("main.cf.j2", b"myhostname = {{ host }}\n")),
        DirEntry::File(File::new("static.conf", b"fixed\n")),
    ];
    static DIR: Dir<'static> = Dir::new("", &FILES);

    impl Component for WithTemplates {
        fn name(&self) -> &'static str {
            "demo"
        }
        fn templates(&self) -> Option<&'static Dir<'static>> {
            Some(&DIR)
        }
    }

    #[test]
    fn renders_with_strict_undefined_and_keeps_the_trailing_newline() {
        let templates = Templates::new(&[&WithTemplates], None).unwrap();
        let out = templates
            .render("demo/main.cf.j2", minijinja::context! { host => "a.org" })
            .unwrap();
        assert_eq!(out, "myhostname = a.org\n");
        let err = templates
            .render("demo/main.cf.j2", minijinja::context! {})
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "template demo/main.cf.j2: line 1: undefined value"
        );
    }

    #[test]
    fn overrides_replace_built_ins_and_broken_ones_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("demo")).unwrap();
        std::fs::write(dir.path().join("demo/static.conf"), "operator's\n").unwrap();
        let templates = Templates::new(&[&WithTemplates], Some(dir.path())).unwrap();
        let out = templates
            .render("demo/static.conf", minijinja::context! {})
            .unwrap();
        assert_eq!(out, "operator's\n");
        assert_eq!(templates.overridden().len(), 1);

        let broken = dir.path().join("demo/main.cf.j2");
        std::fs::write(&broken, "ok\n{% if %}\n").unwrap();
        let err = Templates::new(&[&WithTemplates], Some(dir.path())).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("{}: line 2: syntax error", broken.display())),
            "{text}"
        );
    }

    #[test]
    fn a_missing_directory_and_overrides_of_nothing_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = Templates::new(&[&WithTemplates], Some(&missing)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "template overrides {}: no such directory",
                missing.display()
            )
        );

        std::fs::create_dir_all(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join(".git/HEAD"), "ref\n").unwrap();
        std::fs::create_dir(dir.path().join("demo")).unwrap();
        Templates::new(&[&WithTemplates], Some(dir.path())).unwrap();

        let typo = dir.path().join("demo/main.cf");
        std::fs::write(&typo, "x\n").unwrap();
        let err = Templates::new(&[&WithTemplates], Some(dir.path())).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "template override {} replaces nothing: demo's templates are main.cf.j2, static.conf",
                typo.display()
            )
        );
        std::fs::remove_file(&typo).unwrap();
        let elsewhere = dir.path().join("postfx/main.cf.j2");
        std::fs::create_dir(dir.path().join("postfx")).unwrap();
        std::fs::write(&elsewhere, "x\n").unwrap();
        let err = Templates::new(&[&WithTemplates], Some(dir.path())).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "template override {} replaces nothing: no component \"postfx\" has templates",
                elsewhere.display()
            )
        );
    }
}
