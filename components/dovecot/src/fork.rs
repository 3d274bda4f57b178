//! Upstream's delay-free Dovecot 2.3.21 (chatmail's fork): pinned `.deb` files by sha256 per
//! architecture, downloaded from upstream's server.

use anyhow::{Result, anyhow};
use chatmail_core::plan::Download;
use chatmail_core::{Facts, Install};

use crate::builds::{DEBS_ENV, PACKAGES};

/// The version dpkg reports for upstream's build, and how its file names spell it.
pub const VERSION: &str = "1:2.3.21+dfsg1-3";
const FILE_VERSION: &str = "2.3.21%2Bdfsg1-3";
const MIRROR: &str = "https://download.delta.chat/dovecot";

/// `(amd64 sha256, arm64 sha256)` of the pinned files, in the order of [`PACKAGES`].
const PINNED: [(&str, &str); 3] = [
    (
        "dd060706f52a306fa863d874717210b9fe10536c824afe1790eec247ded5b27d",
        "e7548e8a82929722e973629ecc40fcfa886894cef3db88f23535149e7f730dc9",
    ),
    (
        "8d8dc6fc00bbb6cdb25d345844f41ce2f1c53f764b79a838eb2a03103eebfa86",
        "178fa877ddd5df9930e8308b518f4b07df10e759050725f8217a0c1fb3fd707f",
    ),
    (
        "2f69ba5e35363de50962d42cccbfe4ed8495265044e244007d7ccddad77513ab",
        "89f52fb36524f5877a177dff4a713ba771fd3f91f22ed0af7238d495e143b38f",
    ),
];

/// The URL of `package`'s file for `deb_arch`.
fn file_url(package: &str, deb_arch: &str) -> String {
    format!("{MIRROR}/{package}_{FILE_VERSION}_{deb_arch}.deb")
}

/// The URL of the first pinned file for the target's architecture (to check it is reachable).
pub fn url(facts: &Facts) -> Result<String> {
    check_arch(facts)?;
    Ok(file_url(PACKAGES[0], &facts.deb_arch))
}

fn check_arch(facts: &Facts) -> Result<()> {
    match facts.arch.as_str() {
        "x86_64" | "aarch64" => Ok(()),
        other => Err(anyhow!(
            "upstream's delay-free Dovecot has no build for {other}; set {DEBS_ENV}=debian \
             or to a directory of .deb files"
        )),
    }
}

/// Declares upstream's files, fetched and checked by sha256 when a package is not at
/// [`VERSION`].
pub fn install(install: &mut Install<'_>) -> Result<()> {
    check_arch(install.facts)?;
    for (package, (amd64, arm64)) in PACKAGES.iter().zip(PINNED) {
        let rows = [
            ("x86_64", file_url(package, "amd64"), amd64),
            ("aarch64", file_url(package, "arm64"), arm64),
        ];
        let rows: Vec<(&str, &str, &str)> = rows
            .iter()
            .map(|(arch, url, sha256)| (*arch, url.as_str(), *sha256))
            .collect();
        let file = format!("{package}_{FILE_VERSION}_{}.deb", install.facts.deb_arch);
        let dest = format!("/var/cache/cmdeploy/debs/{file}");
        let mut download = Download::pinned(&dest, install.facts, &rows)?;
        download.mode = 0o644;
        install.deb(package, VERSION, download);
    }
    Ok(())
}
