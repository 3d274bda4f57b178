//! What components declare: the three phase contexts they fill in, and the items they hold.
//!
//! A component never acts; it describes the state it wants. [`Install`] deliberately holds no
//! configuration, so nothing installed can depend on a deployment setting. [`Configure`] and
//! [`Activate`] see the settings.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::config::Config;
use crate::facts::Facts;
use crate::target::argv as owned;
use crate::template::Templates;

/// Who owns a file or directory, by name (resolved on the target).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Owner {
    /// The owning user's name, e.g. `vmail`.
    pub user: String,
    /// The owning group's name, e.g. `www-data`.
    pub group: String,
}

impl Owner {
    /// `root:root`, the owner of nearly every config file.
    pub fn root() -> Self {
        Owner::new("root", "root")
    }

    /// `user:group`, both looked up by name on the target when applied.
    pub fn new(user: &str, group: &str) -> Self {
        Owner {
            user: user.to_owned(),
            group: group.to_owned(),
        }
    }
}

/// A system user with its primary group and supplementary groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// The login name, e.g. `vmail`.
    pub name: String,
    /// Primary group; created if missing. Defaults to a group of the user's name.
    pub group: String,
    /// Supplementary groups (e.g. `opendkim` for Postfix to reach OpenDKIM's socket).
    pub extra_groups: Vec<String>,
    /// The home directory, created with the user.
    pub home: PathBuf,
}

impl User {
    /// A system user `name` with a same-named group and home `/home/<name>`.
    pub fn system(name: &str) -> Self {
        User {
            name: name.to_owned(),
            group: name.to_owned(),
            extra_groups: Vec::new(),
            home: PathBuf::from(format!("/home/{name}")),
        }
    }

    /// Adds supplementary groups (created if missing).
    pub fn extra_groups(mut self, groups: &[&str]) -> Self {
        self.extra_groups = groups.iter().map(|g| (*g).to_owned()).collect();
        self
    }
}

/// A directory with owner and mode (applied to the last path component only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dir {
    /// Absolute path on the target; missing parents are created too (owned by the user
    /// running cmdeploy, with the default mode).
    pub path: PathBuf,
    /// Who owns the directory.
    pub owner: Owner,
    /// Permission bits, e.g. `0o750`.
    pub mode: u32,
}

/// Which services a changed file restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Restarts {
    /// Every service the component declares as running.
    Component,
    /// Exactly these units.
    Units(Vec<String>),
    /// Reload these units (their daemons re-read the file without dropping connections).
    Reload(Vec<String>),
}

/// A file with exact content, owner and mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct File {
    /// Absolute path on the target.
    pub path: PathBuf,
    /// The exact bytes the file should hold.
    #[serde(skip)]
    pub content: Vec<u8>,
    /// The template it was rendered from, if any (for `cmdeploy list`).
    pub template: Option<String>,
    /// Who owns the file; `root:root` unless [`FileRef::owner`] says otherwise.
    pub owner: Owner,
    /// Permission bits; 0644 unless [`FileRef::mode`] says otherwise.
    pub mode: u32,
    /// Which services restart when the file changes.
    pub restarts: Restarts,
    /// Written dated back ([`FileRef::settled`]).
    pub settled: bool,
}

/// A file fetched by URL or copied from a local file, verified by its sha256, or one of the
/// relay's own binaries shipped next to cmdeploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Download {
    /// Where the binary is installed on the target.
    pub dest: PathBuf,
    /// Where it comes from.
    pub source: DownloadSource,
    /// Expected sha256; empty for [`DownloadSource::Bundled`] (compared by content instead).
    pub sha256: String,
    /// Permission bits of the installed file (0755 for programs).
    pub mode: u32,
}

/// Where a download comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum DownloadSource {
    /// An `https://` URL, fetched by the machine running cmdeploy.
    Url(String),
    /// A file on the machine running cmdeploy (a `.deb` file built elsewhere).
    Local(PathBuf),
    /// One of the relay's own programs, built with cmdeploy and shipped beside it.
    Bundled(PathBuf),
}

/// Where a download comes from, for messages: the URL or the path.
impl std::fmt::Display for DownloadSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DownloadSource::Url(url) => f.write_str(url),
            DownloadSource::Local(path) | DownloadSource::Bundled(path) => {
                write!(f, "{}", path.display())
            }
        }
    }
}

impl Download {
    /// A file of the machine running cmdeploy, installed at `dest` as it is now: its sha256 is
    /// taken here, so a file that changes before the run installs nothing.
    pub fn local_file(dest: &str, path: &Path) -> Result<Download> {
        let content = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(Download {
            dest: dest.into(),
            source: DownloadSource::Local(path.to_owned()),
            sha256: crate::download::sha256_hex(&content),
            mode: 0o644,
        })
    }

