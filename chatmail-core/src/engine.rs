//! The engine: turns the components' declarations into action on the target, phase by phase,
//! changing only what differs and restarting only what a change touched.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::accounts::Accounts;
use crate::component::Component;
use crate::config::Config;
use crate::facts::Facts;
use crate::files::{self, Existing, Meta};
use crate::generate::{self, Found, Step};
use crate::manifest::{Entry, Item, Manifest};
use crate::plan::{
    Activate, ActivatePlan, Attempt, Configure, ConfigurePlan, Deb, Dir, Download, File, Generate,
    Install, InstallPlan, LineRemoval, Move, OnChange, Owner, Restarts, Service, Validator,
};
use crate::report::{Action, Event, Kind, Report};
use crate::stage::{self, Stage};
use crate::state::{Owed, Pending};
use crate::systemd::Verb;
use crate::target::{Target, shell_words, tail};
use crate::template::Templates;
use crate::{download, dpkg, ports, stale, systemd};

/// The phases of a run; always executed in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phases {
    /// Packages, users, directories, binaries and deployment-independent files.
    pub install: bool,
    /// Configuration files, secrets, change commands and validators.
    pub configure: bool,
    /// Services: daemon-reload, enable, start, and the restarts owed.
    pub activate: bool,
}

impl Phases {
    /// All three phases, the default of `cmdeploy run`.
    pub const ALL: Phases = Phases {
        install: true,
        configure: true,
        activate: true,
    };

    /// The install phase alone.
    pub const INSTALL: Phases = Phases {
        install: true,
        configure: false,
        activate: false,
    };

    /// Parses `install,configure,activate` (any subset, any order, at least one).
    pub fn parse(text: &str) -> Result<Phases> {
        let mut phases = Phases {
            install: false,
            configure: false,
            activate: false,
        };
        for name in text.split(',').map(str::trim) {
            match name {
                "install" => phases.install = true,
                "configure" => phases.configure = true,
                "activate" => phases.activate = true,
                other => bail!("unknown phase {other:?}; phases are install, configure, activate"),
            }
        }
        Ok(phases)
    }

    /// Whether these phases read the deployment settings.
    pub fn need_config(self) -> bool {
        self.configure || self.activate
    }
}

/// The form [`Phases::parse`] reads: `install,configure,activate` or a subset.
impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = [
            (self.install, "install"),
            (self.configure, "configure"),
            (self.activate, "activate"),
        ];
        let chosen: Vec<&str> = names
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect();
        f.write_str(&chosen.join(","))
    }
}

/// A component with everything it declared.
#[derive(Debug)]
pub struct Planned {
    /// The component's name.
    pub component: &'static str,
    /// What its install phase declared (always planned: it needs no settings).
    pub install: InstallPlan,
    /// `None` when the deployment does not use the component, or no config was given.
    pub configure: Option<ConfigurePlan>,
    /// `None` under the same conditions as `configure`.
    pub activate: Option<ActivatePlan>,
}

/// Collects every declaration of `components` up front, so that a broken template or a bad
/// setting fails before the target is touched.
pub fn plan(
    components: &[&'static dyn Component],
    config: Option<&Config>,
    facts: &Facts,
    templates: &Templates,
) -> Result<Vec<Planned>> {
    components
        .iter()
        .map(|component| {
            let name = component.name();
            let mut install = Install::new(facts, templates, name);
            component
                .install(&mut install)
                .with_context(|| format!("{name}: planning install"))?;
            let (configure, activate) = match config.filter(|c| component.enabled(c)) {
                None => (None, None),
                Some(config) => {
                    let mut configure = Configure::new(config, facts, templates, name);
                    component
                        .configure(&mut configure)
                        .with_context(|| format!("{name}: planning configure"))?;
                    let mut activate = Activate::new(config, facts);
                    component
                        .activate(&mut activate)
                        .with_context(|| format!("{name}: planning activate"))?;
                    (Some(configure.plan), Some(activate.plan))
                }
            };
            Ok(Planned {
                component: name,
                install: install.plan,
                configure,
                activate,
            })
        })
        .collect()
}

/// Executes plans on a target.
#[derive(Debug)]
pub struct Engine<'t> {
    target: &'t Target,
    facts: &'t Facts,
    dry_run: bool,
    /// Apply every pending package upgrade during install (`cmdeploy run --upgrade`).
    upgrade: bool,
    pending: Pending,
    accounts: Accounts,
    /// Components to restart when a given file changes (from their `watch` declarations).
    watchers: BTreeMap<PathBuf, Vec<Owed>>,
    /// In a dry run, what a move would have put in place: new path to the old one, where the
    /// directory still is when later items are compared.
    moved: BTreeMap<PathBuf, PathBuf>,
    /// What the run changed so far (or, in a dry run, would change).
    pub report: Report,
    observer: Observer<'t>,
}

/// The front end's view of a run as it goes.
struct Observer<'t>(Box<dyn FnMut(Event<'_>) + 't>);

impl std::fmt::Debug for Observer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

impl<'t> Engine<'t> {
    /// An engine for `target`, loading what is still owed there; `dry_run` changes nothing
    /// and reports what a run would do.
    pub fn new(target: &'t Target, facts: &'t Facts, dry_run: bool) -> Result<Self> {
        Ok(Engine {
            target,
            facts,
            dry_run,
            upgrade: false,
            pending: Pending::load(target, !dry_run)?,
            accounts: Accounts::read(target)?,
            watchers: BTreeMap::new(),
            moved: BTreeMap::new(),
            report: Report::default(),
            observer: Observer(Box::new(|_| {})),
        })
    }

