//! The typed `Config`: every setting with its default applied, derived values computed and
//! each value's origin recorded.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use crate::ini;
use crate::schema::{DefaultValue, KEYS, Key, Kind, keys};
use crate::{Error, brief};

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// The schema's default.
    Default,
    /// Computed from other settings.
    Derived,
    /// Not set, and no default applies.
    Unset,
    /// A line of the config file.
    File {
        /// The settings file.
        path: PathBuf,
        /// The line the key is on (1-based).
        line: usize,
    },
    /// An environment variable.
    Env {
        /// Its name, e.g. `CHATMAIL_MAX_MESSAGE_SIZE`.
        var: String,
    },
    /// A file named by a `CHATMAIL_<KEY>_FILE` environment variable.
    EnvFile {
        /// The variable's name, e.g. `CHATMAIL_ACME_EMAIL_FILE`.
        var: String,
        /// The file it names, whose trimmed content is the value.
        path: PathBuf,
    },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::Derived => f.write_str("derived"),
            Source::Unset => f.write_str("unset"),
            Source::File { path, line } => write!(f, "{}:{line}", path.display()),
            Source::Env { var } => write!(f, "${var}"),
            Source::EnvFile { var, path } => write!(f, "${var} ({})", path.display()),
        }
    }
}

/// One key's effective raw value and its origin, as `cmdeploy config` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setting {
    /// The key's name.
    pub key: &'static str,
    /// The raw effective value; for a derived default, how it is derived; `None` if unset.
    pub value: Option<String>,
    /// Where the value came from.
    pub source: Source,
}

/// A key in the file that no setting reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnusedKey {
    /// The key as written.
    pub key: String,
    /// Its line in the file (1-based).
    pub line: usize,
}

/// How the relay gets its TLS certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Let's Encrypt through acmetool.
    Acme,
    /// A self-signed certificate made once on the relay (IPv4 relays and `_`-domains).
    #[serde(rename = "self")]
    SelfSigned,
    /// Certificate and key managed outside the relay.
    External,
}

impl TlsMode {
    /// The name upstream uses for the mode (`acme`, `self`, `external`).
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Acme => "acme",
            TlsMode::SelfSigned => "self",
            TlsMode::External => "external",
        }
    }
}

/// In ACME mode the services read the certificate through `<ACME_LINKS>/<domain>`, a link to
/// the self-signed stand-in or to acmetool's `/var/lib/acme/live/<domain>`.
pub const ACME_LINKS: &str = "/var/lib/chatmail-tls/live";

/// The folder of the default `mailboxes_dir`: `<MAILBOXES_ROOT>/<mail_domain>`, for an IPv4
/// relay the bare address (`/home/vmail/mail/1.2.3.4`), as upstream keeps it.
pub const MAILBOXES_ROOT: &str = "/home/vmail/mail";

/// The relay's certificate mode and where the certificate and key live on the relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tls {
    /// How the certificate is obtained.
    pub mode: TlsMode,
    /// The certificate chain (PEM) the services read.
    pub cert_path: PathBuf,
    /// The private key (PEM) the services read.
    pub key_path: PathBuf,
}

