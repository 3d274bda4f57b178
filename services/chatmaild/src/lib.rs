//! The chatmail relay's own services: account creation, last-login, IMAP metadata with push
//! notifications, mailbox expiry, storage reports and the new-account endpoint.
//!
//! Shared pieces:
//! - [`dict`]: the Dovecot dict-proxy protocol server on a Unix socket.
//! - [`accounts`]: the per-account files under `mailboxes_dir` (password, last login, flags).
//! - [`files`]: atomic writes, lock files and day-rounded timestamps.
//! - [`random`]: random strings from the operating system's generator.
//! - [`crypt`]: `{SHA512-CRYPT}` password hashes as Dovecot reads them.
//!
//! One module per program (the binaries in `src/bin/` are thin wrappers):
//! - [`doveauth`]: Dovecot passdb/userdb that creates accounts on first login, with [`syslimits`].
//! - [`lastlogin`]: records IMAP logins as the password file's mtime.
//! - [`metadata`]: IMAP METADATA (device tokens, server keys) and [`tokens`], feeding the
//!   [`notifier`] queue.
//! - [`expire`]: age, size and inactivity expiry, and the quota trim of `chatmail-quota-expire`.
//! - [`fsreport`]: storage and account statistics, optionally as Prometheus text.
//! - [`newemail`]: the CGI that suggests a fresh address and password.

pub mod accounts;
pub mod crypt;
pub mod dict;
pub mod doveauth;
pub mod expire;
pub mod files;
pub mod fsreport;
pub mod lastlogin;
pub mod metadata;
pub mod newemail;
pub mod notifier;
pub mod random;
pub mod syslimits;
pub mod tokens;

/// Where deployments keep `chatmail.ini`; the default of every program's ini argument.
pub const DEFAULT_INI: &str = chatmail_config::RELAY_SETTINGS_PATH;

/// Loads `chatmail.ini` with an error that names the file.
pub fn load_config(path: &std::path::Path) -> anyhow::Result<chatmail_config::Config> {
    chatmail_config::Config::load(path).map_err(|err| anyhow::anyhow!("{err}"))
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