    /// Calls `observer` with every action, warning and notice as the run goes (a front end
    /// prints them); without one the run is silent.
    pub fn observe(&mut self, observer: impl FnMut(Event<'_>) + 't) {
        self.observer = Observer(Box::new(observer));
    }

    /// Makes install apply every pending package upgrade (a dry run lists them); activation
    /// then restarts the services that run files an upgrade replaced.
    pub fn upgrade(&mut self, upgrade: bool) {
        self.upgrade = upgrade;
    }

    /// Records an action and tells the observer.
    fn record(&mut self, action: Action) {
        let action = self.report.push(action);
        (self.observer.0)(Event::Action(action));
    }

    /// Records a warning and tells the observer.
    fn warn(&mut self, component: &str, text: &str) {
        let warning = self
            .report
            .push_warning(format!("{component}: warning: {text}"));
        (self.observer.0)(Event::Warning(warning));
    }

    /// Runs the chosen phases over all plans.
    pub fn run(&mut self, plans: &[Planned], phases: Phases) -> Result<()> {
        if phases.configure {
            self.check_required(plans)?;
            self.check_moves(plans)?;
        }
        if phases.activate && self.facts.systemd {
            check_addresses(plans)?;
            if !self.facts.container {
                check_ports(plans)?;
            }
        }
        if !self.dry_run {
            self.clean_leftovers(plans)?;
        }
        self.watchers.clear();
        for planned in plans {
            for path in planned.configure.iter().flat_map(|c| &c.watches) {
                let owed = Owed::Component(planned.component.to_owned());
                self.watchers.entry(path.clone()).or_default().push(owed);
            }
        }
        // What earlier runs managed and this one no longer declares: plain files go in
        // configure, units (and their files) in activate, once stopped.
        let manifest = Manifest::load(self.target)?;
        let declared = Manifest::declared(plans);
        let orphans = match phases.need_config() {
            true => manifest.orphans(plans, &declared),
            false => Vec::new(),
        };
        let (activation_orphans, file_orphans): (Vec<Entry>, Vec<Entry>) =
            orphans.into_iter().partition(|(_, item)| match item {
                Item::Unit(_) => true,
                Item::File(path) => is_unit_file(path),
            });
        if phases.install {
            self.install(plans)?;
        }
        if phases.configure {
            for planned in plans {
                for relocation in planned.configure.iter().flat_map(|c| &c.moves) {
                    self.relocate(planned.component, relocation)
                        .with_context(|| format!("{}: configure failed", planned.component))?;
                }
            }
            self.secrets(plans)?;
            for planned in plans {
                if let Some(configure) = &planned.configure {
                    self.configure(planned.component, configure)
                        .with_context(|| format!("{}: configure failed", planned.component))?;
                }
            }
            for (component, item) in &file_orphans {
                if let Item::File(path) = item {
                    let owed = vec![Owed::Component(component.clone())];
                    self.orphan_file(component, path, owed)?;
                }
            }
        }
        if phases.activate {
            self.activate(plans, &activation_orphans)?;
        }
        if phases.need_config() && !self.dry_run {
            let mut kept = Vec::new();
            if !phases.configure {
                kept.extend(file_orphans);
            }
            if !phases.activate {
                kept.extend(activation_orphans);
            }
            let updated = manifest.updated(plans, &declared, &kept);
            updated.save(self.target, &manifest)?;
        }
        Ok(())
    }

    /// Removes a file that an earlier run managed and this one no longer declares.
    fn orphan_file(&mut self, component: &str, path: &Path, owed: Vec<Owed>) -> Result<()> {
        let full = self.target.path(path);
        if std::fs::symlink_metadata(&full).is_err() {
            return Ok(());
        }
        let what = format!("remove {} (no longer declared)", path.display());
        let action = Action::new(component, Kind::Remove(path.to_owned()), what);
        self.change(owed, action, || files::remove(&full).map(drop))
    }

    /// Removes what an interrupted run left: staged copies, and the temporary files of atomic
    /// writes and generators (twins) beside the declared files and secrets and the engine's
    /// own state.
    fn clean_leftovers(&mut self, plans: &[Planned]) -> Result<()> {
        stage::clean(self.target)?;
        let declared = plans.iter().flat_map(|p| {
            let install = p.install.files.iter().chain(&p.install.apt_files);
            let files = install.chain(p.configure.iter().flat_map(|c| &c.files));
            let secrets = p.configure.iter().flat_map(|c| &c.generates);
            let files = files.map(|f| f.path.as_path());
            files.chain(secrets.flat_map(|g| g.creates.iter().map(PathBuf::as_path)))
        });
        let state = Path::new(crate::state::PENDING_PATH).parent();
        let dirs: BTreeSet<&Path> = declared.filter_map(Path::parent).chain(state).collect();
        for dir in dirs {
            for temp in files::leftovers(&self.target.path(dir))? {
                let path = dir.join(temp.file_name().unwrap_or_default());
                let what = format!("remove {} (left by an interrupted run)", path.display());
                let action = Action::new("cmdeploy", Kind::Remove(path), what);
                self.change(vec![], action, || files::remove(&temp).map(drop))?;
            }
        }
        Ok(())
    }

    /// Fails, before anything is changed, when a file the deployment needs is missing.
    fn check_required(&self, plans: &[Planned]) -> Result<()> {
        for planned in plans {
            for required in planned.configure.iter().flat_map(|c| &c.required) {
                if !self.target.path(&required.path).exists() {
                    bail!(
                        "{}: {} not found on the target ({})",
                        planned.component,
                        required.path.display(),
                        required.why
                    );
                }
            }
        }
        Ok(())
    }

    /// Fails, before anything is changed, when both ends of a move exist: which one holds the
    /// data to keep is the operator's call.
    fn check_moves(&self, plans: &[Planned]) -> Result<()> {
        for planned in plans {
            for relocation in planned.configure.iter().flat_map(|c| &c.moves) {
                if self.exists(&relocation.from) && self.exists(&relocation.to) {
                    bail!(
                        "{}: both {} (where an earlier release kept it) and {} (where it \
                         belongs now) exist; keep one of them (move what the other holds into \
                         it, then remove the other) and run again; nothing was changed",
                        planned.component,
                        relocation.from.display(),
                        relocation.to.display()
                    );
                }
            }
        }
        Ok(())
    }

    /// Whether anything (a file, a directory, a link) is at `path` on the target.
    fn exists(&self, path: &Path) -> bool {
        std::fs::symlink_metadata(self.target.path(path)).is_ok()
    }

    /// Moves what an earlier release left at `from` to `to` while only `from` exists: the
    /// running units writing into it stopped first (owed their start), then one rename, which
    /// keeps owners, modes and content.
    fn relocate(&mut self, name: &str, relocation: &Move) -> Result<()> {
        if !self.exists(&relocation.from) || self.exists(&relocation.to) {
            return Ok(());
        }
        let (from, to) = (&relocation.from, &relocation.to);
        if self.facts.systemd {
            let states = systemd::states(self.target, &relocation.quiesce)?;
            let running: Vec<String> = relocation
                .quiesce
                .iter()
                .filter(|unit| states.get(*unit).is_some_and(|state| state.active))
                .cloned()
                .collect();
            if !running.is_empty() {
                self.pending.add(running.iter().cloned().map(Owed::Unit))?;
                for unit in &running {
                    let what = format!("stop {unit} (to move {})", from.display());
                    self.record(Action::new(name, Kind::Unit(Verb::Stop), what));
                }
                if !self.dry_run {
                    systemd::act(self.target, Verb::Stop, &running)?;
                }
            }
        }
        let what = format!("move {} to {}", from.display(), to.display());
        let kind = Kind::Move {
            from: from.clone(),
            to: to.clone(),
        };
        let (old, new) = (self.target.path(from), self.target.path(to));
        self.change(vec![], Action::new(name, kind, what), || {
            if let Some(parent) = new.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            std::fs::rename(&old, &new)
                .with_context(|| format!("renaming {} to {}", old.display(), new.display()))
        })?;
        if self.dry_run {
            self.moved.insert(to.clone(), from.clone());
        }
        Ok(())
    }

    /// Records an action and, unless this is a dry run, notes what it owes activation
    /// (before acting, so an interrupted run still restarts) and performs it.
    fn change(
        &mut self,
        owed: Vec<Owed>,
        action: Action,
        apply: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        // What a change owes is on disk before the change is announced or made (a dry run
        // keeps it in memory only, so that its activation shows the restarts it would do).
        self.pending.add(owed)?;
        self.record(action);
        if !self.dry_run {
            apply()?;
        }
        Ok(())
    }

    fn install(&mut self, plans: &[Planned]) -> Result<()> {
        // Line removals first: an obsolete apt source must go before `apt-get update`.
        for planned in plans {
            for edit in &planned.install.line_removals {
                self.line_removal(planned.component, edit)
                    .with_context(|| format!("{}: install failed", planned.component))?;
            }
        }
        self.install_packages(plans)?;
        for planned in plans {
            self.install_component(planned.component, &planned.install)
                .with_context(|| format!("{}: install failed", planned.component))?;
        }
        Ok(())
    }

    /// The package part of install alone: apt's settings written, obsolete packages removed,
    /// missing ones (and foreign builds to replace) installed in one batch, then the pinned
    /// `.deb` files. An image's first layer runs just this, so that it changes only when the
    /// package lists do.
    pub fn install_packages(&mut self, plans: &[Planned]) -> Result<()> {
        for planned in plans {
            for warning in &planned.install.warnings {
                self.warn(planned.component, warning);
            }
            self.files(planned.component, &planned.install.apt_files, &[], &[])
                .with_context(|| format!("{}: install failed", planned.component))?;
        }
        self.remove_packages(plans)?;
        let installed = dpkg::installed_versions(self.target)?;
        let (missing, wanting) = package_batch(plans, |plan| {
            plan.packages
                .iter()
                .filter(|p| match installed.get(*p) {
                    None => true,
                    Some(version) => plan
                        .foreign_builds
                        .iter()
                        .any(|f| f.package == **p && version.contains(&f.marker)),
                })
                .collect()
        });
        if !missing.is_empty() {
            self.record_packages("install", &wanting);
            self.pending.add(
                wanting
                    .iter()
                    .map(|(component, _)| Owed::Component((*component).to_owned())),
            )?;
            if !self.dry_run {
                dpkg::install(self.target, &missing)?;
                self.accounts = Accounts::read(self.target)?;
            }
        }
        for planned in plans {
            let owed = vec![Owed::Component(planned.component.to_owned())];
            self.debs(planned.component, &planned.install.debs, owed)
                .with_context(|| format!("{}: install failed", planned.component))?;
        }
        if self.upgrade {
            self.upgrade_packages()?;
        }
        Ok(())
    }

    /// `--upgrade`: the pending upgrades, one action each, applied in one `apt-get upgrade`.
    /// A dry run lists them against fresh package lists only if a real run fetched them.
    fn upgrade_packages(&mut self) -> Result<()> {
        let upgrades = dpkg::upgradable(self.target, !self.dry_run)?;
        if upgrades.is_empty() {
            (self.observer.0)(Event::Notice("upgrade: every package is up to date"));
            return Ok(());
        }
        for upgrade in &upgrades {
            self.record(Action::new(
                "apt",
                Kind::Packages,
                format!("upgrade {upgrade}"),
            ));
        }
        if !self.dry_run {
            dpkg::upgrade(self.target)?;
        }
        Ok(())
    }

    /// Gives every declared runtime volume its owner and mode (a fresh volume is root's):
    /// what systemd's `RuntimeDirectory=` does on a host, done by a container's entrypoint.
    pub fn prepare_volumes(&mut self, plans: &[Planned]) -> Result<()> {
        for planned in plans {
            for volume in planned.activate.iter().flat_map(|a| &a.volumes) {
                if let Some((owner, mode)) = &volume.owner {
                    let dir = Dir {
                        path: volume.path.clone(),
                        owner: owner.clone(),
                        mode: *mode,
                    };
                    self.dir(planned.component, &dir, &[])?;
                }
            }
        }
        Ok(())
    }

    /// Removes (then purges) the obsolete packages that are on the target, one batch each.
    fn remove_packages(&mut self, plans: &[Planned]) -> Result<()> {
        for planned in plans {
            for removal in &planned.install.remove_packages {
                if let Some(other) = plans
                    .iter()
                    .find(|p| p.install.packages.contains(&removal.name))
                {
                    bail!(
                        "{}: package {} is to be removed, but {} installs it",
                        planned.component,
                        removal.name,
                        other.component
                    );
                }
            }
        }
        let states = dpkg::packages(self.target)?;
        for purge in [false, true] {
            let (batch, wanting) = package_batch(plans, |plan| {
                plan.remove_packages
                    .iter()
                    .filter(|r| r.purge == purge)
                    .filter(|r| match states.get(&r.name).map(|p| p.state.as_str()) {
                        None => false,
                        Some("config-files") => purge,
                        Some(_) => true,
                    })
                    .map(|r| &r.name)
                    .collect()
            });
            if batch.is_empty() {
                continue;
            }
            self.record_packages(if purge { "purge" } else { "remove" }, &wanting);
            if !self.dry_run {
                dpkg::remove(self.target, &batch, purge)?;
            }
        }
        Ok(())
    }

    /// Reports `<verb> packages ...` for each component of a package batch.
    fn record_packages(&mut self, verb: &str, wanting: &[(&'static str, Vec<&String>)]) {
        for (component, packages) in wanting {
            let names: Vec<&str> = packages.iter().map(|p| p.as_str()).collect();
            let what = format!("{verb} packages {}", names.join(" "));
            self.record(Action::new(component, Kind::Packages, what));
        }
    }

    /// Deletes a line from an existing file, keeping its owner and mode.
    fn line_removal(&mut self, name: &str, edit: &LineRemoval) -> Result<()> {
        let path = self.target.path(&edit.path);
        let Existing::File { content, meta } = Existing::read(&path)? else {
            return Ok(());
        };
        let Some(kept) = files::without_line(&content, &edit.line) else {
            return Ok(());
        };
        let what = format!("remove a line from {}", edit.path.display());
        let diff = files::diff(&edit.path, Some(&content), &kept);
        let action = Action::new(name, Kind::File, what).with_diff(Some(diff));
        self.change(vec![], action, || files::write_atomic(&path, &kept, meta))
    }

    fn install_component(&mut self, name: &str, plan: &InstallPlan) -> Result<()> {
        let owed = || vec![Owed::Component(name.to_owned())];
        for user in &plan.users {
            let created = self.accounts.uid(&user.name).is_err();
            for command in self.accounts.missing(user) {
                let target = self.target;
                let action = Action::new(name, Kind::Run, format!("run {}", shell_words(&command)));
                self.change(owed(), action, || target.run(&command, &[]).map(drop))?;
            }
            self.accounts = Accounts::read(self.target)?;
            if created {
                let home = Dir {
                    path: user.home.clone(),
                    owner: Owner::new(&user.name, &user.group),
                    mode: 0o755,
                };
                self.dir(name, &home, &owed())?;
            }
        }
        for dir in &plan.dirs {
            self.dir(name, dir, &owed())?;
        }
        for download in &plan.downloads {
            self.download(name, download, owed())?;
        }
        self.files(name, &plan.files, &[], &[])?;
        for path in &plan.removals {
            self.removal(name, path, owed())?;
        }
        Ok(())
    }

    /// Fetches `download` unless the target already has it, verified by its checksum.
    fn download(&mut self, name: &str, download: &Download, owed: Vec<Owed>) -> Result<()> {
        let dest = self.target.path(&download.dest);
        if !download::needed(&dest, download)? {
            return Ok(());
        }
        let what = format!(
            "download {} to {}",
            download.source,
            download.dest.display()
        );
        let meta = self.meta(&Owner::root(), download.mode)?;
        // Fetched before anything is recorded: a download that fails changes nothing.
        let content = match self.dry_run {
            true => Vec::new(),
            false => download::fetch(download)?,
        };
        let action = Action::new(name, Kind::File, what);
        self.change(owed, action, || {
            download::install(&dest, download, &content, meta)
        })
    }

    /// Installs the pinned `.deb` files whose package is not at their version, in one apt run
    /// that also brings in their dependencies.
    fn debs(&mut self, name: &str, debs: &[Deb], owed: Vec<Owed>) -> Result<()> {
        let versions = dpkg::installed_versions(self.target)?;
        let stale: Vec<&Deb> = debs
            .iter()
            .filter(|deb| versions.get(&deb.package) != Some(&deb.version))
            .collect();
        if stale.is_empty() {
            return Ok(());
        }
        for deb in &stale {
            self.download(name, &deb.file, owed.clone())?;
        }
        let files: Vec<String> = stale
            .iter()
            .map(|deb| deb.file.dest.display().to_string())
            .collect();
        let what = stale
            .iter()
            .map(|deb| format!("{} {}", deb.package, deb.version))
            .collect::<Vec<_>>()
            .join(", ");
        let target = self.target;
        let action = Action::new(
            name,
            Kind::Packages,
            format!("install {what} from .deb files"),
        );
        self.change(owed, action, || dpkg::install(target, &files))?;
        if !self.dry_run {
            self.accounts = Accounts::read(self.target)?;
        }
        Ok(())
    }

    /// Configures one component (its directories and secrets are made before, by
    /// [`Engine::secrets`]): its changed files are validated on a staged copy and only then
    /// replace the live ones; removals and change commands last.
    fn configure(&mut self, name: &str, plan: &ConfigurePlan) -> Result<()> {
        for warning in &plan.warnings {
            self.warn(name, warning);
        }
        let owed_component = vec![Owed::Component(name.to_owned())];
        self.files(name, &plan.files, &plan.validators, &plan.on_change)?;
        for path in &plan.removals {
            self.removal(name, path, owed_component.clone())?;
        }
        self.change_commands(name, plan)
    }

    /// Runs each validator on a staged copy of the component's planned files; the first
    /// failure fails the run before any live file changed. Files that do not exist yet
    /// replace nothing: they are put in place first, so that the configuration may name them
    /// (opendkim's KeyTable), and removed again when a check fails.
    fn validate(
        &mut self,
        files: &[File],
        validators: &[Validator],
        changes: &[FileChange<'_>],
    ) -> Result<()> {
        if validators.is_empty() {
            return Ok(());
        }
        let new: Vec<&FileChange<'_>> = changes.iter().filter(|c| c.new).collect();
        // Owed before they appear, as for any change; a failed check owes nothing.
        let owed: BTreeSet<Owed> = new
            .iter()
            .flat_map(|c| &c.owed)
            .filter(|o| !self.pending.contains(o))
            .cloned()
            .collect();
        self.pending.add(owed.iter().cloned())?;
        for change in &new {
            write_file(
                &self.target.path(&change.file.path),
                change.file,
                change.meta,
            )?;
        }
        let result = self.check(files, validators);
        if result.is_err() {
            for change in &new {
                files::remove(&self.target.path(&change.file.path))?;
            }
            self.pending.remove(&owed.into_iter().collect::<Vec<_>>())?;
        }
        result
    }

    /// Runs the validators on staged copies of the planned files.
    fn check(&self, files: &[File], validators: &[Validator]) -> Result<()> {
        let planned: BTreeMap<&Path, &[u8]> = files
            .iter()
            .map(|f| (f.path.as_path(), f.content.as_slice()))
            .collect();
        let stage = Stage::new(self.target)?;
        for validator in validators {
            let staged = stage.put(&validator.input, &planned)?;
            let mut argv = validator.argv.clone();
            argv.push(staged.display().to_string());
            let output = self.target.run_unchecked(&argv, &[])?;
            let noisy =
                validator.strict_stderr && !output.stderr.iter().all(u8::is_ascii_whitespace);
            if !output.status.success() || noisy {
                bail!(
                    "validation failed: `{} {}` ({}), nothing was changed:\n{}",
                    shell_words(&validator.argv),
                    validator.input.display(),
                    output.status,
                    tail(&output)
                );
            }
        }
        Ok(())
    }

    /// Runs the change commands (e.g. `sysctl --load`) a changed file owes, including those an
    /// interrupted run still owed; each is forgotten only once it succeeded.
    fn change_commands(&mut self, name: &str, plan: &ConfigurePlan) -> Result<()> {
        for command in &plan.on_change {
            let owed = Owed::Command(name.to_owned(), command.path.clone());
            if !self.pending.contains(&owed) {
                continue;
            }
            let target = self.target;
            let what = format!("run {}", shell_words(&command.argv));
            let action = Action::new(name, Kind::Run, what);
            self.change(vec![], action, || target.run(&command.argv, &[]).map(drop))?;
            self.pending.remove(&[owed])?;
        }
        Ok(())
    }

    /// Makes every missing secret before any component's files: the directories they go to
    /// first, then the generators of all components at once (each is independent, and key
    /// generation is the slow part of a first run).
    fn secrets<'p>(&mut self, plans: &'p [Planned]) -> Result<()> {
        let mut jobs: Vec<GenerateJob<'p>> = Vec::new();
        for planned in plans {
            let Some(configure) = &planned.configure else {
                continue;
            };
            let name = planned.component;
            let owed = vec![Owed::Component(name.to_owned())];
            for dir in &configure.dirs {
                self.dir(name, dir, &owed)?;
            }
            for generate in &configure.generates {
                jobs.extend(self.generate(name, generate, &owed)?);
            }
        }
        if self.dry_run {
            return Ok(());
        }
        let target = self.target;
        std::thread::scope(|scope| {
            let running: Vec<_> = jobs
                .iter()
                .map(|job| scope.spawn(move || job.run(target)))
                .collect();
            running
                .into_iter()
                .map(|thread| {
                    thread
                        .join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("a generator thread panicked")))
                })
                .collect::<Result<Vec<()>>>()
        })?;
        Ok(())
    }

    /// Decides about a secret (key, certificate, link): made once; what an interrupted run
    /// left (empty files, a missing owner) is repaired, and a valid file never replaced. A
    /// secret to make is recorded (and owed) now and returned, to run with the others.
    fn generate<'p>(
        &mut self,
        name: &'static str,
        generate: &'p Generate,
        owed: &[Owed],
    ) -> Result<Option<GenerateJob<'p>>> {
        let Some(first) = generate.creates.first() else {
            return Ok(None);
        };
        let target = self.target;
        let ids = match &generate.owner {
            Some(owner) => Some(self.meta(owner, 0)?),
            None => None,
        };
        let found: Vec<(PathBuf, Found)> = generate
            .creates
            .iter()
            .map(|path| (path.clone(), Found::at(&target.path(path))))
            .collect();
        match generate::decide(&found, ids.map(|ids| (ids.uid, ids.gid))) {
            Step::Done => Ok(None),
            Step::Chown(paths) => {
                let owner = generate
                    .owner
                    .as_ref()
                    .map(|o| format!("{}:{}", o.user, o.group));
                let what = format!(
                    "repair the owner of {} ({})",
                    paths
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    owner.unwrap_or_default()
                );
                let action = Action::new(name, Kind::Generate, what);
                self.change(owed.to_vec(), action, || chown(target, ids, &paths))?;
                Ok(None)
            }
            Step::Partial { missing, present } => {
                self.warn(
                    name,
                    &format!(
                        "{} is missing but {} exists; not generating them again, which would \
                         replace it (remove it to get a new pair)",
                        missing.display(),
                        present.display()
                    ),
                );
                Ok(None)
            }
            Step::Run { empty } => {
                let what = match empty.is_empty() {
                    true => format!(
                        "generate {} ({})",
                        first.display(),
                        shell_words(&generate.argv)
                    ),
                    false => format!(
                        "generate {} again, an interrupted run left it empty ({})",
                        first.display(),
                        shell_words(&generate.argv)
                    ),
                };
                // Recorded and owed before it runs, as every change.
                self.pending.add(owed.iter().cloned())?;
                self.record(Action::new(name, Kind::Generate, what));
                Ok(Some(GenerateJob {
                    component: name,
                    generate,
                    empty,
                    ids,
                }))
            }
        }
    }

    /// Brings every declared unit to its wanted state, stops and disables the units in
    /// `orphans` and then removes their unit files; restarts and reloads what is owed.
    fn activate(&mut self, plans: &[Planned], orphans: &[Entry]) -> Result<()> {
        let orphan_files = orphans.iter().filter_map(|(component, item)| match item {
            Item::File(path) => Some((component, path)),
            Item::Unit(_) => None,
        });
        if !self.facts.systemd {
            // Nothing runs them: their files can go at once.
            for (component, path) in orphan_files {
                self.orphan_file(component, path, vec![Owed::DaemonReload])?;
            }
            let owed: Vec<String> = self.pending.iter().map(Owed::to_string).collect();
            let text = format!(
                "activate: no running systemd manages {}; nothing started{}",
                self.target.root().display(),
                if owed.is_empty() {
                    String::new()
                } else {
                    format!(" (pending: {})", owed.join(", "))
                }
            );
            (self.observer.0)(Event::Notice(&text));
            return Ok(());
        }
        let orphan_units: Vec<(&str, &str)> = orphans
            .iter()
            .filter_map(|(component, item)| match item {
                Item::Unit(unit) => Some((component.as_str(), unit.as_str())),
                Item::File(_) => None,
            })
            .collect();
        let units: Vec<String> = plans
            .iter()
            .filter_map(|p| p.activate.as_ref())
            .flat_map(|a| a.services.iter().map(|s| s.unit.clone()))
            .chain(orphan_units.iter().map(|(_, unit)| (*unit).to_owned()))
            .collect();
        let mut states = systemd::states(self.target, &units)?;
        // A unit whose file changed since systemd loaded it shows what systemd read before.
        if states.values().any(|state| state.stale_definition) {
            self.daemon_reload()?;
            states = systemd::states(self.target, &units)?;
        }
        // Processes running replaced files (an upgrade, here or by unattended-upgrades).
        let stale = match self.target.is_host_root() {
            true => stale::stale_units(Path::new("/proc")),
            false => BTreeSet::new(),
        };
        let mut actions: Vec<(&str, Verb, &str)> = Vec::new();
        for (component, unit) in &orphan_units {
            let state = states.get(*unit).cloned().unwrap_or_default();
            for verb in systemd::decide(&Service::stopped(unit), &state, false, false) {
                actions.push((component, verb, unit));
            }
        }
        let mut done = Vec::new();
        for planned in plans {
            let component_owed = Owed::Component(planned.component.to_owned());
            let Some(activate) = &planned.activate else {
                // Not used by this deployment: it runs nothing, so it owes no restart.
                done.push(component_owed);
                continue;
            };
            let restart_all = self.pending.contains(&component_owed);
            done.push(component_owed);
            for service in &activate.services {
                let unit = service.unit.as_str();
                let state = states.get(unit).cloned().unwrap_or_default();
                let unit_owed = Owed::Unit(unit.to_owned());
                let reload_owed = Owed::Reload(unit.to_owned());
                let replaced = std::iter::once(unit)
                    .chain(state.parts.iter().map(String::as_str))
                    .find(|unit| stale.contains(*unit));
                if let Some(part) = replaced
                    && state.active
                {
                    let text = format!("{part} runs files an upgrade replaced");
                    (self.observer.0)(Event::Notice(&text));
                }
                let restart =
                    restart_all || self.pending.contains(&unit_owed) || replaced.is_some();
                let reload = self.pending.contains(&reload_owed);
                for verb in systemd::decide(service, &state, restart, reload) {
                    actions.push((planned.component, verb, unit));
                }
                done.extend([unit_owed, reload_owed]);
            }
        }
        // Stops and unit-file edits first, then the one `daemon-reload` that shows systemd the
        // changed unit files and links together, then what runs units with them.
        self.units(&actions, |verb| !verb.runs_unit())?;
        if self.pending.contains(&Owed::DaemonReload) {
            self.daemon_reload()?;
        }
        self.units(&actions, Verb::runs_unit)?;
        self.pending.remove(&done)?;
        let removed_before = self.report.total();
        for (component, path) in orphan_files {
            self.orphan_file(component, path, vec![Owed::DaemonReload])?;
        }
        if self.report.total() != removed_before {
            self.daemon_reload()?;
        }
        for planned in plans {
            if let Some(activate) = &planned.activate {
                self.attempts(planned.component, &activate.attempts)?;
            }
        }
        Ok(())
    }

    /// Applies the `actions` of the verbs `which` selects, one `systemctl` call per verb
    /// (systemd runs the jobs of a call in parallel); an edit of unit files owes the
    /// `daemon-reload` it leaves out.
    fn units(
        &mut self,
        actions: &[(&str, Verb, &str)],
        which: impl Fn(Verb) -> bool,
    ) -> Result<()> {
        for verb in Verb::ALL.into_iter().filter(|verb| which(*verb)) {
            let batch: Vec<&(&str, Verb, &str)> =
                actions.iter().filter(|(_, v, _)| *v == verb).collect();
            if batch.is_empty() {
                continue;
            }
            if verb.edits_unit_files() {
                self.pending.add([Owed::DaemonReload])?;
            }
            for (component, verb, unit) in &batch {
                let text = format!("{verb} {unit}");
                self.record(Action::new(component, Kind::Unit(*verb), text));
            }
            if !self.dry_run {
                let units: Vec<String> = batch.iter().map(|(_, _, u)| (*u).to_owned()).collect();
                systemd::act(self.target, verb, &units)?;
            }
        }
        Ok(())
    }

    /// `systemctl daemon-reload`, and what it owed is paid.
    fn daemon_reload(&mut self) -> Result<()> {
        let target = self.target;
        let action = Action::new("systemd", Kind::DaemonReload, "daemon-reload");
        self.change(vec![], action, || systemd::daemon_reload(target))?;
        self.pending.remove(&[Owed::DaemonReload])
    }

    /// Runs a component's best-effort commands while their condition holds; the first failure
    /// becomes a warning and skips the rest.
    fn attempts(&mut self, name: &str, attempts: &[Attempt]) -> Result<()> {
        for attempt in attempts {
            if !self.target.path(&attempt.while_exists).exists() {
                continue;
            }
            let what = format!("run {}", shell_words(&attempt.argv));
            self.record(Action::new(name, Kind::Run, what));
            if self.dry_run {
                continue;
            }
            let output = self.target.run_unchecked(&attempt.argv, &[])?;
            if !output.status.success() {
                let text = format!(
                    "`{}` failed ({}):\n{}\n{}",
                    shell_words(&attempt.argv),
                    output.status,
                    tail(&output),
                    attempt.hint
                );
                self.warn(name, &text);
                break;
            }
        }
        Ok(())
    }

    /// Numeric owner and mode for `owner`; in a dry run, a user that install would create
    /// resolves to a placeholder.
    fn meta(&self, owner: &Owner, mode: u32) -> Result<Meta> {
        let ids = self
            .accounts
            .uid(&owner.user)
            .and_then(|uid| Ok((uid, self.accounts.gid(&owner.group)?)));
        match ids {
            Ok((uid, gid)) => Ok(Meta { uid, gid, mode }),
            Err(_) if self.dry_run => Ok(Meta {
                uid: u32::MAX,
                gid: u32::MAX,
                mode,
            }),
            Err(err) => Err(err),
        }
    }

    fn dir(&mut self, name: &str, dir: &Dir, owed: &[Owed]) -> Result<()> {
        let path = self.target.path(&dir.path);
        let meta = self.meta(&dir.owner, dir.mode)?;
        // In a dry run, a directory a move would have put here is still where it was.
        let now_at = self.moved.get(&dir.path).map(|from| self.target.path(from));
        let current = std::fs::metadata(now_at.as_ref().unwrap_or(&path)).ok();
        let matches = current.as_ref().is_some_and(|m| {
            use std::os::unix::fs::MetadataExt;
            m.is_dir()
                && m.uid() == meta.uid
                && m.gid() == meta.gid
                && m.mode() & 0o7777 == meta.mode
        });
        if matches {
            return Ok(());
        }
        let what = match current {
            None => format!("create directory {}", dir.path.display()),
            Some(_) => format!(
                "set {}:{} {:o} on {}",
                dir.owner.user,
                dir.owner.group,
                dir.mode,
                dir.path.display()
            ),
        };
        let action = Action::new(name, Kind::Dir, what);
        self.change(owed.to_vec(), action, || {
            std::fs::create_dir_all(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            files::set_meta(&path, meta).map(drop)
        })
    }

    /// Brings a component's files (of either phase) to their declarations: what each change
    /// owes comes from the file's declaration (restarts, reloads, change commands); changed
    /// files are validated on a staged copy first, then written.
    fn files(
        &mut self,
        name: &str,
        files: &[File],
        validators: &[Validator],
        on_change: &[OnChange],
    ) -> Result<()> {
        let mut changes = Vec::new();
        for file in files {
            let mut owed: Vec<Owed> = match &file.restarts {
                Restarts::Component => vec![Owed::Component(name.to_owned())],
                Restarts::Units(units) => units.iter().cloned().map(Owed::Unit).collect(),
                Restarts::Reload(units) => units.iter().cloned().map(Owed::Reload).collect(),
            };
            if on_change.iter().any(|c| c.path == file.path) {
                owed.push(Owed::Command(name.to_owned(), file.path.clone()));
            }
            changes.extend(self.plan_file(file, owed)?);
        }
        if !self.dry_run && changes.iter().any(|c| c.diff.is_some()) {
            self.validate(files, validators, &changes)?;
        }
        for change in changes {
            self.apply_file(name, change)?;
        }
        Ok(())
    }

    /// What it takes to bring `file` to its wanted state, if it differs.
    fn plan_file<'p>(&self, file: &'p File, mut owed: Vec<Owed>) -> Result<Option<FileChange<'p>>> {
        let meta = self.meta(&file.owner, file.mode)?;
        let existing = Existing::read(&self.target.path(&file.path))?;
        let what = match &existing {
            Existing::File { content, meta: m } if *content == file.content => {
                if *m == meta {
                    return Ok(None);
                }
                format!(
                    "set {}:{} {:o} on {}",
                    file.owner.user,
                    file.owner.group,
                    file.mode,
                    file.path.display()
                )
            }
            Existing::Missing => format!("create {}", file.path.display()),
            _ => format!("update {}", file.path.display()),
        };
        let diff = (existing.content() != Some(&file.content[..]))
            .then(|| files::diff(&file.path, existing.content(), &file.content));
        if is_unit_file(&file.path) {
            owed.push(Owed::DaemonReload);
        }
        owed.extend(self.watchers.get(&file.path).into_iter().flatten().cloned());
        Ok(Some(FileChange {
            file,
            new: existing == Existing::Missing,
            meta,
            what,
            diff,
            owed,
        }))
    }

    /// Writes a planned file change (atomically, owner and mode set before it appears).
    fn apply_file(&mut self, name: &str, change: FileChange<'_>) -> Result<()> {
        let FileChange {
            file,
            meta,
            what,
            diff,
            owed,
            ..
        } = change;
        let path = self.target.path(&file.path);
        let action = Action::new(name, Kind::File, what).with_diff(diff);
        self.change(owed, action, || write_file(&path, file, meta))
    }

    fn removal(&mut self, name: &str, path: &Path, owed: Vec<Owed>) -> Result<()> {
        let full = self.target.path(path);
        if std::fs::symlink_metadata(&full).is_err() {
            return Ok(());
        }
        let mut owed = owed;
        if is_unit_file(path) {
            owed.push(Owed::DaemonReload);
        }
        let what = format!("remove {}", path.display());
        let action = Action::new(name, Kind::Remove(path.to_owned()), what);
        self.change(owed, action, || files::remove(&full).map(drop))
    }
}

