//! init's record of its last success, kept in a volume of its own: a start of `init` whose
//! settings, environment and image are those of that success, with every secret still in
//! place, has nothing to do and exits at once. Podman starts a service's dependencies with it
//! (podman-compose gives each daemon `--requires init`), so without this every daemon's start
//! would configure the whole relay again; docker-compose's `up -d` on existing volumes gains
//! the same shortcut.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chatmail_core::engine::Planned;
use chatmail_core::plan::VolumeKind;
use sha2::{Digest, Sha256};

/// The volume holding the record (mounted by init alone).
pub const DIR: &str = "/var/lib/cmdeploy-init";

/// What init's configure is a function of, as a digest.
#[derive(Debug, PartialEq, Eq)]
pub struct Stamp(String);

impl Stamp {
    /// The digest of the settings file, every `CHATMAIL_*` variable (with the content of the
    /// files the `_FILE` ones name) and this cmdeploy executable's size and time (the image).
    pub fn of(config_path: &Path) -> Result<Stamp> {
        let mut hasher = Sha256::new();
        let settings = std::fs::read(config_path)
            .with_context(|| format!("reading {}", config_path.display()))?;
        hasher.update(&settings);
        let mut vars: Vec<(String, String)> = std::env::vars()
            .filter(|(key, _)| key.starts_with("CHATMAIL_"))
            .collect();
        vars.sort();
        for (key, value) in &vars {
            hasher.update(format!("\n{key}={value}\n").as_bytes());
            if key.ends_with("_FILE") {
                hasher.update(std::fs::read(value).unwrap_or_default());
            }
        }
        // The image, by its cmdeploy (which embeds the templates): size and modification
        // time, as a build of the image sets them; reading it whole would cost each start.
        let exe = std::env::current_exe().context("finding the cmdeploy executable")?;
        let meta = exe
            .metadata()
            .with_context(|| format!("reading {}", exe.display()))?;
        let image = format!("\n{} {}.{}\n", meta.len(), meta.mtime(), meta.mtime_nsec());
        hasher.update(image.as_bytes());
        let digest = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Stamp(digest))
    }

    fn path() -> PathBuf {
        Path::new(DIR).join("succeeded")
    }

    /// Whether init last succeeded with this digest and every secret the plans make once in
    /// a state volume is still there (the others, such as links to them, live in each
    /// container's own layer, made by each container that configures their component). False
    /// without the volume (a compose file of an earlier release).
    pub fn done(&self, plans: &[Planned]) -> bool {
        let recorded = std::fs::read_to_string(Self::path()).unwrap_or_default();
        let kept: Vec<&Path> = plans
            .iter()
            .flat_map(|p| p.activate.iter().flat_map(|a| &a.volumes))
            .filter(|v| matches!(v.kind, VolumeKind::State | VolumeKind::Secret))
            .map(|v| v.path.as_path())
            .collect();
        let mut secrets = plans
            .iter()
            .filter_map(|p| p.configure.as_ref())
            .flat_map(|c| &c.generates)
            .filter_map(|g| g.creates.first())
            .filter(|secret| kept.iter().any(|volume| secret.starts_with(volume)));
        recorded.trim() == self.0 && secrets.all(|secret| secret.exists())
    }

    /// Records a success (atomically), where the volume is mounted.
    pub fn record(&self) -> Result<()> {
        if !Path::new(DIR).is_dir() {
            return Ok(());
        }
        let path = Self::path();
        let twin = path.with_extension("tmp");
        std::fs::write(&twin, format!("{}\n", self.0))
            .with_context(|| format!("writing {}", twin.display()))?;
        std::fs::rename(&twin, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}
