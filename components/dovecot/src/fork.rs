//! Upstream's patched Dovecot 2.3.21 (chatmail's fork), as an opt-in instead of Debian's
//! 2.3.19: pinned `.deb` files by sha256 per architecture, and an apt pin that keeps Debian's
//! versions from replacing them.

use std::ffi::OsStr;
use std::path::PathBuf;

use anyhow::Result;
use chatmail_core::Install;
use chatmail_core::plan::Download;

/// Selects the patched build at install time (install cannot read chatmail.ini): `download`
/// fetches the pinned files from download.delta.chat; a directory holds them already.
pub const DEBS_ENV: &str = "CMDEPLOY_DOVECOT_DEBS";

/// Debian's packages, installed when the patched build is not asked for.
pub const PACKAGES: [&str; 3] = ["dovecot-core", "dovecot-imapd", "dovecot-lmtpd"];

/// The version dpkg reports for the patched build, and how its file names spell it.
const VERSION: &str = "1:2.3.21+dfsg1-3";
const FILE_VERSION: &str = "2.3.21%2Bdfsg1-3";
const MIRROR: &str = "https://download.delta.chat/dovecot";

/// `(package, amd64 sha256, arm64 sha256)` of the pinned files.
const PINNED: [(&str, &str, &str); 3] = [
    (
        "dovecot-core",
        "dd060706f52a306fa863d874717210b9fe10536c824afe1790eec247ded5b27d",
        "e7548e8a82929722e973629ecc40fcfa886894cef3db88f23535149e7f730dc9",
    ),
    (
        "dovecot-imapd",
        "8d8dc6fc00bbb6cdb25d345844f41ce2f1c53f764b79a838eb2a03103eebfa86",
        "178fa877ddd5df9930e8308b518f4b07df10e759050725f8217a0c1fb3fd707f",
    ),
    (
        "dovecot-lmtpd",
        "2f69ba5e35363de50962d42cccbfe4ed8495265044e244007d7ccddad77513ab",
        "89f52fb36524f5877a177dff4a713ba771fd3f91f22ed0af7238d495e143b38f",
    ),
];

/// Apt must never install Debian's Dovecot over the patched build.
const PIN: &str = "/etc/apt/preferences.d/pin-dovecot";
const PIN_TEXT: &str = "\
# Upstream's patched Dovecot is installed from .deb files (cmdeploy, CMDEPLOY_DOVECOT_DEBS);
# the archive's versions must not replace it.
Package: dovecot-*
Pin: version *
Pin-Priority: -1
";

/// Declares the patched build from `source`: `download`, or a directory of the files.
pub fn install(install: &mut Install<'_>, source: &OsStr) -> Result<()> {
    let local_dir = match source.to_str() {
        Some("download") => None,
        _ => Some(PathBuf::from(source)),
    };
    for (package, amd64, arm64) in PINNED {
        let file = format!("{package}_{FILE_VERSION}_{}.deb", install.facts.deb_arch);
        let releases = [
            (
                "x86_64",
                format!("{MIRROR}/{package}_{FILE_VERSION}_amd64.deb"),
                amd64,
            ),
            (
                "aarch64",
                format!("{MIRROR}/{package}_{FILE_VERSION}_arm64.deb"),
                arm64,
            ),
        ];
        let rows: Vec<(&str, &str, &str)> = releases
            .iter()
            .map(|(arch, url, sha256)| (*arch, url.as_str(), *sha256))
            .collect();
        let local = local_dir.as_ref().map(|dir| dir.join(&file));
        let dest = format!("/var/cache/cmdeploy/debs/{file}");
        let mut download =
            Download::pinned(&dest, install.facts, &rows, None, local).map_err(|_| {
                anyhow::anyhow!(
                    "{DEBS_ENV}: upstream's patched Dovecot has no build for {}; \
                     unset {DEBS_ENV} to use Debian's packages",
                    install.facts.arch
                )
            })?;
        download.mode = 0o644;
        install.deb(package, VERSION, download);
    }
    install.file(PIN, PIN_TEXT).restarts(&[]);
    Ok(())
}
