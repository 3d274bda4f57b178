//! The `Component` trait, registration through `inventory`, and the ordered registry.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};

use crate::config::Config;
use crate::config::schema::{self, Key};
use crate::plan::{Activate, Configure, Install};

/// One service of the relay (postfix, dovecot, ...), implemented in its own crate.
///
/// Each phase method only declares the wanted state into its context; the engine compares it
/// with the target and acts. `install` cannot see the deployment settings, so whatever it
/// declares is the same for every relay (and can be baked into a container image).
pub trait Component: Sync + 'static {
    /// A stable, unique, lower-case name (`postfix`), used by `--only` and `--skip`.
    fn name(&self) -> &'static str;

    /// Components that must run before this one in every phase; [`AFTER_ALL`] puts it after
    /// every other component (for records of a finished deployment).
    fn after(&self) -> &'static [&'static str] {
        &[]
    }

    /// Whether the deployment uses this component (e.g. no OpenDKIM on IPv4 relays).
    /// Install ignores it: an image serves every deployment.
    fn enabled(&self, _config: &Config) -> bool {
        true
    }

    /// Settings of its own that this component reads from `chatmail.ini`'s `[params]`
    /// (a component outside the built-in schema). Each name starts with the component's name
    /// (`-` written `_`) and an `_`, e.g. `blackbox_port` for `blackbox`; the keys are
    /// overridable by `CHATMAIL_<KEY>`, shown by `cmdeploy config`, checked against their
    /// kind before anything is touched, and read with
    /// [`Config::extension`](crate::config::Config::extension).
    fn settings(&self) -> &'static [Key] {
        &[]
    }

    /// The component's built-in templates, embedded at build time (`include_dir!`).
    fn templates(&self) -> Option<&'static include_dir::Dir<'static>> {
        None
    }

    /// Declares packages, users, directories, downloads and deployment-independent files.
    fn install(&self, _install: &mut Install<'_>) -> Result<()> {
        Ok(())
    }

    /// Declares configuration files, generated secrets, change commands and validators.
    fn configure(&self, _configure: &mut Configure<'_>) -> Result<()> {
        Ok(())
    }

    /// Declares the services and the state they should be in.
    fn activate(&self, _activate: &mut Activate<'_>) -> Result<()> {
        Ok(())
    }
}

/// The `after` entry meaning "after every other component".
pub const AFTER_ALL: &str = "*";

/// A component submitted to the registry; created by [`register!`](crate::register).
#[derive(Clone, Copy)]
pub struct Registration(
    /// The registered component, a `static` of its crate.
    pub &'static dyn Component,
);

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Registration({})", self.0.name())
    }
}

inventory::collect!(Registration);

/// Adds a component to the registry of every binary that links its crate.
///
/// ```
/// struct Postfix;
/// impl chatmail_core::Component for Postfix {
///     fn name(&self) -> &'static str {
///         "postfix"
///     }
/// }
/// chatmail_core::register!(Postfix);
/// ```
#[macro_export]
macro_rules! register {
    ($component:expr) => {
        $crate::inventory::submit! { $crate::Registration(&$component) }
    };
}

/// All registered components in a deterministic order: topological by `after`, ties by name.
#[derive(Clone)]
pub struct Registry {
    ordered: Vec<&'static dyn Component>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Registry {
    /// The registry of everything linked into this binary.
    pub fn linked() -> Result<Registry> {
        Registry::from_components(
            inventory::iter::<Registration>
                .into_iter()
                .map(|r| r.0)
                .collect(),
        )
    }