    /// A pinned release for the target's architecture, from `(arch, url, sha256)` rows.
    pub fn pinned(dest: &str, facts: &Facts, releases: &[(&str, &str, &str)]) -> Result<Download> {
        let Some((_, url, sha256)) = releases.iter().find(|(arch, _, _)| *arch == facts.arch)
        else {
            anyhow::bail!(
                "no release of {dest} is pinned for architecture {}",
                facts.arch
            );
        };
        Ok(Download {
            dest: dest.into(),
            source: DownloadSource::Url((*url).to_owned()),
            sha256: (*sha256).to_owned(),
            mode: 0o755,
        })
    }
}

/// A Debian package installed from a pinned `.deb` file instead of the archive (a patched
/// build), whenever the installed version is not `version`; apt brings its dependencies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deb {
    /// The package name dpkg knows it by (`dovecot-core`).
    pub package: String,
    /// The version the file carries, as dpkg reports it (with epoch, e.g. `1:2.3.21+dfsg1-3`).
    pub version: String,
    /// Where the file comes from and where it is kept on the target.
    pub file: Download,
}

/// A command that creates files once (keys, certificates) and never runs while they exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Generate {
    /// The files it creates, the secret first; it runs when the secret is missing.
    pub creates: Vec<PathBuf>,
    /// The command, run on the target (inside `chroot` for a directory target). Where it
    /// names the created files (or their common directory), it is run on temporary twins that
    /// are owned and renamed into place once it succeeded, the secret last.
    pub argv: Vec<String>,
    /// Owner given to the created files afterwards (their modes are the command's).
    pub owner: Option<Owner>,
}

/// Something an earlier release kept at another path (a directory with data, say), moved once
/// to where it belongs now: a rename, so owners, modes and content stay as they are. While
/// `from` exists and `to` does not, the run moves it; with both there it refuses before
/// changing anything; otherwise there is nothing to move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Move {
    /// Where an earlier release left it.
    pub from: PathBuf,
    /// Where it belongs now (missing parents are created).
    pub to: PathBuf,
    /// Units that write into it: on a systemd host those running are stopped before the
    /// rename, and owed a start (a restart) that activation gives them.
    pub quiesce: Vec<String>,
}

/// A file the deployment needs but does not create (e.g. externally managed certificates).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Required {
    /// The file that must exist on the target.
    pub path: PathBuf,
    /// Why it is needed, e.g. "named by tls_external_cert_and_key".
    pub why: String,
}

/// A command run after one of its files changed (e.g. `sysctl --load`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OnChange {
    /// The file whose change triggers the command.
    pub path: PathBuf,
    /// The command, run on the target after the file was written.
    pub argv: Vec<String>,
}

/// A check of the component's configuration by the real program, run on a staged copy before
/// any changed file replaces a live one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Validator {
    /// The check, run on the target with the staged copy of `input` appended; a non-zero exit
    /// fails the run with the live files untouched.
    pub argv: Vec<String>,
    /// The file (or the directory of files) the check reads: a declared file is staged with
    /// its planned content, a directory with its current files overlaid by the planned ones.
    pub input: PathBuf,
    /// Treat any output on stderr as failure (Postfix prints warnings but exits 0).
    pub strict_stderr: bool,
}

/// A systemd unit and the state it should be in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Service {
    /// The systemd unit name, with its suffix (`postfix.service`, `fcgiwrap.socket`).
    pub unit: String,
    /// Whether it should be running after activation (started, or restarted when owed).
    pub running: bool,
    /// Whether it should start at boot.
    pub enabled: bool,
    /// Masked: it cannot be started at all (e.g. systemd-resolved, which would take port 53).
    pub masked: bool,
    /// How the daemon runs as a container's only process; `None` for units that have no
    /// container counterpart (host-only plumbing such as journald or path watchers).
    pub container: Option<Foreground>,
}

/// A daemon run in the foreground as a container's main process, logging to stdout or stderr.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Foreground {
    /// The command the container execs after configure.
    pub argv: Vec<String>,
    /// Commands run in order after configure and before `argv` (e.g. copying files into a
    /// chroot, creating a pid directory that systemd would make on a host).
    pub before: Vec<Vec<String>>,
    /// Commands that prepare what the daemon finds in its volumes (e.g. Postfix's chroot in
    /// its spool), run once by the `init` container after configure, not at each start of
    /// the daemon's own container.
    pub prepare: Vec<Vec<String>>,
    /// The signal that stops the daemon at once, when not SIGTERM (the engine's default).
    pub stop_signal: Option<String>,
    /// A Unix socket of the daemon that the entrypoint connects to after passing a stop
    /// request on, until the daemon exits: the daemon sees the request only when a connection arrives or a long poll
    /// ends (OpenDKIM's milter library polls every 5 s).
    pub wake_on_stop: Option<PathBuf>,
    /// How the compose health check tells that the daemon is healthy.
    pub health: Option<Probe>,
    /// Linux capabilities (`NET_BIND_SERVICE`, ...) the daemon needs beyond those every
    /// container's entrypoint keeps to configure and to drop to a service user; the container
    /// gets no other.
    pub capabilities: Vec<String>,
}

