//! The account store: one folder per address under `mailboxes_dir`, holding the `password`
//! file (whose mtime is the last login, rounded to the UTC day), the `enforceE2EEincoming`
//! flag and `metadata.json`, exactly as upstream's relays keep them.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chatmail_config::Config;

use crate::files;

/// How long account creation waits for another creator of the same address.
pub const CREATE_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// One address and its folder; the folder may not exist yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub addr: String,
    pub dir: PathBuf,
}

/// What [`Account::create`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// This call created the account; the new stored hash.
    New(String),
    /// Another login created it first; its stored hash.
    Existing(String),
}

impl Account {
    /// The account of `addr`, refusing addresses that cannot name a folder
    /// (empty, without `@`, with `/`).
    pub fn new(config: &Config, addr: &str) -> Result<Account> {
        let dir = config
            .mailbox_dir(addr)
            .map_err(|err| anyhow::anyhow!("{err}"))?;
        Ok(Account {
            addr: addr.to_owned(),
            dir,
        })
    }

    pub fn password_path(&self) -> PathBuf {
        self.dir.join("password")
    }

    pub fn enforce_e2ee_path(&self) -> PathBuf {
        self.dir.join("enforceE2EEincoming")
    }

    pub fn metadata_path(&self) -> PathBuf {
        self.dir.join("metadata.json")
    }