/// Every setting of `chatmail.ini`, typed, with defaults and derived values.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// The domain used in addresses: the configured value, or `[1.2.3.4]` for IPv4 relays.
    pub mail_domain: String,
    /// The configured value as written (no brackets).
    pub mail_domain_bare: String,
    /// The relay's address when `mail_domain` is an IPv4 address.
    pub ipv4_relay: Option<Ipv4Addr>,
    /// Postfix's `myhostname`: the domain, or the reverse-pointer name of an IPv4 relay.
    pub postfix_myhostname: String,
    /// The certificate mode and the paths the services read (derived).
    pub tls: Tls,
    /// Messages one account may send per minute (filtermail's rate limit).
    pub max_user_send_per_minute: u32,
    /// How many messages beyond the per-minute rate one account may send at once.
    pub max_user_send_burst_size: u32,
    /// The mailbox quota as written (`500M`), for Dovecot's `quota_rule`.
    pub max_mailbox_size: String,
    /// The mailbox quota in megabytes.
    pub max_mailbox_size_mb: u64,
    /// The largest accepted message, in bytes.
    pub max_message_size: u64,
    /// Days after which messages are deleted from mailboxes.
    pub delete_mails_after: u32,
    /// Days after which large messages are deleted.
    pub delete_large_after: u32,
    /// Days without a login after which an account is deleted.
    pub delete_inactive_users_after: u32,
    /// The shortest local part a new address may have.
    pub username_min_length: u32,
    /// The longest local part a new address may have.
    pub username_max_length: u32,
    /// The shortest password a new account may have.
    pub password_min_length: u32,
    /// Concurrent IMAP sessions in all (one process each).
    pub max_imap_connections: u32,
    /// Concurrent SMTP submission connections per port.
    pub max_smtp_connections: u32,
    /// Above this one-minute load average no new accounts are created.
    pub max_load_1m: f64,
    /// Below this much available memory (megabytes) no new accounts are created.
    pub min_available_memory_mb: u64,
    /// Below this much free disk space (megabytes) no new accounts are created.
    pub min_free_disk_space_mb: u64,
    /// The contact address given to Let's Encrypt (empty: none).
    pub acme_email: String,
    /// The website's source folder; empty for the built-in pages, `disabled` for none.
    pub www_folder: String,
    /// Whether the relay serves IPv4 only.
    pub disable_ipv6: bool,
    /// The iroh relay URL announced to clients.
    pub iroh_relay: String,
    /// Whether this relay runs its own iroh-relay (true when `iroh_relay` is not set).
    pub enable_iroh_relay: bool,
    /// Where mtail serves its metrics; `None`: mtail does not run.
    pub mtail_address: Option<String>,
    /// The TURN server's credentials socket, as chatmail-metadata is told.
    pub turn_socket_path: PathBuf,
    /// filtermail's before-queue proxy for outgoing mail.
    pub filtermail_smtp_port: u16,
    /// filtermail's before-queue proxy for incoming mail.
    pub filtermail_smtp_port_incoming: u16,
    /// filtermail's HTTP receiver behind `/mxdeliv`.
    pub filtermail_http_port_incoming: u16,
    /// filtermail's LMTP transport: Postfix's `default_transport` for remote delivery.
    pub filtermail_lmtp_port_transport: u16,
    /// Postfix's port where filtermail reinjects checked outgoing mail.
    pub postfix_reinject_port: u16,
    /// Postfix's port where filtermail reinjects checked incoming mail.
    pub postfix_reinject_port_incoming: u16,
    /// Whether raw IMAP sessions are recorded in each user's mail folder (debugging).
    pub imap_rawlog: bool,
    /// Whether Dovecot offers IMAP COMPRESS (which turns IMAP hibernation off).
    pub imap_compress: bool,
    /// Where the accounts' mail folders are (derived from the domain unless set).
    pub mailboxes_dir: PathBuf,
    /// The password database of very old relays, migrated once.
    pub passdb_path: PathBuf,
    /// The operator's postal address for the privacy policy.
    pub privacy_postal: Option<String>,
    /// The privacy contact's e-mail address.
    pub privacy_mail: Option<String>,
    /// The data protection officer.
    pub privacy_pdo: Option<String>,
    /// The data protection supervisory authority.
    pub privacy_supervisor: Option<String>,
    /// The file the settings were read from.
    #[serde(skip)]
    pub origin: PathBuf,
    /// Every declared key's effective value and origin, in schema order.
    #[serde(skip)]
    pub settings: Vec<Setting>,
    /// Keys in the file that no setting reads, in file order.
    #[serde(skip)]
    pub unused_keys: Vec<UnusedKey>,
}

/// Where to look up environment overrides; `None` means no environment at all.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

struct Raw {
    value: String,
    source: Source,
}

struct Loader {
    /// The built-in keys followed by the extension keys of linked components.
    keys: Vec<&'static Key>,
    raw: BTreeMap<&'static str, Raw>,
}

impl Config {
    /// Reads `path` alone, as the relay's services do.
    pub fn load(path: &Path) -> Result<Config, Error> {
        Self::load_with_env(path, &|_| None)
    }

    /// Reads `path`, then applies `CHATMAIL_<KEY>` and `CHATMAIL_<KEY>_FILE` overrides from `env`.
    pub fn load_with_env(path: &Path, env: EnvLookup<'_>) -> Result<Config, Error> {
        Self::load_extended(path, env, &[])
    }