/// A health check of a daemon in a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Probe {
    /// A TCP connection to this port on 127.0.0.1 succeeds (containers share the host's
    /// network).
    Tcp(u16),
    /// A connection to this Unix socket succeeds.
    Unix(PathBuf),
    /// This Unix socket answers a Dovecot dict lookup.
    Dict(PathBuf),
    /// Port on 127.0.0.1 greets with an SMTP banner.
    Smtp(u16),
    /// Port on 127.0.0.1 greets with an IMAP greeting.
    Imap(u16),
    /// This command exits 0.
    Command(Vec<String>),
}

/// Where a container volume lives and what it is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum VolumeKind {
    /// Data that must outlive every container (mailboxes, keys, certificates, the mail queue).
    State,
    /// A secret that must outlive every container and that only the declaring component's
    /// containers read (the DKIM key, the TURN secret): those that use the component do not
    /// mount it.
    Secret,
    /// Unix sockets and other runtime files that daemons in different containers share;
    /// emptied when the containers go.
    Runtime,
    /// Where the component's own daemon writes at run time (a pid file, a lock, caches) under
    /// a read-only root: a tmpfs of each of its containers, shared with none.
    Private,
}

/// A directory that containers share as a volume instead of keeping it in their own layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Volume {
    /// The directory, at the same path in every container that mounts it.
    pub path: PathBuf,
    /// Whether it holds lasting state or shared runtime files.
    pub kind: VolumeKind,
    /// Why it is shared, shown in the generated compose file.
    pub why: String,
    /// Owner and mode the container entrypoint gives the directory before configure (a
    /// fresh volume is root's); `None` leaves it to configure's declared directories.
    pub owner: Option<(Owner, u32)>,
}

/// A periodic job: a systemd timer on a host, a line of the scheduler container's crontab in
/// containers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Job {
    /// A name for logs and the crontab comment, e.g. `chatmail-expire`.
    pub name: String,
    /// When it runs, as the five time fields of a crontab line (`2 0 * * *`); keep it equal
    /// to the host timer's `OnCalendar=`.
    pub schedule: String,
    /// The user it runs as.
    pub user: String,
    /// The command it runs.
    pub argv: Vec<String>,
}

impl Service {
    /// A unit that should be running and enabled at boot.
    pub fn running(unit: &str) -> Self {
        Service {
            unit: unit.to_owned(),
            running: true,
            enabled: true,
            masked: false,
            container: None,
        }
    }

    /// A unit that should be stopped and disabled (timer-driven or obsolete).
    pub fn stopped(unit: &str) -> Self {
        Service {
            running: false,
            enabled: false,
            ..Service::running(unit)
        }
    }

    /// A unit that must never run.
    pub fn masked(unit: &str) -> Self {
        Service {
            masked: true,
            ..Service::stopped(unit)
        }
    }

    /// Running now, but enabled at boot only if `enabled`.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// In a container, the daemon runs as `argv` in the foreground.
    pub fn foreground(mut self, argv: &[&str]) -> Self {
        self.container = Some(Foreground {
            argv: owned(argv),
            before: Vec::new(),
            prepare: Vec::new(),
            stop_signal: None,
            wake_on_stop: None,
            health: None,
            capabilities: Vec::new(),
        });
        self
    }

    /// Like [`foreground`](Self::foreground), run as `user` (and its group) instead of root,
    /// as the host's unit does with `User=`: through util-linux's `setpriv`.
    pub fn foreground_as(self, user: &str, argv: &[&str]) -> Self {
        let reuid = format!("--reuid={user}");
        let regid = format!("--regid={user}");
        let mut full = vec!["setpriv", &reuid, &regid, "--init-groups", "--"];
        full.extend(argv);
        self.foreground(&full)
    }

    /// In a container, `argv` runs before the foreground command (after configure); needs
    /// [`foreground`](Self::foreground) first.
    pub fn before(mut self, argv: &[&str]) -> Self {
        self.foreground_mut().before.push(owned(argv));
        self
    }

    /// In a container, `argv` prepares the daemon's volumes once, run by `init` after
    /// configure (the daemon's container starts after it); needs
    /// [`foreground`](Self::foreground) first.
    pub fn prepare(mut self, argv: &[&str]) -> Self {
        self.foreground_mut().prepare.push(owned(argv));
        self
    }

    /// In a container, `signal` (`SIGINT`, ...) stops the daemon instead of SIGTERM; needs
    /// [`foreground`](Self::foreground) first.
    pub fn stop_signal(mut self, signal: &str) -> Self {
        self.foreground_mut().stop_signal = Some(signal.to_owned());
        self
    }

