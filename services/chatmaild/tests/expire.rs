//! chatmail-expire and chatmail-quota-expire on synthetic maildirs with controlled mtimes:
//! exactly the expected files and accounts go, nothing else.
// Helpers outside #[test] functions panic on purpose, too.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{DOMAIN, Relay};

const EXPIRE: &str = env!("CARGO_BIN_EXE_chatmail-expire");
const QUOTA_EXPIRE: &str = env!("CARGO_BIN_EXE_chatmail-quota-expire");
const DAY: i64 = 86_400;

/// Writes `size` bytes at `mailbox/rel` with mtime `now - age` seconds.
fn file(mailbox: &Path, rel: &str, size: usize, age: i64) {
    let path = mailbox.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, vec![b'x'; size]).unwrap();
    common::set_mtime(&path, common::now() - age);
}

/// Every file and folder under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            out.push(
                path.strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
            if path.is_dir() {
                walk(base, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn run(bin: &str, args: &[&str]) -> Output {
    let out = Command::new(bin).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{bin} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn addr(local: &str) -> String {
    format!("{local}@{DOMAIN}")
}

#[test]
fn expire_removes_exactly_the_expired_files_and_accounts() {
    let relay = Relay::new("");
    let active = relay.mailbox(&addr("active123"));
    file(&active, "password", 10, DAY);
    file(&active, "cur/msg_old1", 500, 21 * DAY);
    file(&active, "cur/msg_old_large1", 300_000, 8 * DAY);
    file(&active, "cur/shouldstay", 300_000, DAY);
    file(&active, "new/msg_old_large2", 300_000, 8 * DAY);
    file(&active, "new/msg_recent", 600, 10 * DAY);
    file(&active, ".DeltaChat/cur/msg_old_dc", 500, 21 * DAY);
    file(&active, ".DeltaChat/dovecot-uidlist", 50, 400 * DAY);
    file(&active, "dovecot.index.cache", 5000, 400 * DAY);
    file(&active, "maildirsize", 20, DAY);
    let inactive = relay.mailbox(&addr("inactive1"));
    file(&inactive, "password", 10, 90 * DAY + 1);
    file(&inactive, "cur/msg", 10, DAY);
    std::fs::create_dir_all(relay.mailbox(&addr("empty1234"))).unwrap();
    let orphan = relay.mailbox(&addr("orphan123"));
    file(&orphan, "cur/msg", 10, DAY);
    file(
        &relay.mail(),
        "pending_notifications/0123abcd",
        10,
        400 * DAY,
    );

    let before = tree(&relay.mail());
    let dry = run(EXPIRE, &[relay.ini().to_str().unwrap(), "-v"]);
    assert_eq!(tree(&relay.mail()), before, "a dry run changes nothing");
    let report = stdout(&dry);
    assert!(
        report.contains("Removed 2 out of 4 mailboxes and 3 out of 6 files"),
        "{report}"
    );
    assert!(
        report.contains("Skipped deleting") && report.contains("orphan123"),
        "{report}"
    );

    let out = run(EXPIRE, &[relay.ini().to_str().unwrap(), "-v", "--remove"]);
    let report = stdout(&out);
    assert!(
        report.contains("Removed 2 out of 4 mailboxes and 3 out of 6 files"),
        "{report}"
    );
    assert!(
        report.contains("removing ") && report.contains("cur/msg_old1"),
        "{report}"
    );
    let (a, o) = (addr("active123"), addr("orphan123"));
    let expected: Vec<String> = [
        a.clone(),
        format!("{a}/.DeltaChat"),
        format!("{a}/.DeltaChat/cur"),
        format!("{a}/.DeltaChat/dovecot-uidlist"),
        format!("{a}/cur"),
        format!("{a}/cur/shouldstay"),
        format!("{a}/dovecot.index.cache"),
        format!("{a}/new"),
        format!("{a}/new/msg_old_large2"),
        format!("{a}/new/msg_recent"),
        format!("{a}/password"),
        o.clone(),
        format!("{o}/cur"),
        format!("{o}/cur/msg"),
        "pending_notifications".into(),
        "pending_notifications/0123abcd".into(),
    ]
    .into_iter()
    .collect();
    assert_eq!(tree(&relay.mail()), expected);
}

#[test]
fn expire_trims_mailboxes_over_seventy_percent_of_the_quota() {
    let relay = Relay::new("max_mailbox_size = 10M");
    let mailbox = relay.mailbox(&addr("big123456"));
    file(&mailbox, "password", 10, 0);
    file(&mailbox, "maildirsize", 10, 0);
    let now = common::now();
    let mib = 1024 * 1024;
    let name = |age: i64, n: u32| {
        format!(
            "{}.M{n}P1.host,S={},W={}:2,S",
            now - age,
            3 * mib,
            3 * mib + 10
        )
    };
    // on-disk sizes are small: the trim trusts the S= in the names
    for (n, age) in [(1, 10 * DAY), (2, 5 * DAY), (3, 2 * DAY), (4, 3600)] {
        file(&mailbox, &format!("cur/{}", name(age, n)), 100, age);
    }
    file(&mailbox, "cur/not-a-dovecot-name", 100, 2 * DAY);
    run(EXPIRE, &[relay.ini().to_str().unwrap(), "--remove"]);
    let mut expected = vec![name(3600, 4), name(2 * DAY, 3), "not-a-dovecot-name".into()];
    expected.sort();
    assert_eq!(tree(&mailbox.join("cur")), expected);
    assert!(!mailbox.join("maildirsize").exists());
}

#[test]
fn quota_expire_trims_to_the_target_and_keeps_the_newest() {
    let relay = Relay::new("");
    let mailbox = relay.mailbox(&addr("quota1234"));
    let now = common::now();
    let mib = 1024 * 1024;
    for (n, age) in [(1, 10 * DAY), (2, 5 * DAY), (3, 0)] {
        let folder = if n == 2 { "new" } else { "cur" };
        file(
            &mailbox,
            &format!("{folder}/{}.M{n}P9.host,S={mib},W={mib}", now - age),
            10,
            age,
        );
    }
    file(&mailbox, "maildirsize", 10, 0);
    let out = run(QUOTA_EXPIRE, &["1", mailbox.to_str().unwrap()]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr,
        format!(
            "quota-expire: removed 2 message(s) from {}\n",
            addr("quota1234")
        )
    );
    assert_eq!(
        tree(&mailbox),
        [
            "cur",
            &format!("cur/{now}.M3P9.host,S={mib},W={mib}"),
            "new"
        ]
    );
    // nothing left to trim: silent, and maildirsize (recreated by Dovecot) stays
    file(&mailbox, "maildirsize", 10, 0);
    let out = run(QUOTA_EXPIRE, &["1", mailbox.to_str().unwrap()]);
    assert!(out.stderr.is_empty());
    assert!(mailbox.join("maildirsize").exists());
}

#[test]
fn inactive_accounts_go_and_active_ones_stay() {
    let relay = Relay::new("");
    for i in 0..150 {
        file(
            &relay.mailbox(&addr(&format!("old{i:06}"))),
            "password",
            10,
            90 * DAY + 1,
        );
    }
    for i in 0..5 {
        let mailbox = relay.mailbox(&addr(&format!("new{i:06}")));
        file(&mailbox, "password", 10, 0);
        // ten logins within one day keep the day's start
        common::set_mtime(&mailbox.join("password"), common::now() / DAY * DAY);
    }
    let out = run(EXPIRE, &[relay.ini().to_str().unwrap(), "--remove"]);
    assert!(
        stdout(&out).contains("Removed 150 out of 155 mailboxes"),
        "{}",
        stdout(&out)
    );
    let left = tree(&relay.mail());
    assert_eq!(left.len(), 10, "{left:?}");
    assert!(left.iter().all(|p| p.starts_with("new")));
}

#[test]
fn maxnum_limits_the_scan_and_a_missing_folder_is_no_error() {
    let relay = Relay::new("");
    for i in 0..4 {
        file(
            &relay.mailbox(&addr(&format!("old{i:06}"))),
            "password",
            10,
            100 * DAY,
        );
    }
    let out = run(
        EXPIRE,
        &[relay.ini().to_str().unwrap(), "--remove", "--maxnum", "3"],
    );
    assert!(
        stdout(&out).contains("Removed 3 out of 3 mailboxes"),
        "{}",
        stdout(&out)
    );
    assert_eq!(tree(&relay.mail()).len(), 2);
    // --days shifts "now" back: a 100-day-old login is then recent
    let out = run(
        EXPIRE,
        &[relay.ini().to_str().unwrap(), "--remove", "--days", "20"],
    );
    assert!(
        stdout(&out).contains("Removed 0 out of 1 mailboxes"),
        "{}",
        stdout(&out)
    );

    let empty = Relay::new("");
    let out = run(EXPIRE, &[empty.ini().to_str().unwrap()]);
    assert!(stdout(&out).contains("no mailboxes"), "{}", stdout(&out));
}
