//! `chatmail-probe`: checks and benchmarks a live chatmail relay from the outside, over the
//! same ports and protocols as its users' clients and other relays (`cmdeploy test`,
//! `cmdeploy bench`).
//!
//! - [`connect`]: TCP and TLS to the relay; certificates are verified unless the relay's
//!   settings say it signs its own (`_`-domains, IPv4 relays).
//! - [`imap`]: logins, capabilities, METADATA and waiting for a message, on async-imap.
//! - [`smtp`]: submission (465) and relay delivery (25), on lettre; refusals keep their code.
//! - [`stun`]: a STUN Binding request to the TURN server.
//! - [`web`]: `POST /new` over HTTPS.
//! - [`message`]: OpenPGP keys and encrypted, cleartext and forged messages as filtermail
//!   judges them, and decryption of what arrives.
//! - [`checks`]: each check a named function with a verdict: pass, fail or skip, with why.
//! - [`bench`]: login, send and receive latencies over several rounds.

pub mod bench;
pub mod checks;
pub mod connect;
pub mod imap;
pub mod message;
pub mod smtp;
pub mod stun;
pub mod web;

use chatmail_config::{Config, TlsMode};
use rand::Rng as _;

/// The relay as the probe sees it: what its settings say, and where to reach it.
#[derive(Debug, Clone)]
pub struct Relay {
    /// The domain of its addresses (`mail_domain`, bracketed for IPv4 relays).
    pub mail_domain: String,
    /// The name its certificate is for (`mail_domain` as written, without brackets).
    pub tls_name: String,
    /// Where to connect: a host name or address.
    pub host: String,
    /// Whether the relay signs its own certificate, which is then accepted as it is.
    pub self_signed: bool,
    /// Whether `mail_domain` is an IPv4 address (no DKIM).
    pub ipv4: bool,
    /// The length of the local part of a new address the relay accepts.
    pub username_length: usize,
    /// The shortest password the relay accepts for a new account.
    pub password_min_length: usize,
    /// The iroh relay the relay announces (empty: none).
    pub iroh_relay: String,
}

impl Relay {
    /// The relay that `config` describes, reached at `host` (default: its mail domain).
    pub fn new(config: &Config, host: Option<&str>) -> Relay {
        let username_length = 9.clamp(
            config.username_min_length as usize,
            (config.username_max_length as usize).max(config.username_min_length as usize),
        );
        Relay {
            mail_domain: config.mail_domain.clone(),
            tls_name: config.mail_domain_bare.clone(),
            host: host.unwrap_or(&config.mail_domain_bare).to_owned(),
            self_signed: config.tls.mode == TlsMode::SelfSigned,
            ipv4: config.ipv4_relay.is_some(),
            username_length,
            password_min_length: config.password_min_length as usize,
            iroh_relay: config.iroh_relay.clone(),
        }
    }

    /// A fresh account's credentials: a random address the relay accepts and a random
    /// password a few characters longer than the shortest it takes. Nothing is created until
    /// the first login.
    pub fn new_account(&self) -> Account {
        Account {
            addr: format!(
                "{}@{}",
                random_text(self.username_length, LOWER),
                self.mail_domain
            ),
            password: random_text(self.password_min_length + 3, PASSWORD),
        }
    }
}

/// An address and its password.
#[derive(Debug, Clone)]
pub struct Account {
    pub addr: String,
    pub password: String,
}

const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const PASSWORD: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// `length` characters drawn from `alphabet`.
pub fn random_text(length: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::thread_rng();
    (0..length)
        .map(|_| char::from(alphabet[rng.gen_range(0..alphabet.len())]))
        .collect()
}