    /// In a container, the entrypoint stays the daemon's parent (as root, waiting): it passes
    /// SIGTERM and SIGINT on, then connects to the Unix socket `path` to wake a daemon
    /// that checks for a stop request only when a connection arrives; needs
    /// [`foreground`](Self::foreground) first.
    pub fn wake_on_stop(mut self, path: &str) -> Self {
        self.foreground_mut().wake_on_stop = Some(path.into());
        self
    }

    /// In a container, the daemon needs these Linux capabilities (names without `CAP_`)
    /// beyond the entrypoint's; needs [`foreground`](Self::foreground) first.
    pub fn capabilities(mut self, names: &[&str]) -> Self {
        self.foreground_mut().capabilities.extend(owned(names));
        self
    }

    /// In a container, `argv` exits 0 while the daemon is healthy; needs
    /// [`foreground`](Self::foreground) first.
    pub fn health(self, argv: &[&str]) -> Self {
        self.probe(Probe::Command(owned(argv)))
    }

    /// In a container, the daemon is healthy while `port` on 127.0.0.1 accepts connections.
    pub fn health_tcp(self, port: u16) -> Self {
        self.probe(Probe::Tcp(port))
    }

    /// In a container, the daemon is healthy while the Unix socket `path` accepts connections.
    pub fn health_unix(self, path: &str) -> Self {
        self.probe(Probe::Unix(path.into()))
    }

    /// In a container, the daemon is healthy while the Unix socket `path` answers a Dovecot
    /// dict lookup.
    pub fn health_dict(self, path: &str) -> Self {
        self.probe(Probe::Dict(path.into()))
    }

    /// In a container, the daemon is healthy while `port` on 127.0.0.1 greets with an SMTP
    /// banner.
    pub fn health_smtp(self, port: u16) -> Self {
        self.probe(Probe::Smtp(port))
    }

    /// In a container, the daemon is healthy while `port` on 127.0.0.1 greets as an IMAP
    /// server.
    pub fn health_imap(self, port: u16) -> Self {
        self.probe(Probe::Imap(port))
    }

    fn probe(mut self, probe: Probe) -> Self {
        self.foreground_mut().health = Some(probe);
        self
    }

    /// # Panics
    /// When no foreground command was declared: a container detail without a container to
    /// run it in is a programming error of the component.
    fn foreground_mut(&mut self) -> &mut Foreground {
        self.container
            .as_mut()
            .expect("a container detail of a Service needs Service::foreground first")
    }
}

/// A TCP port a component's daemon listens on, and the process names allowed to hold it; a
/// run fails early when another program occupies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Port {
    /// The TCP port.
    pub port: u16,
    /// Process names (as in `/proc/<pid>/comm`, at most 15 characters) that may hold it.
    pub allowed: Vec<String>,
}

/// An address a daemon binds to, named by the setting that chose it; a run fails early when
/// the address does not belong to the host (a VPN interface that is down, a typo).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalAddress {
    /// The address the daemon binds to.
    pub address: IpAddr,
    /// The chatmail.ini key that chose it, named in the error (`mtail_address`).
    pub setting: String,
}

/// A best-effort command run at the end of a component's activation while `while_exists`
/// exists on the target (e.g. asking Let's Encrypt for a certificate while the stand-in is in
/// use). A failure is reported as a warning with `hint` and does not fail the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    /// The command, run on the target.
    pub argv: Vec<String>,
    /// It runs only while this path exists on the target.
    pub while_exists: PathBuf,
    /// What the warning tells the operator when the command fails.
    pub hint: String,
}

/// A Debian package left behind by older releases, removed if it is on the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageRemoval {
    /// The Debian package name.
    pub name: String,
    /// Also delete its configuration files (`apt-get purge`).
    pub purge: bool,
}

/// A line to delete from an existing file (an obsolete apt source, say); the rest of the file,
/// its owner and its mode stay as they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineRemoval {
    /// The file to edit, if it exists.
    pub path: PathBuf,
    /// The whole line, without its newline; trailing blanks on the target are ignored.
    pub line: String,
}

/// A build of a package that another variant installed from a `.deb` file (its version
/// contains `marker`): the archive's build replaces it, downgrading if need be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForeignBuild {
    /// The Debian package name, one of the component's [`InstallPlan::packages`].
    pub package: String,
    /// Part of the version that marks the build as not the archive's, e.g. `+chatmail`.
    pub marker: String,
}

