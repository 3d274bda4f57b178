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
    if let DownloadSource::Bundled(path) = &download.source {
        return differs(path, dest);
    }
    let expected = download.sha256.to_ascii_lowercase();
    match std::fs::read(dest) {
        Ok(content) => Ok(sha256_hex(&content) != expected),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(err) => Err(err).with_context(|| format!("reading {}", dest.display())),
    }
}

/// Fetches and verifies `download`: the content to install. The target is not touched.
pub fn fetch(download: &Download) -> Result<Vec<u8>> {
    let content = match &download.source {
        DownloadSource::Url(url) => get(url)?,
        DownloadSource::Local(path) => {
            std::fs::read(path).with_context(|| format!("reading local file {}", path.display()))?
        }
        DownloadSource::Bundled(path) => return read_bundled(path),
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

/// Whether `dest` is missing or differs from the bundled program at `source`: sizes first,
/// then the bytes, compared a block at a time (no checksum: both files are here).
fn differs(source: &Path, dest: &Path) -> Result<bool> {
    let missing = |err: std::io::Error| bundled_missing(source, err);
    let size = std::fs::metadata(source).map_err(missing)?.len();
    match std::fs::metadata(dest) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(err) => return Err(err).with_context(|| format!("inspecting {}", dest.display())),
        Ok(meta) if meta.len() != size => return Ok(true),
        Ok(_) => {}
    }
    let open = |path: &Path| {
        std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))
    };
    let (mut a, mut b) = (open(source)?, open(dest)?);
    let (mut block_a, mut block_b) = (vec![0; 1 << 16], vec![0; 1 << 16]);
    loop {
        let n = a
            .read(&mut block_a)
            .with_context(|| format!("reading {}", source.display()))?;
        if n == 0 {
            return Ok(false);
        }
        b.read_exact(&mut block_b[..n])
            .with_context(|| format!("reading {}", dest.display()))?;
        if block_a[..n] != block_b[..n] {
            return Ok(true);
        }
    }
}

fn bundled_missing(path: &Path, err: std::io::Error) -> anyhow::Error {
    anyhow::Error::new(err).context(format!(
        "the relay program {} is missing: build it (`cargo build --release`) next to cmdeploy, \
         or name its directory with --binaries",
        path.display()
    ))
}

fn read_bundled(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|err| bundled_missing(path, err))
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

/// Lower-case hex sha256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundled_program_differs_when_missing_or_not_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (source, dest) = (dir.path().join("filtermail"), dir.path().join("installed"));
        let program: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&source, &program).unwrap();
        assert!(differs(&source, &dest).unwrap(), "missing");
        std::fs::write(&dest, &program).unwrap();
        assert!(!differs(&source, &dest).unwrap(), "the same bytes");
        let mut other = program.clone();
        other[150_000] ^= 1;
        std::fs::write(&dest, &other).unwrap();
        assert!(
            differs(&source, &dest).unwrap(),
            "one byte in a later block"
        );
        std::fs::write(&dest, &program[..100]).unwrap();
        assert!(differs(&source, &dest).unwrap(), "another size");
        let err = differs(&dir.path().join("gone"), &dest).unwrap_err();
        assert!(
            format!("{err:#}").contains("is missing: build it"),
            "{err:#}"
        );
    }
}