/// A secret to make: its generator, run beside the others'.
struct GenerateJob<'p> {
    component: &'static str,
    generate: &'p Generate,
    /// Empty files an interrupted run left, removed first.
    empty: Vec<PathBuf>,
    /// The numeric owner its files get.
    ids: Option<Meta>,
}

impl GenerateJob<'_> {
    /// Runs the generator: on temporary twins renamed into place (the secret last) where its
    /// argv names its files, else in place.
    fn run(&self, target: &Target) -> Result<()> {
        let generate = self.generate;
        let context = || {
            let first = generate.creates.first().map(|p| p.display().to_string());
            format!(
                "{}: generating {}",
                self.component,
                first.unwrap_or_default()
            )
        };
        (|| -> Result<()> {
            for path in self.empty.iter().map(|p| target.path(p)) {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing the empty {}", path.display()))?;
            }
            let tag = std::process::id().to_string();
            let Some(redirect) = generate::redirect(&generate.argv, &generate.creates, &tag) else {
                target.run(&generate.argv, &[])?;
                return chown(target, self.ids, &generate.creates);
            };
            if let Some(dir) = &redirect.dir {
                let dir = target.path(dir);
                std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            target.run(&redirect.argv, &[])?;
            let twins: Vec<PathBuf> = redirect.renames.iter().map(|(t, _)| t.clone()).collect();
            chown(target, self.ids, &twins)?;
            for (twin, path) in &redirect.renames {
                let (twin, path) = (target.path(twin), target.path(path));
                std::fs::rename(&twin, &path).with_context(|| {
                    format!("renaming {} to {}", twin.display(), path.display())
                })?;
            }
            match &redirect.dir {
                Some(dir) => files::remove(&target.path(dir)).map(drop),
                None => Ok(()),
            }
        })()
        .with_context(context)
    }
}

