//! Binaries fetched by URL (or copied from a local file), verified by sha256 before they
//! replace anything, and skipped when the installed file already matches.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::files::{self, Meta};
use crate::plan::{Download, DownloadSource};

/// True when the installed file is missing or differs from the expected checksum (or, for a
/// bundled binary, from the shipped file).
pub fn needed(dest: &Path, download: &Download) -> Result<bool> {
    let expected = match &download.source {
        DownloadSource::Bundled(path) => sha256_hex(&read_bundled(path)?),
        _ => download.sha256.to_ascii_lowercase(),
    };
    match std::fs::read(dest) {
        Ok(content) => Ok(sha256_hex(&content) != expected),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(err) => Err(err).with_context(|| format!("reading {}", dest.display())),
    }
}

/// Fetches, extracts and verifies `download`: the content to install. The target is not
/// touched.
pub fn fetch(download: &Download) -> Result<Vec<u8>> {
    let raw = match &download.source {
        DownloadSource::Url(url) => get(url)?,
        DownloadSource::Local(path) => {
            std::fs::read(path).with_context(|| format!("reading local file {}", path.display()))?
        }
        DownloadSource::Bundled(path) => return read_bundled(path),
    };
    let content = match &download.extract {
        Some(member) => extract(&raw, member)
            .with_context(|| format!("extracting {member} from {}", download.source))?,
        None => raw,
    };
    let actual = sha256_hex(&content);
    if actual != download.sha256.to_ascii_lowercase() {
        bail!(
            "sha256 mismatch for {}: expected {}, got {actual}; {} left unchanged",
            download.source,
            download.sha256,
            download.dest.display()
        );
    }
    Ok(content)
}

/// Installs fetched `content` at `dest` atomically with the download's mode.
pub fn install(dest: &Path, download: &Download, content: &[u8], owner: Meta) -> Result<()> {
    files::write_atomic(
        dest,
        content,
        Meta {
            mode: download.mode,
            ..owner
        },
    )
}

fn read_bundled(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| {
        format!(
            "the relay program {} is missing: build it (`cargo build --release`) next to cmdeploy, \
             or name its directory with --binaries",
            path.display()
        )
    })
}

/// Whether `url` answers a `HEAD` request within a few seconds: a quick check, before a plan
/// depends on a download, that this machine reaches its server.
pub fn reachable(url: &str) -> Result<()> {
    ureq::AgentBuilder::new()
        .timeout_connect(std::time::Duration::from_secs(3))
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .head(url)
        .call()
        .with_context(|| format!("reaching {url}"))?;
    Ok(())
}

fn get(url: &str) -> Result<Vec<u8>> {
    let response = ureq::AgentBuilder::new()
        .timeout_connect(std::time::Duration::from_secs(20))
        .timeout(std::time::Duration::from_secs(300))
        .build()
        .get(url)
        .call()
        .with_context(|| format!("downloading {url}"))?;
    let mut body = Vec::new();
    response
        .into_reader()
        .read_to_end(&mut body)
        .with_context(|| format!("downloading {url}"))?;
    Ok(body)
}

fn extract(archive: &[u8], member: &str) -> Result<Vec<u8>> {
    let wanted = member.trim_start_matches("./");
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    for entry in tar.entries()? {
        let mut entry = entry?;
        let path = entry
            .path()?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_owned();
        if path == wanted {
            let mut content = Vec::new();
            entry.read_to_end(&mut content)?;
            return Ok(content);
        }
    }
    bail!("the archive has no member {member}")
}

/// Lower-case hex sha256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