/// What a component installs: the same for every relay.
#[derive(Debug, Default, Clone, Serialize)]
pub struct InstallPlan {
    /// Debian packages to have installed.
    pub packages: Vec<String>,
    /// Installed builds of [`Self::packages`] to replace with the archive's.
    pub foreign_builds: Vec<ForeignBuild>,
    /// apt's own settings (preferences): written before any package is installed or removed,
    /// so the package batch already obeys them.
    pub apt_files: Vec<File>,
    /// Things the operator should know about what is installed (printed as warnings).
    pub warnings: Vec<String>,
    /// Debian packages of older releases to remove or purge if installed.
    pub remove_packages: Vec<PackageRemoval>,
    /// Applied before any package is installed, so a stale apt source cannot break the run.
    pub line_removals: Vec<LineRemoval>,
    /// System users (and their groups) to have.
    pub users: Vec<User>,
    /// Directories to have, with owner and mode.
    pub dirs: Vec<Dir>,
    /// Files that are the same for every relay.
    pub files: Vec<File>,
    /// Binaries fetched or copied from beside cmdeploy.
    pub downloads: Vec<Download>,
    /// Packages installed from pinned `.deb` files instead of the archive.
    pub debs: Vec<Deb>,
    /// Files or directories of older releases to delete if present.
    pub removals: Vec<PathBuf>,
}

/// What a component writes for one deployment.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ConfigurePlan {
    /// Directories to have, with owner and mode.
    pub dirs: Vec<Dir>,
    /// Configuration files for this deployment.
    pub files: Vec<File>,
    /// What earlier releases kept elsewhere, moved before any directory is made.
    pub moves: Vec<Move>,
    /// Secrets and certificates created once.
    pub generates: Vec<Generate>,
    /// Commands run after a file changed.
    pub on_change: Vec<OnChange>,
    /// Checks of the configuration by the real programs, run on staged copies of changed files.
    pub validators: Vec<Validator>,
    /// Files to delete if present (e.g. a setting turned a feature off).
    pub removals: Vec<PathBuf>,
    /// Files that must already exist on the target.
    pub required: Vec<Required>,
    /// Files written by other components whose change restarts this component's services.
    pub watches: Vec<PathBuf>,
    /// Things the operator should know about this deployment (printed as warnings).
    pub warnings: Vec<String>,
}

/// Which services a component runs, and the ports they hold.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ActivatePlan {
    /// Units and the state each should be in.
    pub services: Vec<Service>,
    /// Ports the component's daemons hold, checked before anything changes.
    pub ports: Vec<Port>,
    /// Addresses the component's daemons bind to, checked before anything changes.
    pub addresses: Vec<LocalAddress>,
    /// Run in order after the services; the first failure skips the rest.
    pub attempts: Vec<Attempt>,
    /// Directories shared between containers (ignored on a systemd host).
    pub volumes: Vec<Volume>,
    /// Periodic jobs (their host form is a timer the component declares as a service).
    pub jobs: Vec<Job>,
    /// Other components whose volumes this component's containers mount (see
    /// [`Activate::uses`]).
    pub uses: Vec<String>,
    /// Earlier components whose files this component's containers configure and read (see
    /// [`Activate::reads`]).
    pub reads: Vec<String>,
}

/// The install phase's context: facts about the target and the component's templates, but no
/// deployment settings.
#[derive(Debug)]
pub struct Install<'a> {
    /// What is known about the target (architecture, where bundled programs are).
    pub facts: &'a Facts,
    templates: &'a Templates,
    component: &'static str,
    pub(crate) plan: InstallPlan,
}

/// The configure phase's context: the deployment settings plus everything install has.
#[derive(Debug)]
pub struct Configure<'a> {
    /// The deployment settings.
    pub config: &'a Config,
    /// What is known about the target.
    pub facts: &'a Facts,
    templates: &'a Templates,
    component: &'static str,
    pub(crate) plan: ConfigurePlan,
}

/// The activate phase's context.
#[derive(Debug)]
pub struct Activate<'a> {
    /// The deployment settings.
    pub config: &'a Config,
    /// What is known about the target (a systemd host, a container, a directory).
    pub facts: &'a Facts,
    pub(crate) plan: ActivatePlan,
}

fn file(path: &str, content: Vec<u8>, template: Option<String>) -> File {
    File {
        path: PathBuf::from(path),
        content,
        template,
        owner: Owner::root(),
        mode: 0o644,
        restarts: Restarts::Component,
        settled: false,
    }
}

/// Adjusts a file just declared: owner, mode and which services it restarts.
#[derive(Debug)]
pub struct FileRef<'p> {
    file: &'p mut File,
}

