//! doveauth: Dovecot's passdb and userdb over the dict protocol. A passdb lookup of an
//! unknown address creates the account when the creation rules allow it; the password is
//! never checked here, Dovecot compares it with the returned hash.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use chatmail_config::Config;

use crate::accounts::{self, Account, Created};
use crate::dict::{Handler, Lookup, Transaction};
use crate::syslimits::Limits;

/// The file whose existence blocks every account creation.
pub const DEFAULT_NOCREATE: &str = "/etc/chatmail-nocreate";

/// The doveauth dict handler.
#[derive(Debug)]
pub struct Doveauth {
    config: Arc<Config>,
    limits: Limits,
    nocreate: PathBuf,
    /// `@<mail_domain>`: the only addresses served.
    domain_suffix: String,
    /// One permit per core: account creations hash at most this many at once, so a burst of
    /// first logins cannot crowd out lookups of existing accounts.
    hashing: Arc<tokio::sync::Semaphore>,
}

impl Doveauth {
    pub fn new(config: Config, nocreate: PathBuf) -> Doveauth {
        Doveauth {
            limits: Limits::from_config(&config),
            domain_suffix: format!("@{}", config.mail_domain),
            config: Arc::new(config),
            nocreate,
            hashing: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
        }
    }

    /// The account of `user`, if it is a valid address of this relay.
    fn account(&self, user: &str) -> Option<Account> {
        if !user.ends_with(&self.domain_suffix) {
            return None;
        }
        Account::new(&self.config, user).ok()
    }

    fn userdb(&self, user: &str) -> Lookup {
        let Some(account) = self.account(user) else {
            return Lookup::NotFound;
        };
        match account.password() {
            Ok(Some(hash)) => Lookup::Found(account.userdb_json(&hash)),
            Ok(None) => Lookup::NotFound,
            Err(err) => {
                eprintln!("error: userdb lookup of {user}: {err:#}");
                Lookup::Failed
            }
        }
    }

    async fn passdb(&self, user: &str, password: &str) -> Lookup {
        let Some(account) = self.account(user) else {
            return Lookup::NotFound;
        };
        match account.password() {
            Ok(Some(hash)) => return Lookup::Found(account.userdb_json(&hash)),
            Ok(None) => {}
            Err(err) => {
                eprintln!("error: passdb lookup of {user}: {err:#}");
                return Lookup::Failed;
            }
        }
        if let Err(reason) = self.may_create(&account, password) {
            eprintln!("warning: not creating {user}: {reason}");
            return Lookup::NotFound;
        }
        let password = password.to_owned();
        let creator = account.clone();
        let limits = self.limits.clone();
        let data_dir = self.config.mailboxes_dir.clone();
        let Ok(permit) = Arc::clone(&self.hashing).acquire_owned().await else {
            return Lookup::Failed;
        };
        let created = tokio::task::spawn_blocking(move || -> Result<Result<Created, String>> {
            let _permit = permit;
            // Checked here, off the async workers: it reads /proc and calls statvfs.
            if let Err(reason) = limits.check(&data_dir) {
                eprintln!("warning: registration rejected: {reason}");
                return Ok(Err(reason));
            }
            let hash = crate::crypt::hash_password(&password)?;
            Ok(Ok(creator.create(&hash, crate::unix_now())?))
        })
        .await;
        match created {
            Ok(Ok(Ok(Created::New(hash)))) => {
                eprintln!("Created address: {user}");
                Lookup::Found(account.userdb_json(&hash))
            }
            Ok(Ok(Ok(Created::Existing(hash)))) => Lookup::Found(account.userdb_json(&hash)),
            Ok(Ok(Err(_refused))) => Lookup::NotFound,
            Ok(Err(err)) => {
                eprintln!("error: creating {user}: {err:#}");
                Lookup::Failed
            }
            Err(err) => {
                eprintln!("error: creating {user}: {err}");
                Lookup::Failed
            }
        }
    }

    /// The creation rules that need no system calls beyond one `stat`.
    fn may_create(&self, account: &Account, password: &str) -> Result<(), String> {
        if self.nocreate.exists() {
            return Err(format!("{} exists", self.nocreate.display()));
        }
        let config = &self.config;
        if password.chars().count() < config.password_min_length as usize {
            return Err(format!(
                "password shorter than {} characters",
                config.password_min_length
            ));
        }
        let Some((local, _domain)) = account.addr.split_once('@') else {
            return Err("no @ in address".into());
        };
        if account.addr.matches('@').count() != 1 {
            return Err("more than one @ in address".into());
        }
        let len = local.len();
        if len < config.username_min_length as usize || len > config.username_max_length as usize {
            return Err(format!(
                "localpart length {len} not in {}..={}",
                config.username_min_length, config.username_max_length
            ));
        }
        if !local
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        {
            return Err("localpart has characters other than a-z 0-9 . _ -".into());
        }
        Ok(())
    }
}

/// Splits `s` on `sep`, with `\` escaping the next character (`\x` → `x`).
fn split_escaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            c if c == sep => parts.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    parts.push(current);
    parts
}

impl Handler for Doveauth {
    async fn lookup(&self, key: &str, _user: &str) -> Lookup {
        let mut parts = key.splitn(3, '/');
        let (Some("shared"), Some(kind), Some(rest)) = (parts.next(), parts.next(), parts.next())
        else {
            return Lookup::Failed;
        };
        match kind {
            "passdb" => match split_escaped(rest, '"').as_slice() {
                [password, user] => self.passdb(user, password).await,
                _ => Lookup::NotFound,
            },
            "userdb" => match split_escaped(rest, '"').as_slice() {
                [user] => self.userdb(user),
                _ => Lookup::NotFound,
            },
            _ => Lookup::Failed,
        }
    }

    async fn iterate(&self, path: &str, _user: &str) -> Vec<(String, String)> {
        if !path.starts_with("shared/userdb/") {
            return Vec::new();
        }
        match accounts::list_addresses(&self.config.mailboxes_dir) {
            Ok(addrs) => addrs
                .into_iter()
                .map(|addr| (format!("shared/userdb/{addr}"), String::new()))
                .collect(),
            Err(err) => {
                eprintln!("error: iterating accounts: {err:#}");
                Vec::new()
            }
        }
    }

    async fn commit(&self, _tx: Transaction) -> bool {
        eprintln!("warning: doveauth does not store values; failing the commit");
        false
    }
}
