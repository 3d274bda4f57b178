//! The push device tokens of one account, kept in `metadata.json` as
//! `{"devicetoken": {"<token>": <unix time added>, ...}}` in insertion order, and modified
//! only under an flock on `metadata.json.lock`. Tokens older than 90 days or more than a
//! minute in the future are dropped; upstream's legacy forms, a list of tokens under
//! `devicetoken` or on its own, are read as tokens added now and rewritten at the next change.

use std::fmt;
use std::io::ErrorKind;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::accounts::Account;
use crate::files::{self, DAY};

/// How long a token stays valid after it was last set.
pub const LIFETIME: i64 = 90 * DAY;
/// How far in the future a token's time may be (clock skew) before it is dropped.
const FUTURE_SLACK: i64 = 60;
const LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// Tokens with the time each was (last) added, in insertion order.
#[derive(Debug, Default, Clone, PartialEq)]
struct Tokens(Vec<(String, f64)>);

#[derive(Deserialize)]
#[serde(untagged)]
enum Stored {
    Current {
        #[serde(default)]
        devicetoken: Tokens,
    },
    /// Upstream's earlier `{"devicetoken": ["<token>", ...]}`.
    LegacyKeyed {
        devicetoken: Vec<String>,
    },
    Legacy(Vec<String>),
}

#[derive(Serialize)]
struct Current<'a> {
    devicetoken: &'a Tokens,
}

impl<'de> Deserialize<'de> for Tokens {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Tokens, D::Error> {
        struct InOrder;
        impl<'de> Visitor<'de> for InOrder {
            type Value = Tokens;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of token: timestamp")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tokens, A::Error> {
                let mut tokens = Vec::new();
                while let Some((token, ts)) = map.next_entry::<String, f64>()? {
                    tokens.push((token, ts));
                }
                Ok(Tokens(tokens))
            }
        }
        deserializer.deserialize_map(InOrder)
    }
}

impl Serialize for Tokens {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (token, ts) in &self.0 {
            map.serialize_entry(token, &(*ts as i64))?;
        }
        map.end()
    }
}

impl Tokens {
    /// Drops expired tokens; `true` if any were dropped.
    fn prune(&mut self, now: i64) -> bool {
        let before = self.0.len();
        let (oldest, newest) = ((now - LIFETIME) as f64, (now + FUTURE_SLACK) as f64);
        self.0.retain(|(_, ts)| *ts > oldest && *ts <= newest);
        self.0.len() != before
    }
}

/// Reads the stored tokens; a missing file is empty, a corrupt one is empty with a warning.
fn read(account: &Account, now: i64) -> Result<Tokens> {
    let path = account.metadata_path();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Tokens::default()),
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    };
    match serde_json::from_str::<Stored>(&text) {
        Ok(Stored::Current { devicetoken }) => Ok(devicetoken),
        Ok(Stored::LegacyKeyed { devicetoken: list } | Stored::Legacy(list)) => Ok(Tokens(
            list.into_iter().map(|token| (token, now as f64)).collect(),
        )),
        Err(err) => {
            eprintln!(
                "warning: {}: corrupt serialization state ({err}), starting empty",
                path.display()
            );
            Ok(Tokens::default())
        }
    }
}

fn write(account: &Account, tokens: &Tokens) -> Result<()> {
    let json = serde_json::to_vec(&Current {
        devicetoken: tokens,
    })
    .context("serializing device tokens")?;
    files::write_atomic(&account.metadata_path(), &json)
}

/// Changes the stored tokens under the lock; `change` returns whether it changed anything.
fn modify(account: &Account, now: i64, change: impl FnOnce(&mut Tokens) -> bool) -> Result<()> {
    let _lock = files::lock(&account.dir.join("metadata.json.lock"), LOCK_TIMEOUT)?;
    let mut tokens = read(account, now)?;
    let pruned = tokens.prune(now);
    if change(&mut tokens) || pruned {
        write(account, &tokens)?;
    }
    Ok(())
}

/// Adds `token` (or refreshes its time, keeping its place).
pub fn add(account: &Account, token: &str, now: i64) -> Result<()> {
    modify(account, now, |tokens| {
        match tokens.0.iter_mut().find(|(t, _)| t == token) {
            Some(entry) => entry.1 = now as f64,
            None => tokens.0.push((token.to_owned(), now as f64)),
        }
        true
    })
}