    /// The stored `{SHA512-CRYPT}` hash; `None` if there is no account. An empty password
    /// file also means "no account" and is logged as an error.
    pub fn password(&self) -> Result<Option<String>> {
        let path = self.password_path();
        match read_small(&path) {
            Ok(hash) if hash.is_empty() => {
                eprintln!(
                    "error: {} is empty, treating {} as absent",
                    path.display(),
                    self.addr
                );
                Ok(None)
            }
            Ok(hash) => Ok(Some(hash)),
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// The last login (the password file's mtime); `None` if there is no password file.
    pub fn last_login(&self) -> Result<Option<i64>> {
        let path = self.password_path();
        match std::fs::metadata(&path) {
            Ok(meta) => Ok(Some(files::mtime(&meta))),
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Records a login at `ts`: the password file's atime and mtime become the start of that
    /// UTC day. Touches the file only if its mtime differs. Fails if there is no account.
    pub fn set_last_login(&self, ts: i64) -> Result<()> {
        let day = files::day_start(ts);
        let Some(current) = self.last_login()? else {
            bail!("cannot record a login of {}: no password file", self.addr);
        };
        if current != day {
            files::set_times(&self.password_path(), day)?;
        }
        Ok(())
    }

    /// Creates the account with `hash` unless it exists: under the `password.lock` flock,
    /// re-checks, then makes the folder, writes the hash atomically, sets the last login to
    /// today and sets the `enforceE2EEincoming` flag.
    pub fn create(&self, hash: &str, now: i64) -> Result<Created> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let _lock = files::lock(&self.dir.join("password.lock"), CREATE_LOCK_TIMEOUT)?;
        if let Some(existing) = self.password()? {
            return Ok(Created::Existing(existing));
        }
        let path = self.password_path();
        files::write_atomic(&path, hash.as_bytes())?;
        files::set_times(&path, files::day_start(now))?;
        let flag = self.enforce_e2ee_path();
        std::fs::write(&flag, b"").with_context(|| format!("creating {}", flag.display()))?;
        Ok(Created::New(hash.to_owned()))
    }

    /// The passdb/userdb reply of doveauth, in upstream's JSON layout.
    pub fn userdb_json(&self, hash: &str) -> String {
        let quote = |s: &str| serde_json::Value::from(s).to_string();
        format!(
            "{{\"addr\": {}, \"home\": {}, \"uid\": \"vmail\", \"gid\": \"vmail\", \"password\": {}}}",
            quote(&self.addr),
            quote(&self.dir.to_string_lossy()),
            quote(hash)
        )
    }
}

/// Reads a small text file with as few system calls as possible (open, read, read, close):
/// this is the hot path of every login.
fn read_small(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::with_capacity(128);
    std::fs::File::open(path)?
        .take(u64::MAX)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// The addresses with a folder in `mailboxes_dir` (names containing `@`), sorted.
pub fn list_addresses(mailboxes_dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(mailboxes_dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => {
            return Err(err).with_context(|| format!("listing {}", mailboxes_dir.display()));
        }
    };
    let mut addrs = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", mailboxes_dir.display()))?;
        if let Some(name) = entry.file_name().to_str().filter(|n| n.contains('@')) {
            addrs.push(name.to_owned());
        }
    }
    addrs.sort();
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> Config {
        let text = format!(
            "[params]\nmail_domain = chat.example.org\nmailboxes_dir = {}\n",
            dir.display()
        );
        Config::parse(&text, Path::new("test.ini"), &|_| None).unwrap()
    }

    #[test]
    fn refuses_addresses_that_are_not_folder_names() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        for bad in ["", "..", ".", "../x@d", "nodomain", "a/b@chat.example.org"] {
            assert!(Account::new(&config, bad).is_err(), "{bad:?}");
        }
        let ok = Account::new(&config, "abc@chat.example.org").unwrap();
        assert_eq!(ok.dir, dir.path().join("abc@chat.example.org"));
    }

    #[test]
    fn create_writes_hash_flag_and_day_rounded_mtime_once() {
        let dir = tempfile::tempdir().unwrap();
        // a missing mailboxes_dir is created
        let config = config(&dir.path().join("mail"));
        let account = Account::new(&config, "abc@chat.example.org").unwrap();
        assert_eq!(account.password().unwrap(), None);
        let now = 1_765_432_100;
        assert_eq!(
            account.create("{SHA512-CRYPT}$6$a$b", now).unwrap(),
            Created::New("{SHA512-CRYPT}$6$a$b".into())
        );
        assert_eq!(
            account.create("{SHA512-CRYPT}$6$other", now).unwrap(),
            Created::Existing("{SHA512-CRYPT}$6$a$b".into())
        );
        assert_eq!(
            std::fs::read_to_string(account.password_path()).unwrap(),
            "{SHA512-CRYPT}$6$a$b"
        );
        assert_eq!(account.last_login().unwrap(), Some(files::day_start(now)));
        assert!(account.enforce_e2ee_path().exists());
        // the flag is removable and stays removed
        std::fs::remove_file(account.enforce_e2ee_path()).unwrap();
        assert_eq!(
            account.password().unwrap().as_deref(),
            Some("{SHA512-CRYPT}$6$a$b")
        );
        assert!(!account.enforce_e2ee_path().exists());
    }

    #[test]
    fn empty_password_file_is_no_account() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let account = Account::new(&config, "abc@chat.example.org").unwrap();
        std::fs::create_dir_all(&account.dir).unwrap();
        std::fs::write(account.password_path(), "").unwrap();
        assert_eq!(account.password().unwrap(), None);
        assert!(matches!(
            account.create("{X}h", 0).unwrap(),
            Created::New(_)
        ));
    }

    #[test]
    fn last_login_is_rounded_and_needs_an_account() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let account = Account::new(&config, "abc@chat.example.org").unwrap();
        assert!(account.set_last_login(100_000).is_err());
        account.create("{X}h", 0).unwrap();
        for ts in [200_000, 200_001, 259_199] {
            account.set_last_login(ts).unwrap();
            assert_eq!(account.last_login().unwrap(), Some(172_800));
        }
    }

    #[test]
    fn userdb_json_has_upstreams_fields() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let account = Account::new(&config, "abc@chat.example.org").unwrap();
        let json = account.userdb_json("{SHA512-CRYPT}$6$x\"y");
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["addr"], "abc@chat.example.org");
        assert_eq!(value["uid"], "vmail");
        assert_eq!(value["gid"], "vmail");
        assert_eq!(value["password"], "{SHA512-CRYPT}$6$x\"y");
        assert!(
            value["home"]
                .as_str()
                .unwrap()
                .ends_with("/abc@chat.example.org")
        );
        assert!(json.starts_with("{\"addr\": \""));
    }
}