impl FileRef<'_> {
    /// The declared content, for a component's own check of what a template rendered.
    pub fn content(&self) -> &[u8] {
        &self.file.content
    }

    /// Owned by `user:group` instead of `root:root`.
    pub fn owner(self, user: &str, group: &str) -> Self {
        self.file.owner = Owner::new(user, group);
        self
    }

    /// Permission bits instead of 0644, e.g. `0o600` for a secret.
    pub fn mode(self, mode: u32) -> Self {
        self.file.mode = mode;
        self
    }

    /// Restart exactly these units when the file changes (instead of all the component's).
    pub fn restarts(self, units: &[&str]) -> Self {
        self.file.restarts = Restarts::Units(owned(units));
        self
    }

    /// Reload (not restart) these units when the file changes: for configuration their
    /// daemons re-read on `systemctl reload` while keeping connections (Dovecot's IMAP IDLE).
    pub fn reloads(self, units: &[&str]) -> Self {
        self.file.restarts = Restarts::Reload(owned(units));
        self
    }

    /// Dated back once written (`files::backdate`), for a program that waits until a file
    /// it reads has not changed for a while (Postfix's `main.cf`).
    pub fn settled(self) -> Self {
        self.file.settled = true;
        self
    }
}

impl<'a> Install<'a> {
    pub(crate) fn new(facts: &'a Facts, templates: &'a Templates, component: &'static str) -> Self {
        Install {
            facts,
            templates,
            component,
            plan: InstallPlan::default(),
        }
    }

    /// Debian packages to have installed (one batched `apt-get install` for all components).
    pub fn packages(&mut self, names: &[&str]) {
        self.plan
            .packages
            .extend(names.iter().map(|n| (*n).to_owned()));
    }

    /// Replaces installed builds of `packages` whose version contains one of `markers` (another
    /// variant's `.deb` files) with the archive's, in the package batch; an
    /// [`Install::apt_preference`] of priority above 1000 lets apt downgrade to it.
    pub fn foreign_builds(&mut self, packages: &[&str], markers: &[&str]) {
        for package in packages {
            self.plan
                .foreign_builds
                .extend(markers.iter().map(|marker| ForeignBuild {
                    package: (*package).to_owned(),
                    marker: (*marker).to_owned(),
                }));
        }
    }

    /// `/etc/apt/preferences.d/<name>` (pins), written before any package is installed.
    pub fn apt_preference(&mut self, name: &str, text: &str) {
        let path = format!("/etc/apt/preferences.d/{name}");
        let mut pin = file(&path, text.into(), None);
        pin.restarts = Restarts::Units(Vec::new());
        self.plan.apt_files.push(pin);
    }

    /// Something the operator should know about what this run installs, printed as a warning.
    pub fn warn(&mut self, text: &str) {
        self.plan.warnings.push(text.to_owned());
    }

    /// Debian packages to have removed if installed (one batched `apt-get remove` for all
    /// components, before packages are installed); their configuration files stay.
    pub fn remove_packages(&mut self, names: &[&str]) {
        self.package_removals(names, false);
    }

    /// Like [`Install::remove_packages`], but also deletes their configuration files
    /// (`apt-get purge`), including those of packages removed earlier without purging.
    pub fn purge_packages(&mut self, names: &[&str]) {
        self.package_removals(names, true);
    }

    fn package_removals(&mut self, names: &[&str], purge: bool) {
        self.plan
            .remove_packages
            .extend(names.iter().map(|name| PackageRemoval {
                name: (*name).to_owned(),
                purge,
            }));
    }

    /// A system user to have (created with its groups and home if missing).
    pub fn user(&mut self, user: User) {
        self.plan.users.push(user);
    }

    /// A directory to have, with owner and mode, the same for every relay.
    pub fn dir(&mut self, path: &str, owner: Owner, mode: u32) {
        self.plan.dirs.push(Dir {
            path: path.into(),
            owner,
            mode,
        });
    }

    /// A file whose content is the same for every relay.
    pub fn file(&mut self, path: &str, content: impl Into<Vec<u8>>) -> FileRef<'_> {
        push(&mut self.plan.files, file(path, content.into(), None))
    }

    /// A file rendered from one of the component's templates with no deployment settings.
    pub fn template(&mut self, path: &str, template: &str) -> Result<FileRef<'_>> {
        let name = format!("{}/{template}", self.component);
        let content = self.templates.render(&name, minijinja::context! {})?;
        Ok(push(
            &mut self.plan.files,
            file(path, content.into_bytes(), Some(name)),
        ))
    }

    /// A binary to install from a URL or a local file, verified by its sha256.
    pub fn download(&mut self, download: Download) {
        self.plan.downloads.push(download);
    }

    /// Installs `package` at `version` from the `.deb` that `file` fetches (kept on the target
    /// at `file.dest`) whenever the target has another version or none.
    pub fn deb(&mut self, package: &str, version: &str, file: Download) {
        self.plan.debs.push(Deb {
            package: package.to_owned(),
            version: version.to_owned(),
            file,
        });
    }

    /// Installs the relay's own program `name` (shipped beside cmdeploy) at `dest`.
    pub fn bundled_binary(&mut self, name: &str, dest: &str) {
        self.plan.downloads.push(Download {
            dest: dest.into(),
            source: DownloadSource::Bundled(self.facts.binaries.join(name)),
            sha256: String::new(),
            mode: 0o755,
        });
    }

    /// A file or directory left behind by older releases, removed if present.
    pub fn remove(&mut self, path: &str) {
        self.plan.removals.push(path.into());
    }

    /// Deletes every line equal to `line` from the file at `path`, if it exists.
    pub fn remove_line(&mut self, path: &str, line: &str) {
        self.plan.line_removals.push(LineRemoval {
            path: path.into(),
            line: line.to_owned(),
        });
    }
}

