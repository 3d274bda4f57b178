//! chatmail-metadata: the dict behind Dovecot's IMAP METADATA. Per-account device tokens
//! (`priv/<guid>/devicetoken`), `messagenew` sets that notify those tokens, and the
//! server-wide Delta Chat keys: iroh relay, TURN credentials, max SMTP recipients and
//! app versions.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chatmail_config::Config;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::accounts::Account;
use crate::dict::{Handler, Lookup, Set, Transaction};
use crate::notifier::Notifier;
use crate::tokens;

/// Where deployments put the app-versions JSON served under `appversions`.
pub const DEFAULT_APPVERSIONS: &str = "/usr/local/lib/chatmaild/appversions.json";

/// The key prefix (after `shared/<guid>/`) of server attributes Delta Chat reads.
const SERVER_PREFIX: &str = "vendor/vendor.dovecot/pvt/server/vendor/deltachat/";

/// How long the TURN credential socket may take to answer.
const TURN_TIMEOUT: Duration = Duration::from_secs(5);

/// The port of the relay's TURN server, announced with the credentials.
const TURN_PORT: u16 = 3478;

/// The chatmail-metadata dict handler.
#[derive(Debug)]
pub struct Metadata {
    config: Arc<Config>,
    notifier: Notifier,
    appversions: PathBuf,
}

impl Metadata {
    pub fn new(config: Arc<Config>, notifier: Notifier, appversions: PathBuf) -> Metadata {
        Metadata {
            config,
            notifier,
            appversions,
        }
    }

    async fn server_key(&self, name: &str) -> Lookup {
        match name {
            "irohrelay" if !self.config.iroh_relay.is_empty() => {
                Lookup::Found(self.config.iroh_relay.clone())
            }
            "turn" => match turn_credentials(&self.config.turn_socket_path).await {
                Ok(credentials) => Lookup::Found(format!(
                    "{}:{TURN_PORT}:{credentials}",
                    self.config.mail_domain
                )),
                Err(err) => {
                    eprintln!("warning: no TURN credentials: {err:#}");
                    Lookup::NotFound
                }
            },
            "maxsmtprecipients" => Lookup::Found("1000".into()),
            "appversions" => match std::fs::read_to_string(&self.appversions) {
                Ok(text) => compact_json(&text).map_or_else(
                    || {
                        eprintln!("warning: {} is not valid JSON", self.appversions.display());
                        Lookup::NotFound
                    },
                    Lookup::Found,
                ),
                Err(err) => {
                    eprintln!("warning: reading {}: {err}", self.appversions.display());
                    Lookup::NotFound
                }
            },
            _ => {
                eprintln!("warning: unknown server metadata key {name:?}");
                Lookup::NotFound
            }
        }
    }
}

/// Applies one set of `account`'s transaction; `Ok(false)` for keys this service refuses.
fn apply(notifier: &Notifier, account: &Account, set: &Set) -> Result<bool> {
    let mut parts = set.key.splitn(3, '/');
    let (Some("priv"), Some(_guid), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
        return Ok(false);
    };
    let now = crate::unix_now();
    match (name, set.value.as_deref()) {
        ("devicetoken", Some(token)) if !token.is_empty() => {
            tokens::add(account, token, now)?;
            Ok(true)
        }
        ("messagenew", _) => {
            let tokens = tokens::valid(account, now)?;
            notifier.notify(&account.addr, &tokens)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// One `user:password` line from the TURN server's credential socket.
async fn turn_credentials(socket: &std::path::Path) -> Result<String> {
    let read = async {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .with_context(|| format!("connecting to {}", socket.display()))?;
        let mut line = String::new();
        BufReader::new(stream)
            .read_line(&mut line)
            .await
            .with_context(|| format!("reading from {}", socket.display()))?;
        let line = line.trim_end_matches(['\r', '\n']);
        if !line.contains(':') {
            bail!("{} answered {line:?}, not user:password", socket.display());
        }
        Ok(line.to_owned())
    };
    tokio::time::timeout(TURN_TIMEOUT, read)
        .await
        .with_context(|| {
            format!(
                "{} did not answer within {TURN_TIMEOUT:?}",
                socket.display()
            )
        })?
}

/// `text` re-serialized as one line of JSON without insignificant whitespace, keys in their
/// original order, non-ASCII characters escaped as `\uXXXX`; `None` if it is not JSON.
pub fn compact_json(text: &str) -> Option<String> {
    serde_json::from_str::<serde::de::IgnoredAny>(text).ok()?;
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            if !c.is_ascii() {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
                continue;
            }
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_ascii_whitespace() {
            out.push(c);
        }
    }
    Some(out)
}

impl Handler for Metadata {
    async fn lookup(&self, key: &str, user: &str) -> Lookup {
        let mut parts = key.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("priv"), Some(_guid), Some("devicetoken")) => {
                let Ok(account) = Account::new(&self.config, user) else {
                    return Lookup::NotFound;
                };
                let now = crate::unix_now();
                match tokio::task::spawn_blocking(move || tokens::valid(&account, now)).await {
                    Ok(Ok(tokens)) => Lookup::Found(tokens.join(" ")),
                    Ok(Err(err)) => {
                        eprintln!("error: reading device tokens of {user}: {err:#}");
                        Lookup::Failed
                    }
                    Err(err) => {
                        eprintln!("error: reading device tokens of {user}: {err}");
                        Lookup::Failed
                    }
                }
            }
            (Some("shared"), Some(_), Some(rest)) if rest.starts_with(SERVER_PREFIX) => {
                self.server_key(&rest[SERVER_PREFIX.len()..]).await
            }
            _ => {
                eprintln!("warning: lookup of unknown metadata key {key:?}");
                Lookup::NotFound
            }
        }
    }

    async fn iterate(&self, _path: &str, _user: &str) -> Vec<(String, String)> {
        Vec::new()
    }

    async fn commit(&self, tx: Transaction) -> bool {
        let account = match Account::new(&self.config, &tx.user) {
            Ok(account) => account,
            Err(err) => {
                eprintln!("warning: metadata transaction: {err:#}");
                return false;
            }
        };
        // Every set is applied off the async workers (file locks), even after one failed.
        let notifier = self.notifier.clone();
        let applied = tokio::task::spawn_blocking(move || {
            let mut ok = true;
            for set in &tx.sets {
                match apply(&notifier, &account, set) {
                    Ok(true) => {}
                    Ok(false) => {
                        eprintln!("warning: refusing metadata set of {:?}", set.key);
                        ok = false;
                    }
                    Err(err) => {
                        eprintln!(
                            "error: metadata set of {:?} for {}: {err:#}",
                            set.key, account.addr
                        );
                        ok = false;
                    }
                }
            }
            ok
        })
        .await;
        applied.unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_json_keeps_order_and_escapes() {
        let text = "{\n  \"z\": [1, 2.50, true],\n  \"a\": \"x y\\n\\\" é 😀\"\n}\n";
        assert_eq!(
            compact_json(text).unwrap(),
            r#"{"z":[1,2.50,true],"a":"x y\n\" \u00e9 \ud83d\ude00"}"#
        );
        assert_eq!(compact_json("{\"a\": "), None);
        assert_eq!(compact_json(""), None);
    }
}