/// Removes `token`; removing a token that is not there changes nothing.
pub fn remove(account: &Account, token: &str, now: i64) -> Result<()> {
    modify(account, now, |tokens| {
        let before = tokens.0.len();
        tokens.0.retain(|(t, _)| t != token);
        tokens.0.len() != before
    })
}

/// The valid tokens in insertion order; expired ones found here are removed from the file.
pub fn valid(account: &Account, now: i64) -> Result<Vec<String>> {
    let mut tokens = read(account, now)?;
    if tokens.prune(now) {
        modify(account, now, |_| false)?;
    }
    Ok(tokens.0.into_iter().map(|(token, _)| token).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(dir: &std::path::Path) -> Account {
        std::fs::create_dir_all(dir.join("a@x")).unwrap();
        Account {
            addr: "a@x".into(),
            dir: dir.join("a@x"),
        }
    }

    const NOW: i64 = 1_765_432_100;

    #[test]
    fn tokens_persist_in_insertion_order_and_refresh_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let a = account(dir.path());
        assert!(valid(&a, NOW).unwrap().is_empty());
        for token in ["zz", "aa", "mm"] {
            add(&a, token, NOW).unwrap();
        }
        add(&a, "zz", NOW + 5).unwrap();
        assert_eq!(valid(&a, NOW + 5).unwrap(), ["zz", "aa", "mm"]);
        let stored = std::fs::read_to_string(a.metadata_path()).unwrap();
        assert_eq!(
            stored,
            format!(
                r#"{{"devicetoken":{{"zz":{},"aa":{NOW},"mm":{NOW}}}}}"#,
                NOW + 5
            )
        );
        remove(&a, "aa", NOW).unwrap();
        remove(&a, "not-there", NOW).unwrap();
        assert_eq!(valid(&a, NOW).unwrap(), ["zz", "mm"]);
    }

    #[test]
    fn expired_and_future_tokens_are_dropped_and_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let a = account(dir.path());
        let text = format!(
            r#"{{"devicetoken": {{"old": {}, "edge": {}, "ok": {}.5, "future": {}}}}}"#,
            NOW - LIFETIME,
            NOW - LIFETIME + 1,
            NOW - 10,
            NOW + 61
        );
        std::fs::write(a.metadata_path(), text).unwrap();
        assert_eq!(valid(&a, NOW).unwrap(), ["edge", "ok"]);
        let stored = std::fs::read_to_string(a.metadata_path()).unwrap();
        assert!(
            !stored.contains("old") && !stored.contains("future"),
            "{stored}"
        );
    }

    #[test]
    fn legacy_lists_are_converted_and_corrupt_files_start_empty() {
        let dir = tempfile::tempdir().unwrap();
        let a = account(dir.path());
        for legacy in [r#"["t1", "t2"]"#, r#"{"devicetoken": ["t1", "t2"]}"#] {
            std::fs::write(a.metadata_path(), legacy).unwrap();
            assert_eq!(valid(&a, NOW).unwrap(), ["t1", "t2"], "{legacy}");
            add(&a, "t3", NOW).unwrap();
            let stored = std::fs::read_to_string(a.metadata_path()).unwrap();
            assert_eq!(
                stored,
                format!(r#"{{"devicetoken":{{"t1":{NOW},"t2":{NOW},"t3":{NOW}}}}}"#),
                "{legacy}"
            );
        }

        std::fs::write(a.metadata_path(), "{not json").unwrap();
        assert!(valid(&a, NOW).unwrap().is_empty());
        add(&a, "t4", NOW).unwrap();
        assert_eq!(valid(&a, NOW).unwrap(), ["t4"]);
    }

    #[test]
    fn concurrent_changes_all_persist() {
        let dir = tempfile::tempdir().unwrap();
        let a = account(dir.path());
        let tokens: Vec<String> = (0..20).map(|i| format!("t{i:02}")).collect();
        std::thread::scope(|scope| {
            for token in &tokens {
                let a = &a;
                scope.spawn(move || add(a, token, NOW).unwrap());
            }
        });
        let mut stored = valid(&a, NOW).unwrap();
        stored.sort();
        assert_eq!(stored, tokens, "every read-modify-write under the lock");
    }
}