impl<'a> Configure<'a> {
    pub(crate) fn new(
        config: &'a Config,
        facts: &'a Facts,
        templates: &'a Templates,
        component: &'static str,
    ) -> Self {
        Configure {
            config,
            facts,
            templates,
            component,
            plan: ConfigurePlan::default(),
        }
    }

    /// A directory to have, with owner and mode (its path may depend on a setting).
    pub fn dir(&mut self, path: impl AsRef<Path>, owner: Owner, mode: u32) {
        self.plan.dirs.push(Dir {
            path: path.as_ref().to_owned(),
            owner,
            mode,
        });
    }

    /// Moves `from` (where an earlier release kept it) to `to` once, by a rename, before any
    /// directory is made; on a systemd host the running `quiesce` units (those writing into
    /// it) are stopped first and started again by activation. With both paths present the
    /// run fails before anything changes.
    pub fn relocate(&mut self, from: impl AsRef<Path>, to: impl AsRef<Path>, quiesce: &[&str]) {
        self.plan.moves.push(Move {
            from: from.as_ref().to_owned(),
            to: to.as_ref().to_owned(),
            quiesce: owned(quiesce),
        });
    }

    /// A file with the given content.
    pub fn file(&mut self, path: impl AsRef<Path>, content: impl Into<Vec<u8>>) -> FileRef<'_> {
        let path = path.as_ref().to_string_lossy().into_owned();
        push(&mut self.plan.files, file(&path, content.into(), None))
    }

    /// A file rendered from the component's `template`, which sees `config` (the settings),
    /// `facts` (the target) and `vars` (the component's own values).
    pub fn template(
        &mut self,
        path: impl AsRef<Path>,
        template: &str,
        vars: impl Serialize,
    ) -> Result<FileRef<'_>> {
        let name = format!("{}/{template}", self.component);
        let context = minijinja::context! {
            config => self.config,
            facts => self.facts,
            foreground => self.facts.foreground(),
            vars => minijinja::Value::from_serialize(&vars),
        };
        let content = self
            .templates
            .render(&name, context)
            .with_context(|| format!("rendering {}", path.as_ref().display()))?;
        let path = path.as_ref().to_string_lossy().into_owned();
        Ok(push(
            &mut self.plan.files,
            file(&path, content.into_bytes(), Some(name)),
        ))
    }

    /// Runs `argv` once to create `creates` (a key, a certificate); never while they exist.
    pub fn generate(&mut self, generate: Generate) {
        self.plan.generates.push(generate);
    }

    /// Runs `argv` whenever `path` (declared by this component) changed.
    pub fn on_change(&mut self, path: &str, argv: &[&str]) {
        self.plan.on_change.push(OnChange {
            path: path.into(),
            argv: owned(argv),
        });
    }

    /// Checks the component's configuration with the real program before its changed files
    /// replace the live ones: `argv` followed by the staged copy of `input` (a file, or a
    /// directory such as Postfix's `-c` takes).
    pub fn validate(&mut self, argv: &[&str], input: &str, strict_stderr: bool) {
        self.plan.validators.push(Validator {
            argv: owned(argv),
            input: input.into(),
            strict_stderr,
        });
    }

    /// Deletes `path` if present (e.g. the file of a feature a setting turned off).
    pub fn remove(&mut self, path: &str) {
        self.plan.removals.push(path.into());
    }

    /// Restarts this component's services whenever another component changes `path`.
    pub fn watch(&mut self, path: &str) {
        self.plan.watches.push(path.into());
    }

    /// Tells the operator something about this deployment without failing it (e.g. a
    /// setting that turns a part of the relay off); printed when configure runs.
    pub fn warn(&mut self, text: &str) {
        self.plan.warnings.push(text.to_owned());
    }

    /// Fails the run before anything is touched unless `path` exists on the target.
    pub fn require_file(&mut self, path: impl AsRef<Path>, why: &str) {
        self.plan.required.push(Required {
            path: path.as_ref().to_owned(),
            why: why.to_owned(),
        });
    }
}

impl<'a> Activate<'a> {
    pub(crate) fn new(config: &'a Config, facts: &'a Facts) -> Self {
        Activate {
            config,
            facts,
            plan: ActivatePlan::default(),
        }
    }

    /// A unit and the state it should be in; on a container, its foreground command.
    pub fn service(&mut self, service: Service) {
        self.plan.services.push(service);
    }

