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
    KEYS.iter().find(|k| k.name == name)
}

const fn k(
    name: &'static str,
    kind: Kind,
    default: DefaultValue,
    group: Group,
    help: &'static str,
) -> Key {
    Key {
        name,
        kind,
        default,
        group,
        help,
    }
}

use DefaultValue::{Derived, Required, Unset, Value};

/// Every key `chatmail.ini` understands, in the order `cmdeploy init` shows them.
pub static KEYS: &[Key] = &[
    k(
        "mail_domain",
        Kind::Domain,
        Required,
        Group::Domain,
        "Domain (or IPv4 address) of the relay; addresses look like user@mail_domain.",
    ),
    k(
        "username_min_length",
        Kind::Positive,
        Value("9"),
        Group::Addresses,
        "Shortest allowed local part of a new address.",
    ),
    k(
        "username_max_length",
        Kind::Positive,
        Value("9"),
        Group::Addresses,
        "Longest allowed local part of a new address.",
    ),
    k(
        "password_min_length",
        Kind::Positive,
        Value("9"),
        Group::Addresses,
        "Shortest allowed password of a new account.",
    ),
    k(
        "max_user_send_per_minute",
        Kind::Positive,
        Value("60"),
        Group::Limits,
        "Messages one user may send per minute on average.",
    ),
    k(
        "max_user_send_burst_size",
        Kind::Positive,
        Value("10"),
        Group::Limits,
        "Messages one user may send in a burst before the per-minute rate applies.",
    ),
    k(
        "max_mailbox_size",
        Kind::Size,
        Value("500M"),
        Group::Limits,
        "Mailbox quota; the oldest messages are removed when 75% of it is reached.",
    ),
    k(
        "max_message_size",
        Kind::Positive,
        Value("31457280"),
        Group::Limits,
        "Largest accepted message, in bytes.",
    ),
    k(
        "delete_mails_after",
        Kind::Days,
        Value("20"),
        Group::Limits,
        "Days after which messages are deleted from the server.",
    ),
    k(
        "delete_large_after",
        Kind::Days,
        Value("7"),
        Group::Limits,
        "Days after which messages larger than 200 KB are deleted.",
    ),
    k(
        "delete_inactive_users_after",
        Kind::Days,
        Value("90"),
        Group::Limits,
        "Days without login after which an account and its mail are deleted.",
    ),
    k(
        "max_imap_connections",
        Kind::Positive,
        Value("10000"),
        Group::Limits,
        "Most concurrent IMAP sessions (one process each).",
    ),
    k(
        "max_smtp_connections",
        Kind::Positive,
        Value("1000"),
        Group::Limits,
        "Most concurrent SMTP submission connections per port; one client gets a fifth of it.",
    ),
    k(
        "max_load_1m",
        Kind::Decimal,
        Value("5"),
        Group::Limits,
        "New accounts are refused while the 1-minute load average is above this.",
    ),
    k(
        "min_available_memory",
        Kind::Size,
        Value("200M"),
        Group::Limits,
        "New accounts are refused while less memory than this is available.",
    ),
    k(
        "min_free_disk_space",
        Kind::Size,
        Value("1G"),
        Group::Limits,
        "New accounts are refused while the mailbox file system has less free space than this.",
    ),
    k(
        "tls_external_cert_and_key",
        Kind::CertAndKey,
        Value(""),
        Group::Tls,
        "Use certificates managed elsewhere: certificate path and key path, space-separated.\n\
         Empty: Let's Encrypt via acmetool, or a self-signed certificate for IPv4 and _-domains.",
    ),
    k(
        "acme_email",
        Kind::Text,
        Value(""),
        Group::Tls,
        "Contact address given to Let's Encrypt.",
    ),
    k(
        "www_folder",
        Kind::Text,
        Value(""),
        Group::Website,
        "Folder with the website's pages; empty: a built-in site generated from these settings;\n\
         `disabled`: deploy no website.",
    ),
    k(
        "disable_ipv6",
        Kind::Bool,
        Value("false"),
        Group::Deployment,
        "Bind only IPv4 addresses (for hosts without IPv6).",
    ),
    k(
        "iroh_relay",
        Kind::Text,
        Unset,
        Group::Deployment,
        "URL of the iroh relay announced to clients. Unset: https://<mail_domain>, served by a\n\
         local iroh-relay. Set (even empty): that URL, and no local iroh-relay.",
    ),
    k(
        "mtail_address",
        Kind::Address,
        Unset,
        Group::Deployment,
        "Address on which mtail (port 3903) and Dovecot (port 3904) serve metrics; unset: none.\n\
         Never a public address.",
    ),
    k(
        "turn_socket_path",
        Kind::Path,
        Value("/run/chatmail-turn/turn.socket"),
        Group::Deployment,
        "Unix socket of the TURN server, asked for credentials by chatmail-metadata.",
    ),
    k(
        "filtermail_smtp_port",
        Kind::Port,
        Value("10080"),
        Group::Ports,
        "filtermail's before-queue proxy for outgoing mail.",
    ),
    k(
        "filtermail_smtp_port_incoming",
        Kind::Port,
        Value("10081"),
        Group::Ports,
        "filtermail's before-queue proxy for incoming mail.",
    ),
    k(
        "filtermail_http_port_incoming",
        Kind::Port,
        Value("10082"),
        Group::Ports,
        "filtermail's HTTP receiver behind /mxdeliv.",
    ),
    k(
        "filtermail_lmtp_port_transport",
        Kind::Port,
        Value("10083"),
        Group::Ports,
        "filtermail's LMTP transport for remote delivery.",
    ),
    k(
        "postfix_reinject_port",
        Kind::Port,
        Value("10025"),
        Group::Ports,
        "Postfix port taking filtered outgoing mail back.",
    ),
    k(
        "postfix_reinject_port_incoming",
        Kind::Port,
        Value("10026"),
        Group::Ports,
        "Postfix port taking filtered incoming mail back.",
    ),
    k(
        "imap_rawlog",
        Kind::Bool,
        Value("false"),
        Group::Debugging,
        "Record raw IMAP sessions into each user's mail folder.",
    ),
    k(
        "imap_compress",
        Kind::Bool,
        Value("false"),
        Group::Debugging,
        "Offer IMAP COMPRESS (turns IMAP hibernation off).",
    ),
    k(
        "mailboxes_dir",
        Kind::Path,
        Derived("/home/vmail/mail/<mail_domain>"),
        Group::Legacy,
        "Where mailboxes live (deprecated: keep the default).",
    ),
    k(
        "passdb_path",
        Kind::Path,
        Value("/home/vmail/passdb.sqlite"),
        Group::Legacy,
        "Password database of very old relays, migrated once.",
    ),
    k(
        "privacy_postal",
        Kind::Lines,
        Unset,
        Group::Privacy,
        "Postal address of the operator.",
    ),
    k(
        "privacy_mail",
        Kind::Text,
        Unset,
        Group::Privacy,
        "E-mail address of the operator.",
    ),
    k(
        "privacy_pdo",
        Kind::Text,
        Unset,
        Group::Privacy,
        "Contact of the data protection officer.",
    ),
    k(
        "privacy_supervisor",
        Kind::Text,
        Unset,
        Group::Privacy,
        "Data protection supervisory authority.",
    ),
];

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