    /// Orders `components`; duplicate names, unknown `after` names and cycles are errors.
    pub fn from_components(components: Vec<&'static dyn Component>) -> Result<Registry> {
        let mut by_name: BTreeMap<&'static str, &'static dyn Component> = BTreeMap::new();
        for component in components {
            let name = component.name();
            if by_name.insert(name, component).is_some() {
                bail!("two components are registered under the name {name:?}");
            }
        }
        for (name, component) in &by_name {
            for dep in component.after().iter().filter(|dep| **dep != AFTER_ALL) {
                if !by_name.contains_key(dep) {
                    bail!("component {name:?} wants to run after {dep:?}, which is not registered");
                }
            }
            check_settings(name, component.settings())?;
        }
        // Kahn's algorithm; the BTreeSet hands out the alphabetically first ready component.
        let last: BTreeSet<&str> = by_name
            .iter()
            .filter(|(_, c)| c.after().contains(&AFTER_ALL))
            .map(|(name, _)| *name)
            .collect();
        let mut waiting: BTreeMap<&str, BTreeSet<&str>> = by_name
            .iter()
            .map(|(name, c)| {
                let deps = match last.contains(name) {
                    true => by_name
                        .keys()
                        .copied()
                        .filter(|n| !last.contains(n))
                        .collect(),
                    false => c.after().iter().copied().collect(),
                };
                (*name, deps)
            })
            .collect();
        let mut ready: BTreeSet<&str> = waiting
            .iter()
            .filter(|(_, deps)| deps.is_empty())
            .map(|(name, _)| *name)
            .collect();
        let mut ordered = Vec::with_capacity(by_name.len());
        while let Some(name) = ready.pop_first() {
            waiting.remove(name);
            ordered.push(by_name[name]);
            for (other, deps) in &mut waiting {
                if deps.remove(name) && deps.is_empty() {
                    ready.insert(other);
                }
            }
        }
        if !waiting.is_empty() {
            let names: Vec<&str> = waiting.keys().copied().collect();
            bail!(
                "the `after` lists of these components form a cycle: {}",
                names.join(", ")
            );
        }
        Ok(Registry { ordered })
    }

    /// The settings keys every registered component declares beyond the built-in schema, in
    /// registry order: what [`Config::parse_extended`](crate::config::Config::parse_extended)
    /// needs to read them.
    pub fn setting_keys(&self) -> Vec<&'static Key> {
        self.ordered.iter().flat_map(|c| c.settings()).collect()
    }

    /// Component names in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.ordered.iter().map(|c| c.name()).collect()
    }

    /// Looks a component up by name.
    pub fn get(&self, name: &str) -> Option<&'static dyn Component> {
        self.ordered.iter().copied().find(|c| c.name() == name)
    }

    /// Keeps the components named in `only` (all if empty) minus those in `skip`;
    /// unknown names are an error that lists the known ones.
    pub fn select(&self, only: &[String], skip: &[String]) -> Result<Vec<&'static dyn Component>> {
        for name in only.iter().chain(skip) {
            if self.get(name).is_none() {
                bail!(
                    "unknown component {name:?}; known components: {}",
                    self.names().join(", ")
                );
            }
        }
        Ok(self
            .ordered
            .iter()
            .copied()
            .filter(|c| only.is_empty() || only.iter().any(|n| n == c.name()))
            .filter(|c| !skip.iter().any(|n| n == c.name()))
            .collect())
    }
}