    /// Like [`Config::load_with_env`], and also reads the extension keys `extra` that
    /// components outside the built-in schema declare (see [`Config::extension`]).
    pub fn load_extended(
        path: &Path,
        env: EnvLookup<'_>,
        extra: &[&'static Key],
    ) -> Result<Config, Error> {
        if let Ok(meta) = std::fs::metadata(path)
            && meta.len() > MAX_FILE_BYTES
        {
            return Err(Error::new(format!(
                "{} is {} bytes; a settings file is at most {MAX_FILE_BYTES} bytes",
                path.display(),
                meta.len()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|err| {
            if err.kind() == std::io::ErrorKind::NotFound {
                Error::new(format!(
                    "expecting {} to exist, run `cmdeploy init <domain>` first",
                    path.display()
                ))
            } else {
                Error::new(format!("cannot read {}: {err}", path.display()))
            }
        })?;
        Self::parse_extended(&text, path, env, extra)
    }

    /// Parses config text that came from `origin` (used in messages), applying `env` overrides.
    pub fn parse(text: &str, origin: &Path, env: EnvLookup<'_>) -> Result<Config, Error> {
        Self::parse_extended(text, origin, env, &[])
    }

    /// Like [`Config::parse`], with the extension keys `extra`: each is read from `[params]`
    /// and the environment like a built-in key, checked against its [`Kind`], listed in
    /// [`Config::settings`], and never reported as unused.
    pub fn parse_extended(
        text: &str,
        origin: &Path,
        env: EnvLookup<'_>,
        extra: &[&'static Key],
    ) -> Result<Config, Error> {
        let sections = ini::parse(text).map_err(|err| {
            Error::new(format!(
                "{}:{}: {}",
                origin.display(),
                err.line,
                err.message
            ))
        })?;
        let Some(params) = sections.iter().find(|s| s.name == "params") else {
            return Err(Error::new(format!(
                "{}: no [params] section; all settings belong under [params]",
                origin.display()
            )));
        };
        let mut loader = Loader {
            keys: KEYS.iter().chain(extra).copied().collect(),
            raw: BTreeMap::new(),
        };
        let mut unused_keys = Vec::new();
        for entry in &params.entries {
            let Some(key) = loader.key(&entry.key) else {
                unused_keys.push(UnusedKey {
                    key: entry.key.clone(),
                    line: entry.line,
                });
                continue;
            };
            let source = Source::File {
                path: origin.to_owned(),
                line: entry.line,
            };
            if let Some(earlier) = loader.raw.get(key.name) {
                return Err(Error::new(format!(
                    "{}:{}: {} is set twice (also at {})",
                    origin.display(),
                    entry.line,
                    key.name,
                    earlier.source
                )));
            }
            loader.raw.insert(
                key.name,
                Raw {
                    value: entry.value.clone(),
                    source,
                },
            );
        }
        loader.apply_env(env)?;
        loader.check_values()?;
        for key in extra {
            loader.check_extension(key)?;
        }
        let mut config = loader.build()?;
        config.origin = origin.to_owned();
        config.unused_keys = unused_keys;
        Ok(config)
    }

    /// Refuses privacy contacts copied from the maintainers' own relays (upstream's `check_config`).
    pub fn check_privacy(&self) -> Result<(), Error> {
        let bare = &self.mail_domain_bare;
        if bare == "testrun.org" || bare.ends_with(".testrun.org") {
            return Ok(());
        }
        let contacts = [
            (keys::PRIVACY_POSTAL.name, &self.privacy_postal),
            (keys::PRIVACY_MAIL.name, &self.privacy_mail),
            (keys::PRIVACY_PDO.name, &self.privacy_pdo),
            (keys::PRIVACY_SUPERVISOR.name, &self.privacy_supervisor),
        ];
        for (key, value) in contacts {
            let value = value.as_deref().unwrap_or_default();
            if ["merlinux", "schmieder", "testrun.org"]
                .iter()
                .any(|word| value.contains(word))
            {
                return Err(Error::new(format!(
                    "{key} = {value:?}: please set your own privacy contacts/addresses in {}",
                    self.origin.display()
                )));
            }
        }
        Ok(())
    }

    /// Where an earlier release of this tool kept an IPv4 relay's mailboxes by default:
    /// `/home/vmail/mail/[<ip>]`, with brackets (upstream, and now this tool, leave them out).
    /// `None` for a domain, or when `mailboxes_dir` is set: then nothing was kept there by us.
    pub fn bracketed_mailboxes_dir(&self) -> Option<PathBuf> {
        let ip = self.ipv4_relay?;
        let derived = self
            .setting(keys::MAILBOXES_DIR.name)
            .is_some_and(|setting| setting.source == Source::Derived);
        derived.then(|| Path::new(MAILBOXES_ROOT).join(format!("[{ip}]")))
    }

    /// The folder of one account: `<mailboxes_dir>/<addr>`.
    pub fn mailbox_dir(&self, addr: &str) -> Result<PathBuf, Error> {
        if addr.is_empty() || !addr.contains('@') || addr.contains('/') {
            return Err(Error::new(format!("invalid address {addr:?}")));
        }
        Ok(self.mailboxes_dir.join(addr))
    }

    /// The setting of `key` as `cmdeploy config` shows it.
    pub fn setting(&self, key: &str) -> Option<&Setting> {
        self.settings.iter().find(|s| s.key == key)
    }

    /// The effective value of the extension key `name` (declared by a linked component, see
    /// [`Config::parse_extended`]), parsed as `T`: `u16` for a [`Kind::Port`], `u32` for a
    /// [`Kind::Count`] or [`Kind::Days`], `f64` for a [`Kind::Decimal`], `bool` for a
    /// [`Kind::Bool`], `String` or `PathBuf` for the others. The value was checked against
    /// its kind when the settings were read, so an error here means `T` does not fit the kind.
    pub fn extension<T: std::str::FromStr>(&self, name: &str) -> Result<T, Error> {
        let setting = self
            .setting(name)
            .ok_or_else(|| Error::new(format!("{name} is not a declared setting")))?;
        let value = match (&setting.source, &setting.value) {
            (Source::Derived | Source::Unset, _) | (_, None) => {
                return Err(Error::new(format!("{name} is not set")));
            }
            (_, Some(value)) => value,
        };
        value.parse().map_err(|_| {
            Error::new(format!(
                "{name} = {value:?} ({}): cannot be read as {}",
                setting.source,
                std::any::type_name::<T>()
            ))
        })
    }

    /// The settings in `chatmail.ini` form: every key that was set (in the file or the
    /// environment), so that programs reading the file see exactly the effective values.
    pub fn effective_ini(&self) -> String {
        let mut out = String::from("[params]\n");
        for setting in &self.settings {
            if matches!(
                setting.source,
                Source::Default | Source::Derived | Source::Unset
            ) {
                continue;
            }
            let value = setting.value.as_deref().unwrap_or_default();
            out.push_str(&format!(
                "{} = {}\n",
                setting.key,
                value.replace('\n', "\n    ")
            ));
        }
        out
    }
}

impl Loader {
    fn key(&self, name: &str) -> Option<&'static Key> {
        self.keys.iter().copied().find(|k| k.name == name)
    }

    fn apply_env(&mut self, env: EnvLookup<'_>) -> Result<(), Error> {
        for key in self.keys.clone() {
            let var = key.env_var();
            let file_var = format!("{var}_FILE");
            if let Some(value) = env(&var) {
                self.raw.insert(
                    key.name,
                    Raw {
                        value: value.trim().to_owned(),
                        source: Source::Env { var },
                    },
                );
            } else if let Some(path) = env(&file_var) {
                let size = std::fs::metadata(&path).map_or(0, |meta| meta.len());
                if size > MAX_VALUE_BYTES as u64 {
                    return Err(Error::new(format!(
                        "${file_var}: {path} is {size} bytes; a value is at most {MAX_VALUE_BYTES}"
                    )));
                }
                let value = std::fs::read_to_string(&path)
                    .map_err(|err| Error::new(format!("${file_var}: cannot read {path}: {err}")))?;
                self.raw.insert(
                    key.name,
                    Raw {
                        value: value.trim().to_owned(),
                        source: Source::EnvFile {
                            var: file_var,
                            path: path.into(),
                        },
                    },
                );
            }
        }
        Ok(())
    }

    /// The raw value of `name` (or its default) and where it came from.
    fn raw(&self, key: &'static Key) -> Option<(&str, Source)> {
        if let Some(raw) = self.raw.get(key.name) {
            return Some((raw.value.as_str(), raw.source.clone()));
        }
        match key.default {
            DefaultValue::Value(v) => Some((v, Source::Default)),
            _ => None,
        }
    }

    /// Refuses, before any value is used, values too long to be settings and control
    /// characters, which would break out of the line of a configuration file they are
    /// written to (only [`Kind::Lines`] values may span lines).
    fn check_values(&self) -> Result<(), Error> {
        for (name, raw) in &self.raw {
            let kind = self.key(name).map_or(Kind::Text, |key| key.kind);
            let allowed = |c: char| c == '\n' && kind == Kind::Lines;
            let why = if raw.value.len() > MAX_VALUE_BYTES {
                format!("at most {MAX_VALUE_BYTES} bytes")
            } else if raw.value.chars().any(|c| c.is_control() && !allowed(c)) {
                "a single line without control characters".to_owned()
            } else {
                continue;
            };
            return Err(self.invalid(name, &raw.value, &raw.source, &why));
        }
        Ok(())
    }

    fn invalid(&self, name: &str, value: &str, source: &Source, why: &str) -> Error {
        let value = brief(value);
        let place = match source {
            Source::File { path, line } => format!("{}:{line}: {name} = {value:?}", path.display()),
            Source::Env { var } | Source::EnvFile { var, .. } => format!("${var}={value:?}"),
            Source::Default | Source::Derived | Source::Unset => format!("{name} = {value:?}"),
        };
        Error::new(format!("{place}: expected {why}"))
    }

    /// Parses `name` with `parse`, which returns `None` for a value of the wrong form.
    fn typed<T>(&self, key: &'static Key, parse: impl Fn(&str) -> Option<T>) -> Result<T, Error> {
        self.checked(key, key.kind.expectation(), parse)
    }

    /// Like [`Loader::typed`], with a rule of the key's own: `expected` describes it.
    fn checked<T>(
        &self,
        key: &'static Key,
        expected: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<T, Error> {
        let (value, source) = self
            .raw(key)
            .ok_or_else(|| Error::new(format!("{} must be set", key.name)))?;
        parse(value).ok_or_else(|| self.invalid(key.name, value, &source, expected))
    }

    /// Like [`Loader::typed`], but an absent key is `None` instead of an error.
    fn optional_typed<T>(
        &self,
        key: &'static Key,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, Error> {
        match self.raw(key) {
            None => Ok(None),
            Some(_) => self.typed(key, parse).map(Some),
        }
    }

    /// A whole number as the key's kind allows ([`Kind::Count`], [`Kind::Positive`] or
    /// [`Kind::Days`]).
    fn count(&self, key: &'static Key) -> Result<u32, Error> {
        self.typed(key, |v| {
            key.kind.accepts(v).then(|| v.parse().ok()).flatten()
        })
    }

    fn port(&self, key: &'static Key) -> Result<u16, Error> {
        self.typed(key, |v| v.parse().ok().filter(|p| *p != 0))
    }

    fn flag(&self, key: &'static Key) -> Result<bool, Error> {
        self.typed(key, parse_bool)
    }

    fn size_mb(&self, key: &'static Key) -> Result<u64, Error> {
        self.typed(key, parse_size_mb)
    }

    /// `max_mailbox_size`: a size, and not zero (no mailbox could hold a message).
    fn mailbox_size_mb(&self) -> Result<u64, Error> {
        self.checked(
            keys::MAX_MAILBOX_SIZE,
            "a size above 0, such as 500M, 2G or 256 (megabytes)",
            |v| parse_size_mb(v).filter(|size| *size > 0),
        )
    }

    fn path(&self, key: &'static Key) -> Result<PathBuf, Error> {
        self.typed(key, |v| Some(PathBuf::from(v)).filter(|p| p.is_absolute()))
    }

    /// `mailboxes_dir`: the deployment gives it to vmail with mode 0700, so it must be a
    /// directory of its own, never `/`, a system directory or anything inside one.
    fn mailboxes_dir(&self) -> Result<PathBuf, Error> {
        let expected = "an absolute path of a directory of its own (without `.` or `..`): not \
                        `/`, a system directory or one inside /etc, /usr, /boot, /dev, /proc, \
                        /sys or /run";
        self.checked(keys::MAILBOXES_DIR, expected, |value| {
            let path = PathBuf::from(value);
            let plain = path.is_absolute()
                && path
                    .components()
                    .all(|part| matches!(part, Component::RootDir | Component::Normal(_)));
            // As the kernel reads it: `//etc/` is `/etc`, and `/` is the empty string here.
            let normal: String = path
                .components()
                .filter_map(|part| match part {
                    Component::Normal(name) => Some(format!("/{}", name.to_string_lossy())),
                    _ => None,
                })
                .collect();
            let system = SYSTEM_DIRS.contains(&normal.as_str())
                || SYSTEM_TREES
                    .iter()
                    .any(|tree| normal == *tree || normal.starts_with(&format!("{tree}/")));
            (plain && !system).then_some(path)
        })
    }

    fn text(&self, key: &'static Key) -> String {
        self.raw(key).map(|(v, _)| v.to_owned()).unwrap_or_default()
    }

    /// `None` when the key is absent; `Some` (possibly empty) when it was given.
    fn optional(&self, key: &'static Key) -> Option<String> {
        self.raw.get(key.name).map(|raw| raw.value.clone())
    }

    fn build(self) -> Result<Config, Error> {
        let mail_domain_bare = match self.raw(keys::MAIL_DOMAIN) {
            None => return Err(Error::new("mail_domain is not set; it is required")),
            Some((value, source)) if !is_valid_domain(value) => {
                return Err(self.invalid(
                    keys::MAIL_DOMAIN.name,
                    value,
                    &source,
                    Kind::Domain.expectation(),
                ));
            }
            Some((value, source)) if value.len() > MAX_DOMAIN_CHARS => {
                return Err(self.invalid(
                    keys::MAIL_DOMAIN.name,
                    value,
                    &source,
                    &format!(
                        "a domain of at most {MAX_DOMAIN_CHARS} characters: TLS certificates \
                         name it in their common name, which allows no more"
                    ),
                ));
            }
            Some((value, _)) => value.to_owned(),
        };
        let ipv4_relay: Option<Ipv4Addr> = mail_domain_bare.parse().ok();
        let (mail_domain, postfix_myhostname) = match ipv4_relay {
            Some(ip) => (format!("[{ip}]"), reverse_pointer(ip)),
            None => (mail_domain_bare.clone(), mail_domain_bare.clone()),
        };
        let tls = self.tls(&mail_domain_bare, ipv4_relay.is_some())?;
        let max_mailbox_size = self.text(keys::MAX_MAILBOX_SIZE);
        let iroh_setting = self.optional(keys::IROH_RELAY);
        let mtail_address = self
            .optional_typed(keys::MTAIL_ADDRESS, |v| {
                Kind::Address.accepts(v).then(|| v.to_owned())
            })?
            .filter(|v| !v.is_empty());
        let mailboxes_dir = match self.raw.contains_key(keys::MAILBOXES_DIR.name) {
            true => self.mailboxes_dir()?,
            false => Path::new(MAILBOXES_ROOT).join(&mail_domain_bare),
        };
        let config = Config {
            ipv4_relay,
            postfix_myhostname,
            tls,
            max_user_send_per_minute: self.count(keys::MAX_USER_SEND_PER_MINUTE)?,
            max_user_send_burst_size: self.count(keys::MAX_USER_SEND_BURST_SIZE)?,
            max_mailbox_size_mb: self.mailbox_size_mb()?,
            max_mailbox_size,
            max_message_size: self.count(keys::MAX_MESSAGE_SIZE)?.into(),
            delete_mails_after: self.count(keys::DELETE_MAILS_AFTER)?,
            delete_large_after: self.count(keys::DELETE_LARGE_AFTER)?,
            delete_inactive_users_after: self.count(keys::DELETE_INACTIVE_USERS_AFTER)?,
            username_min_length: self.count(keys::USERNAME_MIN_LENGTH)?,
            username_max_length: self.count(keys::USERNAME_MAX_LENGTH)?,
            password_min_length: self.count(keys::PASSWORD_MIN_LENGTH)?,
            max_imap_connections: self.count(keys::MAX_IMAP_CONNECTIONS)?,
            max_smtp_connections: self.count(keys::MAX_SMTP_CONNECTIONS)?,
            max_load_1m: self.typed(keys::MAX_LOAD_1M, |v| {
                v.parse::<f64>().ok().filter(|f| f.is_finite() && *f >= 0.0)
            })?,
            min_available_memory_mb: self.size_mb(keys::MIN_AVAILABLE_MEMORY)?,
            min_free_disk_space_mb: self.size_mb(keys::MIN_FREE_DISK_SPACE)?,
            acme_email: self.text(keys::ACME_EMAIL),
            www_folder: self.text(keys::WWW_FOLDER),
            disable_ipv6: self.flag(keys::DISABLE_IPV6)?,
            enable_iroh_relay: iroh_setting.is_none(),
            iroh_relay: iroh_setting.unwrap_or_else(|| format!("https://{mail_domain_bare}")),
            mtail_address,
            turn_socket_path: self.path(keys::TURN_SOCKET_PATH)?,
            filtermail_smtp_port: self.port(keys::FILTERMAIL_SMTP_PORT)?,
            filtermail_smtp_port_incoming: self.port(keys::FILTERMAIL_SMTP_PORT_INCOMING)?,
            filtermail_http_port_incoming: self.port(keys::FILTERMAIL_HTTP_PORT_INCOMING)?,
            filtermail_lmtp_port_transport: self.port(keys::FILTERMAIL_LMTP_PORT_TRANSPORT)?,
            postfix_reinject_port: self.port(keys::POSTFIX_REINJECT_PORT)?,
            postfix_reinject_port_incoming: self.port(keys::POSTFIX_REINJECT_PORT_INCOMING)?,
            imap_rawlog: self.flag(keys::IMAP_RAWLOG)?,
            imap_compress: self.flag(keys::IMAP_COMPRESS)?,
            mailboxes_dir,
            passdb_path: self.path(keys::PASSDB_PATH)?,
            privacy_postal: self.optional(keys::PRIVACY_POSTAL),
            privacy_mail: self.optional(keys::PRIVACY_MAIL),
            privacy_pdo: self.optional(keys::PRIVACY_PDO),
            privacy_supervisor: self.optional(keys::PRIVACY_SUPERVISOR),
            mail_domain,
            mail_domain_bare,
            origin: PathBuf::new(),
            settings: self.settings(),
            unused_keys: Vec::new(),
        };
        config.check_ports()?;
        if config.username_min_length > config.username_max_length {
            return Err(Error::new(format!(
                "username_min_length ({}) is larger than username_max_length ({})",
                config.username_min_length, config.username_max_length
            )));
        }
        Ok(config)
    }

    fn tls(&self, bare: &str, ipv4: bool) -> Result<Tls, Error> {
        let (external, source) = self
            .raw(keys::TLS_EXTERNAL_CERT_AND_KEY)
            .unwrap_or(("", Source::Default));
        if !external.is_empty() {
            let paths: Vec<&str> = external.split_whitespace().collect();
            let [cert, key] = paths[..] else {
                return Err(self.invalid(
                    keys::TLS_EXTERNAL_CERT_AND_KEY.name,
                    external,
                    &source,
                    "two space-separated absolute paths: certificate, then key",
                ));
            };
            if !cert.starts_with('/') || !key.starts_with('/') {
                return Err(self.invalid(
                    keys::TLS_EXTERNAL_CERT_AND_KEY.name,
                    external,
                    &source,
                    "two space-separated absolute paths: certificate, then key",
                ));
            }
            return Ok(Tls {
                mode: TlsMode::External,
                cert_path: cert.into(),
                key_path: key.into(),
            });
        }
        if ipv4 || bare.starts_with('_') {
            return Ok(Tls {
                mode: TlsMode::SelfSigned,
                cert_path: "/etc/ssl/certs/mailserver.pem".into(),
                key_path: "/etc/ssl/private/mailserver.key".into(),
            });
        }
        // A link the `tls` component points at a stand-in, then at acmetool's certificate
        // (`/var/lib/acme/live/<domain>`) once there is one.
        Ok(Tls {
            mode: TlsMode::Acme,
            cert_path: format!("{ACME_LINKS}/{bare}/fullchain").into(),
            key_path: format!("{ACME_LINKS}/{bare}/privkey").into(),
        })
    }

    /// Refuses a value of an extension key that does not have the key's kind; a Boolean is
    /// stored as `true` or `false`, so that [`Config::extension`] reads it with `FromStr`.
    fn check_extension(&mut self, key: &'static Key) -> Result<(), Error> {
        if key.kind == Kind::Bool
            && let Some((value, _)) = self.raw(key)
            && let Some(flag) = parse_bool(value)
            && let Some(raw) = self.raw.get_mut(key.name)
        {
            raw.value = flag.to_string();
        }
        match self.raw(key) {
            Some((value, source)) if !key.kind.accepts(value) => {
                Err(self.invalid(key.name, value, &source, key.kind.expectation()))
            }
            _ => Ok(()),
        }
    }

    fn settings(&self) -> Vec<Setting> {
        self.keys
            .iter()
            .map(|key| match (self.raw.get(key.name), key.default) {
                (Some(raw), _) => Setting {
                    key: key.name,
                    value: Some(raw.value.clone()),
                    source: raw.source.clone(),
                },
                (None, DefaultValue::Value(v)) => Setting {
                    key: key.name,
                    value: Some(v.to_owned()),
                    source: Source::Default,
                },
                (None, DefaultValue::Derived(how)) => Setting {
                    key: key.name,
                    value: Some(how.to_owned()),
                    source: Source::Derived,
                },
                (None, DefaultValue::Required | DefaultValue::Unset) => Setting {
                    key: key.name,
                    value: None,
                    source: Source::Unset,
                },
            })
            .collect()
    }
}

/// Ports the relay's public services (and SSH) listen on, which an internal port must not take.
const PUBLIC_PORTS: [(u16, &str); 10] = [
    (22, "SSH"),
    (25, "SMTP"),
    (53, "DNS resolver"),
    (80, "HTTP"),
    (143, "IMAP"),
    (443, "HTTPS"),
    (465, "SMTPS"),
    (587, "submission"),
    (993, "IMAPS"),
    (3478, "TURN"),
];

/// Directories `mailboxes_dir` may not be (their subdirectories are fine); `""` is `/`.
const SYSTEM_DIRS: [&str; 12] = [
    "",
    "/home",
    "/var",
    "/var/lib",
    "/var/mail",
    "/var/spool",
    "/var/log",
    "/var/www",
    "/tmp",
    "/opt",
    "/srv",
    "/root",
];

/// Directories `mailboxes_dir` may be neither nor inside of.
const SYSTEM_TREES: [&str; 13] = [
    "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot", "/dev",
    "/proc", "/sys", "/run",
];

/// A settings file is a few kilobytes; anything this large is a mistake, refused unread.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// The longest value any setting needs (a postal address, a path, a URL).
const MAX_VALUE_BYTES: usize = 4096;

/// The longest `mail_domain`: certificates carry it as their common name (RFC 5280's
/// `ub-common-name`), and openssl and ACME servers refuse longer ones.
const MAX_DOMAIN_CHARS: usize = 64;

impl Config {
    /// Two internal services on one port would fail at runtime in confusing ways: refuse early.
    fn check_ports(&self) -> Result<(), Error> {
        let ports = [
            (keys::FILTERMAIL_SMTP_PORT.name, self.filtermail_smtp_port),
            (
                keys::FILTERMAIL_SMTP_PORT_INCOMING.name,
                self.filtermail_smtp_port_incoming,
            ),
            (
                keys::FILTERMAIL_HTTP_PORT_INCOMING.name,
                self.filtermail_http_port_incoming,
            ),
            (
                keys::FILTERMAIL_LMTP_PORT_TRANSPORT.name,
                self.filtermail_lmtp_port_transport,
            ),
            (keys::POSTFIX_REINJECT_PORT.name, self.postfix_reinject_port),
            (
                keys::POSTFIX_REINJECT_PORT_INCOMING.name,
                self.postfix_reinject_port_incoming,
            ),
        ];
        for (i, (name, port)) in ports.iter().enumerate() {
            if let Some((other, _)) = ports[..i].iter().find(|(_, p)| p == port) {
                return Err(Error::new(format!(
                    "{name} and {other} are both {port}; each internal service needs its own port"
                )));
            }
            if let Some((_, service)) = PUBLIC_PORTS.iter().find(|(p, _)| p == port) {
                return Err(Error::new(format!(
                    "{name} = {port} is the relay's {service} port; internal services need \
                     ports of their own"
                )));
            }
        }
        Ok(())
    }
}

/// Booleans as operators write them; anything else is an error rather than a silent `false`.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" | "" => Some(false),
        _ => None,
    }
}

/// Upstream's `parse_size_mb`: `500M` → 500, `2G` → 2048, ` 1g ` → 1024, `100MB` → 100, `256` → 256.
pub fn parse_size_mb(value: &str) -> Option<u64> {
    let upper = value.trim().to_ascii_uppercase();
    let number = upper.strip_suffix('B').unwrap_or(&upper);
    if let Some(gigabytes) = number.strip_suffix('G') {
        return gigabytes.trim().parse::<u64>().ok()?.checked_mul(1024);
    }
    number
        .strip_suffix('M')
        .unwrap_or(number)
        .trim()
        .parse()
        .ok()
}

/// A host name (labels of letters, digits, `-` and `_`) or an IPv4 address.
pub fn is_valid_domain(value: &str) -> bool {
    if value.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    let labels_ok = value.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    });
    let looks_numeric = value
        .split('.')
        .all(|l| l.chars().all(|c| c.is_ascii_digit()));
    !value.is_empty() && value.len() <= 253 && labels_ok && !looks_numeric
}

fn reverse_pointer(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("{d}.{c}.{b}.{a}.in-addr.arpa")
}
