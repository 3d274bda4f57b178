//! The one declared list of `chatmail.ini` keys: their kinds, defaults and explanations.
//!
//! Everything that enumerates settings reads this table: parsing, the `CHATMAIL_<KEY>`
//! environment overrides, `cmdeploy init`'s commented file and `cmdeploy config`.

/// What kind of value a key holds, which decides how it is parsed and validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A host name (letters, digits, `-`, `_`, dots) or an IPv4 address.
    Domain,
    /// Free text on one line, taken as written (surrounding white space removed).
    Text,
    /// Free text that may span lines (indented continuation lines), e.g. a postal address.
    Lines,
    /// A whole number, zero or more.
    Count,
    /// A whole number, one or more: a limit or size where zero has no meaning.
    Positive,
    /// A decimal number, zero or more.
    Decimal,
    /// `true` or `false` (also `yes`/`no`, `on`/`off`, `1`/`0`), any case.
    Bool,
    /// A TCP port, 1 to 65535.
    Port,
    /// A size such as `500M`, `2G` or `256` (megabytes), with an optional trailing `B`.
    Size,
    /// A number of days, one or more.
    Days,
    /// An absolute file system path.
    Path,
    /// An IP address or `localhost`.
    Address,
    /// Two absolute paths separated by white space: certificate, then key.
    CertAndKey,
}

impl Kind {
    /// How the expected form is described in error messages.
    pub fn expectation(self) -> &'static str {
        match self {
            Kind::Domain => "a domain name (letters, digits, '-', '_', dots) or an IPv4 address",
            Kind::Text => "text on one line",
            Kind::Lines => "text",
            Kind::Count => "a whole number (0 or more)",
            Kind::Positive => "a whole number (1 or more)",
            Kind::Decimal => "a number (0 or more), e.g. 5 or 2.5",
            Kind::Bool => "true or false",
            Kind::Port => "a port number from 1 to 65535",
            Kind::Size => "a size such as 500M, 2G or 256 (megabytes)",
            Kind::Days => "a whole number of days (1 or more)",
            Kind::Path => "an absolute path",
            Kind::Address => "an IP address or localhost",
            Kind::CertAndKey => "two space-separated absolute paths: certificate, then key",
        }
    }
}

impl Kind {
    /// Whether `value` has this kind (an empty value is accepted where the kind allows
    /// "none": text, an address and a certificate pair).
    pub fn accepts(self, value: &str) -> bool {
        let absolute = |v: &str| v.starts_with('/');
        match self {
            Kind::Domain => crate::is_valid_domain(value),
            Kind::Text | Kind::Lines => true,
            Kind::Count => value.parse::<u32>().is_ok(),
            Kind::Positive | Kind::Days => value.parse::<u32>().is_ok_and(|n| n > 0),
            Kind::Decimal => value
                .parse::<f64>()
                .is_ok_and(|f| f.is_finite() && f >= 0.0),
            Kind::Bool => crate::parse_bool(value).is_some(),
            Kind::Port => value.parse::<u16>().is_ok_and(|p| p != 0),
            Kind::Size => crate::parse_size_mb(value).is_some(),
            Kind::Path => absolute(value),
            Kind::Address => {
                value.is_empty()
                    || value == "localhost"
                    || value.parse::<std::net::IpAddr>().is_ok()
            }
            Kind::CertAndKey => {
                let paths: Vec<&str> = value.split_whitespace().collect();
                paths.is_empty() || (paths.len() == 2 && paths.iter().all(|p| absolute(p)))
            }
        }
    }
}

/// What a key is when the operator does not set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// The key must be given.
    Required,
    /// This literal value.
    Value(&'static str),
    /// No value; the key's absence has a meaning of its own (described in its help).
    Unset,
    /// Computed from other settings, as described.
    Derived(&'static str),
}

/// Where a key is shown in the file `cmdeploy init` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    /// `mail_domain`.
    Domain,
    /// Rules for new addresses and passwords.
    Addresses,
    /// Rate limits, quotas and retention.
    Limits,
    /// Certificates.
    Tls,
    /// The relay's web pages.
    Website,
    /// Where and how the relay's parts run (the group for a third-party component's keys).
    Deployment,
    /// Internal ports between Postfix and filtermail.
    Ports,
    /// Switches for debugging.
    Debugging,
    /// Settings kept for older relays.
    Legacy,
    /// The privacy policy's contacts.
    Privacy,
}