/// Gives `paths` on the target the owner `ids` (links themselves, not what they point to).
fn chown(target: &Target, ids: Option<Meta>, paths: &[PathBuf]) -> Result<()> {
    let Some(ids) = ids else { return Ok(()) };
    for path in paths.iter().map(|p| target.path(p)) {
        std::os::unix::fs::lchown(&path, Some(ids.uid), Some(ids.gid))
            .with_context(|| format!("setting the owner of {}", path.display()))?;
    }
    Ok(())
}

/// Writes a declared file to `path` (its place on the target), dated back when it is
/// declared settled.
fn write_file(path: &Path, file: &File, meta: Meta) -> Result<()> {
    files::write_atomic(path, &file.content, meta)?;
    match file.settled {
        true => files::backdate(path),
        false => Ok(()),
    }
}

/// A declared file that differs from what the target has.
struct FileChange<'p> {
    file: &'p File,
    /// Nothing is at its path yet.
    new: bool,
    /// The numeric owner and mode it should have.
    meta: Meta,
    /// The change as the report names it.
    what: String,
    /// The diff of its content; `None` when only owner or mode differ.
    diff: Option<String>,
    /// What the change owes activation (and the change commands).
    owed: Vec<Owed>,
}

/// The packages `pick` selects from each component's install plan: all of them once (in
/// order), and per component the ones it named.
fn package_batch<'p>(
    plans: &'p [Planned],
    pick: impl Fn(&'p InstallPlan) -> Vec<&'p String>,
) -> (Vec<String>, Vec<(&'static str, Vec<&'p String>)>) {
    let mut batch: Vec<String> = Vec::new();
    let mut wanting = Vec::new();
    for planned in plans {
        let theirs = pick(&planned.install);
        if theirs.is_empty() {
            continue;
        }
        for package in &theirs {
            if !batch.contains(package) {
                batch.push((*package).clone());
            }
        }
        wanting.push((planned.component, theirs));
    }
    (batch, wanting)
}

