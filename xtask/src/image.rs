//! `cargo xtask image`: the relay's container image, built with the engine at hand (docker or
//! podman) from a base image, with only `cmdeploy run --phase install` run inside.
//!
//! Layers, cheapest to change last: the Debian packages and our delay-free Dovecot (a
//! `--packages-only` install run in a container by a copy of cmdeploy that is refreshed only
//! when the package list changes, with the `.deb` files of `cargo xtask dovecot`, both mounted
//! and committed as one layer kept by its key across code changes), then cmdeploy and the relay's programs (templates are inside
//! cmdeploy; the iroh relay server of `cargo xtask iroh-relay` always among them) with the
//! rest of the install phase, then the labels.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::dovecot::DEBS_ENV;
use sha2::{Digest, Sha256};

use crate::{bundle, check, iroh_relay, rootfs, workspace};

/// The base image unless `--base` says otherwise.
pub const DEFAULT_BASE: &str = "debian:bookworm";
/// What the cached Debian 12 rootfs is imported as when [`DEFAULT_BASE`] is not in the engine
/// (no registry needed).
pub const LOCAL_BASE: &str = "localhost/cmdeploy-debian:bookworm";
/// The tag unless `--tag` says otherwise (what `cmdeploy compose` names by default).
pub const DEFAULT_TAG: &str = "chatmail-relay:latest";

