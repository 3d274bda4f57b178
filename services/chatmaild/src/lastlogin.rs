//! lastlogin: the dict behind Dovecot's `last_login` plugin. A committed
//! `shared/last-login/<addr>` set becomes the mtime of that account's password file,
//! rounded down to the UTC day.

use chatmail_config::Config;

use crate::accounts::Account;
use crate::dict::{Handler, Lookup, Set, Transaction};

/// The lastlogin dict handler.
#[derive(Debug)]
pub struct LastLogin {
    config: Config,
}

impl LastLogin {
    pub fn new(config: Config) -> LastLogin {
        LastLogin { config }
    }

    /// Applies one set; `false` if it is not a last-login set this service understands.
    fn apply(&self, set: &Set) -> bool {
        let mut parts = set.key.splitn(3, '/');
        let (Some("shared"), Some("last-login"), Some(addr)) =
            (parts.next(), parts.next(), parts.next())
        else {
            eprintln!("warning: lastlogin: unexpected key {:?}", set.key);
            return false;
        };
        let Some(ts) = set
            .value
            .as_deref()
            .and_then(|v| v.trim().parse::<i64>().ok())
        else {
            eprintln!("warning: lastlogin: no timestamp in set of {:?}", set.key);
            return false;
        };
        let account = match Account::new(&self.config, addr) {
            Ok(account) => account,
            Err(err) => {
                eprintln!("warning: lastlogin: {err:#}");
                return false;
            }
        };
        // A login without an account is logged, but Dovecot gets its `O` anyway.
        if let Err(err) = account.set_last_login(ts) {
            eprintln!("error: lastlogin: {err:#}");
        }
        true
    }
}

impl Handler for LastLogin {
    async fn lookup(&self, _key: &str, _user: &str) -> Lookup {
        Lookup::NotFound
    }

    async fn iterate(&self, _path: &str, _user: &str) -> Vec<(String, String)> {
        Vec::new()
    }

    async fn commit(&self, tx: Transaction) -> bool {
        // Every set is applied, even after one failed.
        let mut ok = true;
        for set in &tx.sets {
            ok &= self.apply(set);
        }
        ok
    }
}
