//! chatmail-fsreport on synthetic mailboxes: summary, filters and the metrics files.
// Helpers outside #[test] functions panic on purpose, too.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::{DOMAIN, Relay};

const BIN: &str = env!("CARGO_BIN_EXE_chatmail-fsreport");
const DAY: i64 = 86_400;

fn file(mailbox: &Path, rel: &str, size: usize, age: i64) {
    let path = mailbox.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, vec![b'x'; size]).unwrap();
    common::set_mtime(&path, common::now() - age);
}

fn relay() -> Relay {
    let relay = Relay::new("");
    let user = relay.mailbox(&format!("user12345@{DOMAIN}"));
    file(&user, "password", 100, 5 * DAY);
    file(&user, "cur/a", 500, DAY);
    file(&user, "new/b", 600, DAY);
    file(&user, ".DeltaChat/cur/big", 2 << 20, DAY);
    let ci = relay.mailbox(&format!("ci-abcdef@{DOMAIN}"));
    file(&ci, "password", 100, 0);
    let old = relay.mailbox(&format!("old123456@{DOMAIN}"));
    file(&old, "password", 100, 120 * DAY);
    // No password file: not an account, but its files take storage.
    let stray = relay.mailbox(&format!("stray1234@{DOMAIN}"));
    file(&stray, "new/c", 700, 30 * DAY);
    file(&stray, "maildirsize", 10, 30 * DAY);
    relay
}

fn run(relay: &Relay, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg(relay.ini())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn gauge(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .unwrap_or_else(|| panic!("no {line_start} in {text}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn prometheus_gauges_count_accounts_logins_and_storage() {
    let relay = relay();
    let prom = relay.path("metrics");
    std::fs::create_dir(&prom).unwrap();
    let printed = run(&relay, &["--textfile", prom.to_str().unwrap()]);
    assert_eq!(printed, "");
    let path = prom.join("fsreport.prom");
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o644
    );
    assert_eq!(gauge(&text, "chatmail_accounts{kind=\"all\"}"), 3);
    assert_eq!(gauge(&text, "chatmail_accounts{kind=\"ci\"}"), 1);
    assert_eq!(gauge(&text, "chatmail_accounts{kind=\"user\"}"), 2);
    assert_eq!(gauge(&text, "chatmail_accounts_active{days=\"1\"}"), 0);
    assert_eq!(gauge(&text, "chatmail_accounts_active{days=\"10\"}"), 1);
    assert_eq!(gauge(&text, "chatmail_accounts_active{days=\"150\"}"), 2);
    assert_eq!(
        gauge(&text, "chatmail_storage_bytes{kind=\"messages\"}"),
        1100 + (2 << 20) + 700
    );
    assert_eq!(gauge(&text, "chatmail_storage_bytes{kind=\"extra\"}"), 310);
    assert_eq!(gauge(&text, "chatmail_messages_count{min_size=\"0\"}"), 3);
    assert_eq!(
        gauge(&text, "chatmail_messages_count{min_size=\"1048576\"}"),
        1
    );
    assert_eq!(
        gauge(&text, "chatmail_messages_bytes{min_size=\"2097152\"}"),
        2 << 20
    );
    assert_eq!(
        gauge(&text, "chatmail_messages_count{min_size=\"5242880\"}"),
        0
    );
}

#[test]
fn mdir_and_login_age_filter_the_size_buckets_not_the_totals() {
    let relay = relay();
    let prom = relay.path("r.prom");
    let gauges = |args: &[&str]| {
        let mut all = vec!["--textfile", prom.to_str().unwrap()];
        all.extend_from_slice(args);
        run(&relay, &all);
        let text = std::fs::read_to_string(&prom).unwrap();
        let total = gauge(&text, "chatmail_storage_bytes{kind=\"messages\"}");
        let bucket = gauge(&text, "chatmail_messages_bytes{min_size=\"0\"}");
        (total, bucket)
    };
    let total = 1100 + (2 << 20) + 700;
    // The stray mailbox's message is in the total only; `.DeltaChat/cur` is not `cur`.
    assert_eq!(gauges(&[]), (total, 1100 + (2 << 20)));
    assert_eq!(gauges(&["--mdir", "new"]), (total, 600));
    assert_eq!(gauges(&["--mdir", "cur"]), (total, 500));
    assert_eq!(gauges(&["--min-login-age", "4"]), (total, 1100 + (2 << 20)));
    assert_eq!(gauges(&["--min-login-age", "6"]), (total, 0));
}

#[test]
fn summary_and_legacy_metrics() {
    let relay = relay();
    let summary = run(&relay, &[]);
    assert!(
        summary.contains("accounts: 3 (1 ci-, 2 users)"),
        "{summary}"
    );
    assert!(summary.contains("active within  10 days: 1"), "{summary}");
    let legacy = relay.path("legacy");
    run(&relay, &["--legacy-metrics", legacy.to_str().unwrap()]);
    let text = std::fs::read_to_string(legacy).unwrap();
    assert_eq!(gauge(&text, "accounts "), 3);
    assert_eq!(gauge(&text, "ci_accounts "), 1);
    assert_eq!(gauge(&text, "nonci_accounts "), 2);
    // Five days ago, user12345 had just logged in; old123456 was 115 days in the past.
    let earlier = run(&relay, &["--days", "5"]);
    assert!(earlier.contains("active within   1 days: 1"), "{earlier}");
    assert!(earlier.contains("active within 150 days: 2"), "{earlier}");
    let only_two = run(&relay, &["--maxnum", "2"]);
    assert!(only_two.contains("accounts: 2 "), "{only_two}");
}
