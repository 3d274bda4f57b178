//! lastlogin as a black box: Dovecot's last_login transactions on a real Unix socket.
// Helpers outside #[test] functions panic on purpose, too.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{DOMAIN, Relay};

const BIN: &str = env!("CARGO_BIN_EXE_lastlogin");

fn account(relay: &Relay, local: &str) -> String {
    let addr = format!("{local}@{DOMAIN}");
    std::fs::create_dir_all(relay.mailbox(&addr)).unwrap();
    let password = relay.mailbox(&addr).join("password");
    std::fs::write(&password, "{SHA512-CRYPT}$6$x$y").unwrap();
    common::set_mtime(&password, 1_000_000);
    addr
}

#[test]
fn a_login_transaction_sets_the_day_rounded_mtime() {
    let relay = Relay::new("");
    let service = relay.start_dict(BIN, &[]);
    let addr = account(&relay, "someone12");
    let password = relay.mailbox(&addr).join("password");
    let mut c = service.client();
    c.line("H3\t2\t0\t\tlastlogin");
    let day = 1_765_411_200; // a UTC midnight
    for offset in [100, 5_000, 0, 86_399, 42, 60_000, 7, 1, 3_600, 86_000] {
        c.line(&format!("B1\t{addr}"));
        c.line(&format!("S1\tshared/last-login/{addr}\t{}", day + offset));
        c.assert_silent(Duration::from_millis(20));
        assert_eq!(c.ask("C1"), "O\n");
        assert_eq!(common::mtime(&password), day);
    }
    let atime = std::fs::metadata(&password).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(atime.atime(), day);
}

#[test]
fn transaction_ids_are_per_connection() {
    let relay = Relay::new("");
    let service = relay.start_dict(BIN, &[]);
    let (a, b) = (account(&relay, "first1234"), account(&relay, "second123"));
    let (mut ca, mut cb) = (service.client(), service.client());
    ca.line(&format!("B1\t{a}"));
    cb.line(&format!("B1\t{b}"));
    ca.line(&format!("S1\tshared/last-login/{a}\t172800"));
    cb.line(&format!("S1\tshared/last-login/{b}\t259300"));
    assert_eq!(ca.ask("C1"), "O\n");
    assert_eq!(cb.ask("C1"), "O\n");
    assert_eq!(common::mtime(&relay.mailbox(&a).join("password")), 172_800);
    assert_eq!(common::mtime(&relay.mailbox(&b).join("password")), 259_200);
}

#[test]
fn missing_accounts_still_commit_and_other_keys_fail() {
    let relay = Relay::new("");
    let service = relay.start_dict(BIN, &[]);
    let mut c = service.client();
    let ghost = format!("ghost1234@{DOMAIN}");
    c.line(&format!("B7\t{ghost}"));
    c.line(&format!("S7\tshared/last-login/{ghost}\t172800"));
    assert_eq!(c.ask("C7"), "O\n");
    assert!(!relay.mailbox(&ghost).exists());

    let addr = account(&relay, "someone12");
    c.line(&format!("B8\t{addr}"));
    c.line(&format!("S8\tshared/other/{addr}\t172800"));
    assert_eq!(c.ask("C8"), "F\n");
    c.line(&format!("B9\t{addr}"));
    c.line(&format!("S9\tshared/last-login/{addr}\tnot-a-number"));
    assert_eq!(c.ask("C9"), "F\n");
    assert_eq!(
        common::mtime(&relay.mailbox(&addr).join("password")),
        1_000_000
    );
    // a rolled-back transaction is gone
    c.line(&format!("B10\t{addr}"));
    c.line(&format!("S10\tshared/last-login/{addr}\t172800"));
    c.line("R10");
    assert_eq!(c.ask("C10"), "F\n");
    assert_eq!(
        common::mtime(&relay.mailbox(&addr).join("password")),
        1_000_000
    );

    assert_eq!(c.ask(&format!("Lshared/last-login/{addr}\t{addr}")), "N\n");
    assert_eq!(c.ask("I0\t0\tshared/last-login/\t"), "\n");
    assert!(service.stop().contains("ghost1234"));
}