impl Group {
    /// The heading above the group in `chatmail.ini`.
    pub fn heading(self) -> &'static str {
        match self {
            Group::Domain => "The relay's domain",
            Group::Addresses => "Address and password rules",
            Group::Limits => "Limits and retention",
            Group::Tls => "TLS certificates",
            Group::Website => "Website",
            Group::Deployment => "Deployment details",
            Group::Ports => "Internal ports between Postfix and filtermail",
            Group::Debugging => "Debugging",
            Group::Legacy => "Legacy settings",
            Group::Privacy => "Privacy contacts, shown on the website (required for public relays)",
        }
    }
}

/// One declared `chatmail.ini` key.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// The key as written in `[params]` (lower case, `_` between words).
    pub name: &'static str,
    /// What form its value takes.
    pub kind: Kind,
    /// What it is when not set.
    pub default: DefaultValue,
    /// Where `cmdeploy init` shows it.
    pub group: Group,
    /// One or two sentences for the operator, shown in the file `cmdeploy init` writes.
    pub help: &'static str,
}

impl Key {
    /// The environment variable that overrides this key, e.g. `CHATMAIL_MAX_MESSAGE_SIZE`.
    pub fn env_var(&self) -> String {
        format!("CHATMAIL_{}", self.name.to_ascii_uppercase())
    }
}

/// Looks a key up by name.
pub fn key(name: &str) -> Option<&'static Key> {
    KEYS.iter().copied().find(|k| k.name == name)
}

/// Declares each key once: a constant in [`keys`] (so code names a key by a constant the
/// compiler checks) and its place in [`KEYS`].
macro_rules! keys {
    ($($constant:ident = $name:literal, $kind:ident, $default:expr, $group:ident,
        $help:literal;)*) => {
        /// One constant per key, named after it.
        pub mod keys {
            use super::{DefaultValue::*, Group, Key, Kind};
            $(
                #[doc = concat!("`", $name, "`: ", $help)]
                pub const $constant: &Key = &Key {
                    name: $name,
                    kind: Kind::$kind,
                    default: $default,
                    group: Group::$group,
                    help: $help,
                };
            )*
        }

        /// Every key `chatmail.ini` understands, in the order `cmdeploy init` shows them.
        pub static KEYS: &[&Key] = &[$(keys::$constant),*];
    };
}