    /// Declares that this component's daemons listen on `port` under one of `allowed` names.
    pub fn port(&mut self, port: u16, allowed: &[&str]) {
        self.plan.ports.push(Port {
            port,
            allowed: owned(allowed),
        });
    }

    /// Declares that a daemon binds to `address`, chosen by `setting`, which must therefore be
    /// an address of this host.
    pub fn local_address(&mut self, setting: &str, address: IpAddr) {
        self.plan.addresses.push(LocalAddress {
            address,
            setting: setting.to_owned(),
        });
    }

    /// Declares `path` as data that outlives containers (a named volume in compose).
    pub fn state(&mut self, path: impl AsRef<Path>, why: &str) {
        self.volume(path.as_ref(), VolumeKind::State, why, None);
    }

    /// Declares `path` as a runtime directory (Unix sockets) that daemons in different
    /// containers share, owned by `user:group` with `mode` (what systemd's
    /// `RuntimeDirectory=` does on a host).
    pub fn runtime(&mut self, path: impl AsRef<Path>, owner: Owner, mode: u32, why: &str) {
        self.volume(path.as_ref(), VolumeKind::Runtime, why, Some((owner, mode)));
    }

    /// Declares `path` as a [`VolumeKind::Private`] directory: written by this component's
    /// daemon alone, a tmpfs in each of its containers, owned by `user:group` with `mode`.
    pub fn private(&mut self, path: impl AsRef<Path>, owner: Owner, mode: u32, why: &str) {
        self.volume(path.as_ref(), VolumeKind::Private, why, Some((owner, mode)));
    }

    /// Declares `path` as a [`VolumeKind::Secret`] state volume: kept like
    /// [`state`](Self::state), mounted only in this component's own containers.
    pub fn secret(&mut self, path: impl AsRef<Path>, why: &str) {
        self.volume(path.as_ref(), VolumeKind::Secret, why, None);
    }

    fn volume(&mut self, path: &Path, kind: VolumeKind, why: &str, owner: Option<(Owner, u32)>) {
        self.plan.volumes.push(Volume {
            path: path.to_owned(),
            kind,
            why: why.to_owned(),
            owner,
        });
    }

    /// Declares that this component's containers (its daemons, and the jobs' container when it
    /// declares jobs) use `component`'s volumes (its sockets, its certificate): they mount
    /// them, but its secrets and private directories. A container mounts nothing else but its
    /// own component's volumes.
    pub fn uses(&mut self, component: &str) {
        self.plan.uses.push(component.to_owned());
    }

    /// Declares that this component's containers read files `component` configures (its
    /// settings, the certificate links, the web pages): they configure it too at start.
    /// `component` must be one this component comes after.
    pub fn reads(&mut self, component: &str) {
        self.plan.reads.push(component.to_owned());
    }

    /// Declares a periodic job for containers: `argv` as `user` on the crontab `schedule`
    /// (the host runs the component's timer instead).
    pub fn job(&mut self, name: &str, schedule: &str, user: &str, argv: &[&str]) {
        self.plan.jobs.push(Job {
            name: name.to_owned(),
            schedule: schedule.to_owned(),
            user: user.to_owned(),
            argv: owned(argv),
        });
    }

    /// Runs `argv` after the component's services, as long as `while_exists` exists on the
    /// target; a failure prints `hint` as a warning instead of failing the run.
    pub fn attempt(&mut self, argv: &[&str], while_exists: &str, hint: &str) {
        self.plan.attempts.push(Attempt {
            argv: owned(argv),
            while_exists: while_exists.into(),
            hint: hint.to_owned(),
        });
    }
}

fn push(files: &mut Vec<File>, file: File) -> FileRef<'_> {
    let index = files.len();
    files.push(file);
    FileRef {
        file: &mut files[index],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_carries_its_container_command_and_health_check() {
        let service = Service::running("postfix.service")
            .foreground(&["postfix", "start-fg"])
            .before(&["/usr/lib/postfix/configure-instance.sh"])
            .prepare(&["postfix", "set-permissions"])
            .health(&["postfix", "status"])
            .capabilities(&["NET_BIND_SERVICE"]);
        assert_eq!(
            service.container,
            Some(Foreground {
                argv: owned(&["postfix", "start-fg"]),
                before: vec![owned(&["/usr/lib/postfix/configure-instance.sh"])],
                prepare: vec![owned(&["postfix", "set-permissions"])],
                stop_signal: None,
                wake_on_stop: None,
                health: Some(Probe::Command(owned(&["postfix", "status"]))),
                capabilities: owned(&["NET_BIND_SERVICE"]),
            })
        );
        assert_eq!(Service::running("postfix.service").container, None);
    }

    #[test]
    #[should_panic(expected = "needs Service::foreground first")]
    fn a_health_check_needs_a_foreground_command() {
        let _ = Service::running("postfix.service").health(&["postfix", "status"]);
    }
}