/// Fails when a port a component needs is held by a process it does not expect there.
fn check_ports(plans: &[Planned]) -> Result<()> {
    let listeners = ports::listeners();
    for planned in plans {
        for port in planned.activate.iter().flat_map(|a| &a.ports) {
            if let Some(holder) = listeners.get(&port.port)
                && !port.allowed.iter().any(|name| name == holder)
            {
                bail!(
                    "port {} is occupied by {holder}, but {} needs it (for {}); stop {holder} first",
                    port.port,
                    planned.component,
                    port.allowed.join(" or ")
                );
            }
        }
    }
    Ok(())
}

/// Fails when a daemon is to bind an address that is not one of this host's: binding it (on
/// a free port) is the kernel's own answer.
fn check_addresses(plans: &[Planned]) -> Result<()> {
    for planned in plans {
        for local in planned.activate.iter().flat_map(|a| &a.addresses) {
            if let Err(err) = std::net::TcpListener::bind((local.address, 0)) {
                bail!(
                    "{} = {} is not an address of this host ({err}); is its interface (a VPN?) up?",
                    local.setting,
                    local.address
                );
            }
        }
    }
    Ok(())
}

fn is_unit_file(path: &Path) -> bool {
    [
        "/etc/systemd/system/",
        "/lib/systemd/system/",
        "/usr/lib/systemd/system/",
    ]
    .iter()
    .any(|dir| path.starts_with(dir))
}

impl std::fmt::Display for Owed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owed::DaemonReload => f.write_str("daemon-reload"),
            Owed::Component(name) => write!(f, "restart of {name}'s services"),
            Owed::Unit(unit) => write!(f, "restart of {unit}"),
            Owed::Reload(unit) => write!(f, "reload of {unit}"),
            Owed::Command(component, path) => {
                write!(f, "{component}'s command for {}", path.display())
            }
        }
    }
}
