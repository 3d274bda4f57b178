//! `cargo xtask image`: the relay's container image, built with the engine at hand (docker or
//! podman) from a base image, with only `cmdeploy run --phase install` run inside.
//!
//! Layers, cheapest to change last: the Debian packages and our delay-free Dovecot (a
//! `--packages-only` install run by a copy of cmdeploy that is refreshed only when the package
//! list changes, with the `.deb` files of `cargo xtask dovecot`, so the layer is cached across
//! code changes), then cmdeploy and the relay's programs (templates are inside
//! cmdeploy; the iroh relay server of `cargo xtask iroh-relay` always among them) with the
//! rest of the install phase, then the labels.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::dovecot::DEBS_ENV;
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
    refresh_packages_stage(&cmdeploy, &context.join("packages"))?;
    stage_dovecot(&context.join("packages").join(DOVECOT_DEBS))?;
    std::fs::write(context.join("Dockerfile"), dockerfile())?;
    let revision = revision();
    let labels = [
        format!(
            "org.opencontainers.image.version={}",
            env!("CARGO_PKG_VERSION")
        ),
        format!("org.opencontainers.image.revision={revision}"),
        format!("org.opencontainers.image.source={}", source()),
    ];
    let base = format!("BASE={base}");
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

/// The Dockerfile: packages first, programs next (copied straight to where install puts
/// them, so install finds them in place and the image holds one copy).
fn dockerfile() -> String {
    format!(
    "\
# Written by `cargo xtask image`.
ARG BASE
FROM ${{BASE}}
ENV CHATMAIL_INI=/etc/chatmail/chatmail.ini
# 1. Debian packages and the delay-free Dovecot only: rebuilt only when a component's
#    package list or those packages change.
COPY packages/ /usr/local/lib/cmdeploy-packages/
RUN {DEBS_ENV}=/usr/local/lib/cmdeploy-packages/{DOVECOT_DEBS} \\
        /usr/local/lib/cmdeploy-packages/cmdeploy run --ssh-host @local --phase install \\
        --packages-only --config /nonexistent \\
    && rm -rf /usr/local/lib/cmdeploy-packages /var/cache/cmdeploy/debs /var/lib/apt/lists/* \\
        /var/cache/apt/*.bin \\
    && rm -f {PACKAGE_KEYS}
# 2. cmdeploy (templates inside) and the relay's programs, then the rest of install: users,
#    directories, deployment-independent files. Changes with every code change, quickly.
COPY bin/ /usr/local/bin/
RUN [\"cmdeploy\", \"run\", \"--ssh-host\", \"@local\", \"--phase\", \"install\", \"--config\", \"/nonexistent\"]
ENTRYPOINT [\"cmdeploy\", \"container\"]
CMD [\"--help\"]
"
    )
}

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