/// A container engine's command line: its program and extra environment.
#[derive(Debug, Clone)]
pub struct Engine {
    pub program: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Engine {
    /// `docker` or `podman` by name, or the first of them on `PATH` when `None`.
    pub fn find(name: Option<&str>) -> Result<Engine> {
        let candidates = match name {
            Some(name @ ("docker" | "podman")) => vec![name],
            Some(other) => bail!("unknown engine {other:?}; use docker or podman"),
            None => vec!["docker", "podman"],
        };
        let path = std::env::var_os("PATH").unwrap_or_default();
        for candidate in &candidates {
            for dir in std::env::split_paths(&path) {
                let program = dir.join(candidate);
                if program.is_file() {
                    return Ok(Engine {
                        program,
                        env: Vec::new(),
                    });
                }
            }
        }
        bail!(
            "no container engine found on PATH (looked for {})",
            candidates.join(", ")
        )
    }

    /// A command of this engine.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.program);
        command.args(args);
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Fails, saying how to start it, unless the engine answers.
    pub fn ready(&self) -> Result<()> {
        let output = self
            .command(&["version"])
            .output()
            .with_context(|| format!("running {}", self.program.display()))?;
        if !output.status.success() {
            bail!(
                "{} does not answer (is its daemon running? see README.md, \"Running the relay in \
                 containers\"): {}",
                self.program.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    /// Whether the engine holds the image `name`.
    pub fn has_image(&self, name: &str) -> Result<bool> {
        let output = self
            .command(&["image", "inspect", name])
            .output()
            .with_context(|| format!("running {}", self.program.display()))?;
        Ok(output.status.success())
    }

    /// The base image to build from: `base` itself, except that the default base, when the
    /// engine does not have it, is replaced by the cached Debian 12 rootfs (debootstrapped by
    /// [`rootfs::ensure`] if missing) imported as [`LOCAL_BASE`] once, which it says.
    pub fn base(&self, base: &str) -> Result<String> {
        if base != DEFAULT_BASE || self.has_image(base)? {
            return Ok(base.to_owned());
        }
        if !self.has_image(LOCAL_BASE)? {
            let tarball = rootfs::ensure()?;
            println!(
                "{base} is not in {}'s images: importing the cached Debian 12 rootfs {} as {LOCAL_BASE}",
                self.program.display(),
                tarball.display()
            );
            let mut import = self.command(&["import"]);
            import.arg(&tarball).arg(LOCAL_BASE).stdout(Stdio::null());
            check(&mut import).context("importing the base image")?;
        } else {
            println!(
                "{base} is not in {}'s images: using {LOCAL_BASE}",
                self.program.display()
            );
        }
        Ok(LOCAL_BASE.to_owned())
    }
}

/// What to build.
#[derive(Debug)]
pub struct Options {
    pub engine: Engine,
    pub base: String,
    pub tag: String,
    /// Directory holding cmdeploy and the relay's programs; `None` builds them in release mode.
    pub binaries: Option<PathBuf>,
}

/// Builds the image; returns the build context directory used.
pub fn build(options: &Options) -> Result<PathBuf> {
    options.engine.ready()?;
    let base = options.engine.base(&options.base)?;
    let binaries = match &options.binaries {
        Some(dir) => dir.clone(),
        None => {
            check(crate::cargo().args(["build", "--release", "--workspace", "--bins"]))?;
            workspace().join("target/release")
        }
    };
    let cmdeploy = binaries.join("cmdeploy");
    let context = workspace().join("target/image/context");
    // The relay's programs: replaced as a whole, so a program dropped from the list goes.
    let bin = context.join("bin");
    if bin.exists() {
        std::fs::remove_dir_all(&bin)?;
    }
    bundle::copy(&cmdeploy, &bin)?;
    // The image always carries the iroh relay server, also when it is not beside cmdeploy.
    if !bin.join(iroh_relay::NAME).exists() {
        iroh_relay::copy_to(&bin)?;
    }
    // The packages stage stays out of the build context: it is bind-mounted into the
    // container that installs the packages, never copied into the image.
    let stage = workspace().join("target/image/packages");
    refresh_packages_stage(&cmdeploy, &stage)?;
    stage_dovecot(&stage.join(DOVECOT_DEBS))?;
    let _ = std::fs::remove_dir_all(context.join("packages"));
    let packages = packages_image(&options.engine, &base, &stage)?;
    std::fs::write(context.join("Dockerfile"), DOCKERFILE)?;
    let revision = revision();
    let labels = [
        format!(
            "org.opencontainers.image.version={}",
            env!("CARGO_PKG_VERSION")
        ),
        format!("org.opencontainers.image.revision={revision}"),
        format!("org.opencontainers.image.source={}", source()),
    ];
    let base = format!("BASE={packages}");
    let mut build = options
        .engine
        .command(&["build", "--tag", &options.tag, "--build-arg", &base]);
    // The package layer reaches the Debian mirror through the host's network: engines
    // started without a bridge (as the tests' is) have no other.
    build.arg("--network=host");
    for label in &labels {
        build.args(["--label", label]);
    }
    build.arg(&context);
    check(&mut build).context("building the image")?;
    Ok(context)
}

/// The copy of cmdeploy that installs the packages, replaced only when the package list it
/// prints changed: an unchanged file keeps the engine's cached package layer.
fn refresh_packages_stage(cmdeploy: &Path, stage: &Path) -> Result<()> {
    let output = Command::new(cmdeploy)
        .args(["list", "--packages", "--config", "/nonexistent"])
        .output()
        .with_context(|| format!("running {}", cmdeploy.display()))?;
    if !output.status.success() {
        bail!(
            "cmdeploy list --packages failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let list = stage.join("packages.txt");
    if std::fs::read(&list).ok().as_deref() == Some(&output.stdout[..])
        && stage.join("cmdeploy").exists()
    {
        return Ok(());
    }
    std::fs::create_dir_all(stage)?;
    std::fs::copy(cmdeploy, stage.join("cmdeploy"))?;
    std::fs::write(&list, &output.stdout)?;
    Ok(())
}

/// Where the packages stage is mounted in the container that installs the packages.
const STAGE_MOUNT: &str = "/usr/local/lib/cmdeploy-packages";

/// The base with the Debian packages and the delay-free Dovecot installed: a `--packages-only`
/// install run in a container of `base` with `stage` mounted read-only, then committed as one
/// layer that holds what the packages installed and nothing of the stage. Tagged with the
/// sha256 of the base image's id, the install script and the stage's files, so it is made again only when one of
/// them changes (a component's package list, the Dovecot packages, the base).
fn packages_image(engine: &Engine, base: &str, stage: &Path) -> Result<String> {
    let id = engine
        .command(&["image", "inspect", "--format", "{{.Id}}", base])
        .output()
        .with_context(|| format!("inspecting {base}"))?;
    if !id.status.success() {
        bail!("the base image {base} is not in the engine");
    }
    // The variable is set in the script, not on the container: a commit would keep it.
    let script = format!(
        "{DEBS_ENV}={STAGE_MOUNT}/{DOVECOT_DEBS} {STAGE_MOUNT}/cmdeploy run --ssh-host @local \\
         --phase install --packages-only --config /nonexistent \\
         && rm -rf /var/cache/cmdeploy/debs /var/lib/apt/lists/* /var/cache/apt/*.bin \\
         && rm -f {PACKAGE_KEYS}"
    );
    let mut hasher = Sha256::new();
    hasher.update(&id.stdout);
    hasher.update(script.as_bytes());
    let mut files = vec![stage.join("cmdeploy"), stage.join("packages.txt")];
    let mut debs: Vec<PathBuf> = std::fs::read_dir(stage.join(DOVECOT_DEBS))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    debs.sort();
    files.extend(debs);
    for file in &files {
        hasher.update(
            file.file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        let mut reader =
            std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
        std::io::copy(&mut reader, &mut hasher)?;
    }
    let key: String = hasher.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let tag = format!("{PACKAGES_IMAGE}:{key}");
    if engine.has_image(&tag)? {
        return Ok(tag);
    }
    let container = "cmdeploy-packages-build";
    let _ = engine.command(&["rm", "--force", container]).output();
    let mount = format!("{}:{STAGE_MOUNT}:ro", stage.display());
    // The host's network: engines started without a bridge (as the tests' is) have no other
    // way to the Debian mirror.
    let mut run = engine.command(&[
        "run",
        "--name",
        container,
        "--network",
        "host",
        "--volume",
        &mount,
        "--entrypoint",
        "sh",
        base,
        "-c",
        &script,
    ]);
    let installed = check(&mut run).context("installing the packages");
    let committed = installed.and_then(|()| {
        check(&mut engine.command(&["commit", container, &tag])).context("committing the packages")
    });
    let _ = engine.command(&["rm", "--force", container]).output();
    committed.map(|()| tag)
}

/// The repository of the packages images ([`packages_image`]).
const PACKAGES_IMAGE: &str = "localhost/cmdeploy-packages";

/// The directory of the packages stage holding the delay-free Dovecot's `.deb` files.
const DOVECOT_DEBS: &str = "dovecot-debs";

/// Copies the delay-free Dovecot's packages (`cargo xtask dovecot`, built unless cached) into
/// `dir`, replacing what was there: the image always carries them. The engine caches the
/// layer by content, so unchanged packages keep it.
fn stage_dovecot(dir: &Path) -> Result<()> {
    let debs = crate::dovecot::ensure()?;
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    for entry in std::fs::read_dir(&debs)? {
        let path = entry?.path();
        let name = path.file_name().context("a .deb file name")?;
        std::fs::copy(&path, dir.join(name))
            .with_context(|| format!("copying {}", path.display()))?;
    }
    Ok(())
}

/// The private keys (and their certificates) Debian's package scripts make at install time:
/// the same in every image built from this layer, so none may stay (the relay's own are made
/// per deployment, in volumes).
const PACKAGE_KEYS: &str = "/etc/ssl/private/ssl-cert-snakeoil.key \\
    /etc/ssl/certs/ssl-cert-snakeoil.pem /etc/dovecot/private/dovecot.key \\
    /etc/dovecot/private/dovecot.pem";

/// The Dockerfile: the programs copied straight to where install puts them (so install
/// finds them in place and the image holds one copy), then the rest of install: users,
/// directories, deployment-independent files; then the copy of the directories that are
/// tmpfs in containers. Changes with every code change, quickly.
const DOCKERFILE: &str = "\
# Written by `cargo xtask image`. BASE: the base with the Debian packages and the delay-free
# Dovecot installed (one layer, made in a container with the packages mounted, then committed).
ARG BASE
FROM ${BASE}
ENV CHATMAIL_INI=/etc/chatmail/chatmail.ini
COPY bin/ /usr/local/bin/
RUN [\"cmdeploy\", \"run\", \"--ssh-host\", \"@local\", \"--phase\", \"install\", \"--config\", \"/nonexistent\"]
# Containers run with a read-only root and tmpfs where they write; their entrypoint fills
# each tmpfs from this copy of what the image holds there (cmdeploy's container::SEED).
RUN mkdir -p /usr/local/share/cmdeploy/seed \\
    && cp -a --parents /etc /run /tmp /var/lib /var/log /var/www /usr/local/lib /usr/local/share/cmdeploy/seed/
ENTRYPOINT [\"cmdeploy\", \"container\"]
CMD [\"--help\"]
";

/// The source revision (`git rev-parse HEAD`), or `unknown` outside a checkout.
fn revision() -> String {
    Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(workspace())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or("unknown".into(), |o| {
            String::from_utf8_lossy(&o.stdout).trim().to_owned()
        })
}

/// The repository named in the workspace's Cargo.toml.
fn source() -> String {
    let manifest = std::fs::read_to_string(workspace().join("Cargo.toml")).unwrap_or_default();
    manifest
        .lines()
        .find_map(|line| line.strip_prefix("repository = "))
        .map_or("unknown".into(), |value| value.trim_matches('"').to_owned())
}