keys! {
    MAIL_DOMAIN = "mail_domain", Domain, Required, Domain,
        "Domain (or IPv4 address) of the relay; addresses look like user@mail_domain.";
    USERNAME_MIN_LENGTH = "username_min_length", Positive, Value("9"), Addresses,
        "Shortest allowed local part of a new address.";
    USERNAME_MAX_LENGTH = "username_max_length", Positive, Value("9"), Addresses,
        "Longest allowed local part of a new address.";
    PASSWORD_MIN_LENGTH = "password_min_length", Positive, Value("9"), Addresses,
        "Shortest allowed password of a new account.";
    MAX_USER_SEND_PER_MINUTE = "max_user_send_per_minute", Positive, Value("60"), Limits,
        "Messages one user may send per minute on average.";
    MAX_USER_SEND_BURST_SIZE = "max_user_send_burst_size", Positive, Value("10"), Limits,
        "Messages one user may send in a burst before the per-minute rate applies.";
    MAX_MAILBOX_SIZE = "max_mailbox_size", Size, Value("500M"), Limits,
        "Mailbox quota; the oldest messages are removed when 75% of it is reached.";
    MAX_MESSAGE_SIZE = "max_message_size", Positive, Value("31457280"), Limits,
        "Largest accepted message, in bytes.";
    DELETE_MAILS_AFTER = "delete_mails_after", Days, Value("20"), Limits,
        "Days after which messages are deleted from the server.";
    DELETE_LARGE_AFTER = "delete_large_after", Days, Value("7"), Limits,
        "Days after which messages larger than 200 KB are deleted.";
    DELETE_INACTIVE_USERS_AFTER = "delete_inactive_users_after", Days, Value("90"), Limits,
        "Days without login after which an account and its mail are deleted.";
    MAX_IMAP_CONNECTIONS = "max_imap_connections", Positive, Value("10000"), Limits,
        "Most concurrent IMAP sessions (one process each).";
    MAX_SMTP_CONNECTIONS = "max_smtp_connections", Positive, Value("1000"), Limits,
        "Most concurrent SMTP submission connections per port; one client gets a fifth of it.";
    MAX_LOAD_1M = "max_load_1m", Decimal, Value("5"), Limits,
        "New accounts are refused while the 1-minute load average is above this.";
    MIN_AVAILABLE_MEMORY = "min_available_memory", Size, Value("200M"), Limits,
        "New accounts are refused while less memory than this is available.";
    MIN_FREE_DISK_SPACE = "min_free_disk_space", Size, Value("1G"), Limits,
        "New accounts are refused while the mailbox file system has less free space than this.";
    TLS_EXTERNAL_CERT_AND_KEY = "tls_external_cert_and_key", CertAndKey, Value(""), Tls,
        "";
    ACME_EMAIL = "acme_email", Text, Value(""), Tls,
        "Contact address given to Let's Encrypt.";
    WWW_FOLDER = "www_folder", Text, Value(""), Website,
        "";
    DISABLE_IPV6 = "disable_ipv6", Bool, Value("false"), Deployment,
        "Bind only IPv4 addresses (for hosts without IPv6).";
    IROH_RELAY = "iroh_relay", Text, Unset, Deployment,
        "";
    MTAIL_ADDRESS = "mtail_address", Address, Unset, Deployment,
        "";
    TURN_SOCKET_PATH = "turn_socket_path", Path, Value("/run/chatmail-turn/turn.socket"), Deployment,
        "Unix socket of the TURN server, asked for credentials by chatmail-metadata.";
    FILTERMAIL_SMTP_PORT = "filtermail_smtp_port", Port, Value("10080"), Ports,
        "filtermail's before-queue proxy for outgoing mail.";
    FILTERMAIL_SMTP_PORT_INCOMING = "filtermail_smtp_port_incoming", Port, Value("10081"), Ports,
        "filtermail's before-queue proxy for incoming mail.";
    FILTERMAIL_HTTP_PORT_INCOMING = "filtermail_http_port_incoming", Port, Value("10082"), Ports,
        "filtermail's HTTP receiver behind /mxdeliv.";
    FILTERMAIL_LMTP_PORT_TRANSPORT = "filtermail_lmtp_port_transport", Port, Value("10083"), Ports,
        "filtermail's LMTP transport for remote delivery.";
    POSTFIX_REINJECT_PORT = "postfix_reinject_port", Port, Value("10025"), Ports,
        "Postfix port taking filtered outgoing mail back.";
    POSTFIX_REINJECT_PORT_INCOMING = "postfix_reinject_port_incoming", Port, Value("10026"), Ports,
        "Postfix port taking filtered incoming mail back.";
    IMAP_RAWLOG = "imap_rawlog", Bool, Value("false"), Debugging,
        "Record raw IMAP sessions into each user's mail folder.";
    IMAP_COMPRESS = "imap_compress", Bool, Value("false"), Debugging,
        "Offer IMAP COMPRESS (turns IMAP hibernation off).";
    MAILBOXES_DIR = "mailboxes_dir", Path, Derived("/home/vmail/mail/<mail_domain>"), Legacy,
        "Where mailboxes live (deprecated: keep the default).";
    PASSDB_PATH = "passdb_path", Path, Value("/home/vmail/passdb.sqlite"), Legacy,
        "Password database of very old relays, migrated once.";
    PRIVACY_POSTAL = "privacy_postal", Lines, Unset, Privacy,
        "Postal address of the operator.";
    PRIVACY_MAIL = "privacy_mail", Text, Unset, Privacy,
        "E-mail address of the operator.";
    PRIVACY_PDO = "privacy_pdo", Text, Unset, Privacy,
        "Contact of the data protection officer.";
    PRIVACY_SUPERVISOR = "privacy_supervisor", Text, Unset, Privacy,
        "Data protection supervisory authority.";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_lower_case() {
        let mut names: Vec<_> = KEYS.iter().map(|k| k.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KEYS.len());
        assert!(KEYS.iter().all(|k| {
            k.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
        }));
    }

    #[test]
    fn env_var_names_follow_the_key() {
        assert_eq!(
            key("max_message_size").unwrap().env_var(),
            "CHATMAIL_MAX_MESSAGE_SIZE"
        );
    }
}