/// A component's own settings carry its name as prefix, so they can clash neither with
/// another component's nor (given unique names) with each other; built-in keys are refused.
fn check_settings(component: &str, keys: &[Key]) -> Result<()> {
    let prefix = format!("{}_", component.replace('-', "_"));
    for key in keys {
        if schema::key(key.name).is_some() {
            bail!(
                "component {component:?} declares the setting {:?}, which is a built-in setting",
                key.name
            );
        }
        if !key.name.starts_with(&prefix) || key.name.len() == prefix.len() {
            bail!(
                "component {component:?} declares the setting {:?}; its settings must be named {prefix}<something>",
                key.name
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        name: &'static str,
        after: &'static [&'static str],
        settings: &'static [Key],
    }

    impl Component for Fake {
        fn name(&self) -> &'static str {
            self.name
        }
        fn after(&self) -> &'static [&'static str] {
            self.after
        }
        fn settings(&self) -> &'static [Key] {
            self.settings
        }
    }

    fn fake(name: &'static str, after: &'static [&'static str]) -> &'static dyn Component {
        with_settings(name, after, &[])
    }

    fn with_settings(
        name: &'static str,
        after: &'static [&'static str],
        settings: &'static [Key],
    ) -> &'static dyn Component {
        Box::leak(Box::new(Fake {
            name,
            after,
            settings,
        }))
    }

    const fn key(name: &'static str) -> Key {
        Key {
            name,
            kind: schema::Kind::Port,
            default: schema::DefaultValue::Value("9115"),
            group: schema::Group::Deployment,
            help: "A port.",
        }
    }

    #[test]
    fn component_settings_carry_the_component_name_and_leave_built_ins_alone() {
        static GOOD: [Key; 1] = [key("node_probe_port")];
        static FOREIGN: [Key; 1] = [key("postfix_port")];
        static BUILT_IN: [Key; 1] = [key("max_message_size")];
        let registry = Registry::from_components(vec![
            with_settings("node-probe", &[], &GOOD),
            fake("base", &[]),
        ])
        .unwrap();
        let names: Vec<&str> = registry.setting_keys().iter().map(|k| k.name).collect();
        assert_eq!(names, ["node_probe_port"]);
        let err =
            Registry::from_components(vec![with_settings("probe", &[], &FOREIGN)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "component \"probe\" declares the setting \"postfix_port\"; its settings must be named probe_<something>"
        );
        let err =
            Registry::from_components(vec![with_settings("max", &[], &BUILT_IN)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "component \"max\" declares the setting \"max_message_size\", which is a built-in setting"
        );
    }

    #[test]
    fn orders_by_after_then_by_name() {
        let registry = Registry::from_components(vec![
            fake("postfix", &["dovecot", "opendkim"]),
            fake("zeta", &[]),
            fake("dovecot", &["base"]),
            fake("opendkim", &["base"]),
            fake("base", &[]),
            fake("alpha", &[]),
        ])
        .unwrap();
        assert_eq!(
            registry.names(),
            ["alpha", "base", "dovecot", "opendkim", "postfix", "zeta"]
        );
    }

    #[test]
    fn after_all_comes_after_every_other_component() {
        let registry = Registry::from_components(vec![
            fake("stamp", &[AFTER_ALL]),
            fake("zeta", &["base"]),
            fake("base", &[]),
        ])
        .unwrap();
        assert_eq!(registry.names(), ["base", "zeta", "stamp"]);
    }

    #[test]
    fn duplicates_unknown_names_and_cycles_are_errors() {
        let err = Registry::from_components(vec![fake("a", &[]), fake("a", &[])]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "two components are registered under the name \"a\""
        );
        let err = Registry::from_components(vec![fake("a", &["nope"])]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "component \"a\" wants to run after \"nope\", which is not registered"
        );
        let err = Registry::from_components(vec![
            fake("a", &["c"]),
            fake("b", &["a"]),
            fake("c", &["b"]),
            fake("d", &[]),
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the `after` lists of these components form a cycle: a, b, c"
        );
    }

    #[test]
    fn select_honours_only_and_skip_and_rejects_unknown_names() {
        let registry =
            Registry::from_components(vec![fake("a", &[]), fake("b", &["a"]), fake("c", &[])])
                .unwrap();
        let names = |v: Vec<&'static dyn Component>| v.iter().map(|c| c.name()).collect::<Vec<_>>();
        assert_eq!(names(registry.select(&[], &[]).unwrap()), ["a", "b", "c"]);
        assert_eq!(names(registry.select(&["b".into()], &[]).unwrap()), ["b"]);
        assert_eq!(
            names(registry.select(&[], &["a".into()]).unwrap()),
            ["b", "c"]
        );
        let Err(err) = registry.select(&["postfx".into()], &[]) else {
            panic!("an unknown name must be refused");
        };
        assert_eq!(
            err.to_string(),
            "unknown component \"postfx\"; known components: a, b, c"
        );
    }
}
