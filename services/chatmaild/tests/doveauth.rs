//! doveauth as a black box: the real binary on a real Unix socket, spoken to with the exact
//! protocol lines Dovecot sends.
// Helpers outside #[test] functions panic on purpose, too.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{DOMAIN, Relay, Service, passdb_line};

const BIN: &str = env!("CARGO_BIN_EXE_doveauth");

fn start(relay: &Relay) -> Service {
    let nocreate = relay.path("nocreate");
    relay.start_dict(BIN, &["--nocreate-file", nocreate.to_str().unwrap()])
}

fn addr(local: &str) -> String {
    format!("{local}@{DOMAIN}")
}

/// The JSON of an `O` reply.
fn json(reply: &str) -> serde_json::Value {
    let body = reply
        .strip_prefix('O')
        .unwrap_or_else(|| panic!("not found: {reply:?}"));
    assert!(body.ends_with('\n'));
    serde_json::from_str(body).unwrap()
}

fn stored_hash(relay: &Relay, addr: &str) -> String {
    std::fs::read_to_string(relay.mailbox(addr).join("password")).unwrap()
}

/// Asks Dovecot itself whether `hash` verifies `password`.
fn dovecot_verifies(hash: &str, password: &str) -> bool {
    let out = Command::new("doveadm")
        .args(["pw", "-t", hash, "-p", password])
        .output()
        .expect("doveadm (Debian package dovecot-core) must be installed for this test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    out.status.success() && stdout.contains("(verified)")
}

#[test]
fn first_login_creates_the_account_and_userdb_returns_the_same_dict() {
    let relay = Relay::new("");
    let service = start(&relay);
    let mut c = service.client();
    c.line("H3\t2\t0\t\tauth");
    let user = addr("abc123xyz");
    let created = c.ask(&passdb_line(&user, "s3cret-password"));
    let dict = json(&created);
    assert_eq!(dict["addr"], user.as_str());
    assert_eq!(dict["uid"], "vmail");
    assert_eq!(dict["gid"], "vmail");
    assert_eq!(
        dict["home"].as_str().unwrap(),
        relay.mailbox(&user).to_str().unwrap()
    );
    let hash = dict["password"].as_str().unwrap();
    assert_eq!(hash, stored_hash(&relay, &user));
    assert!(relay.mailbox(&user).join("enforceE2EEincoming").exists());
    let day = common::now() / 86_400 * 86_400;
    assert_eq!(common::mtime(&relay.mailbox(&user).join("password")), day);

    let userdb = c.ask(&format!("Lshared/userdb/{user}\t{user}"));
    assert_eq!(userdb, created);
    assert_eq!(service.stderr().matches("Created address: ").count(), 1);
}

#[test]
fn hashes_are_accepted_by_dovecot_even_for_passwords_with_quotes_and_slashes() {
    let relay = Relay::new("");
    let service = start(&relay);
    let mut c = service.client();
    let user = addr("quoted123");
    let password = r#"a\b"c'd/e f+g€"#;
    let dict = json(&c.ask(&passdb_line(&user, password)));
    assert!(
        dict["home"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/mail/{user}"))
    );
    let hash = dict["password"].as_str().unwrap();
    let crypt = hash.strip_prefix("{SHA512-CRYPT}$6$").unwrap();
    let (salt, digest) = crypt.split_once('$').unwrap();
    assert_eq!((salt.len(), digest.len()), (16, 86));
    assert!(dovecot_verifies(hash, password), "doveadm rejected {hash}");
    assert!(!dovecot_verifies(hash, "a wrong password"));
}

#[test]
fn wrong_password_returns_the_existing_hash_and_does_not_overwrite_it() {
    let relay = Relay::new("");
    let service = start(&relay);
    let mut c = service.client();
    let user = addr("abc123xyz");
    let first = json(&c.ask(&passdb_line(&user, "first-password")));
    let second = json(&c.ask(&passdb_line(&user, "other-password")));
    assert_eq!(first, second);
    assert!(dovecot_verifies(
        &stored_hash(&relay, &user),
        "first-password"
    ));
}

#[test]
fn hello_alone_gives_no_output_and_unknown_userdb_is_exactly_n() {
    let relay = Relay::new("");
    let service = start(&relay);
    let mut c = service.client();
    c.line("H3\t2\t0\t\tauth");
    c.assert_silent(Duration::from_millis(300));
    assert_eq!(
        c.ask(&format!("Lshared/userdb/{}\tx", addr("nobody123"))),
        "N\n"
    );
    assert_eq!(service.stderr(), "");
}

#[test]
fn length_rules_are_inclusive() {
    let relay = Relay::new("username_min_length = 6\nusername_max_length = 10");
    let service = start(&relay);
    let mut c = service.client();
    for (local, created) in [
        ("a2345", false),
        ("a23456", true),
        ("a234567", true),
        ("a234567890", true),
        ("a2345678901", false),
    ] {
        let reply = c.ask(&passdb_line(&addr(local), "long-enough-pw"));
        assert_eq!(reply.starts_with('O'), created, "{local}: {reply:?}");
        assert_eq!(
            relay.mailbox(&addr(local)).join("password").exists(),
            created
        );
    }
    // short passwords never create
    assert_eq!(c.ask(&passdb_line(&addr("b23456"), "short")), "N\n");
}

#[test]
fn localpart_charset_rules() {
    let relay = Relay::new("username_min_length = 3");
    let service = start(&relay);
    let mut c = service.client();
    for local in ["Abc123", "ab c12", "ab+c12", "ab!c12", "ab@c12", "ab\\c12"] {
        let reply = c.ask(&passdb_line(&addr(local), "long-enough-pw"));
        assert_eq!(reply, "N\n", "{local:?} must be refused");
    }
    let slash = c.ask(&passdb_line(&addr("ab/c12"), "long-enough-pw"));
    assert_eq!(slash, "N\n");
    for local in ["abc123", "a.b-c_d"] {
        let reply = c.ask(&passdb_line(&addr(local), "long-enough-pw"));
        assert!(reply.starts_with('O'), "{local}: {reply:?}");
    }
    let names: Vec<_> = std::fs::read_dir(relay.mail())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn other_domains_get_n_and_other_namespaces_get_f() {
    let relay = Relay::new("");
    let service = start(&relay);
    let mut c = service.client();
    assert_eq!(
        c.ask(&passdb_line("abc123xyz@other.org", "long-enough-pw")),
        "N\n"
    );
    assert_eq!(c.ask("Lshared/userdb/abc123xyz@other.org\tx"), "N\n");
    assert_eq!(c.ask("Lshared/userdb/noatsign\tx"), "N\n");
    assert_eq!(c.ask("Lpriv/passdb/x\"y@chat.example.org\tx"), "F\n");
    assert_eq!(c.ask("Lshared/other/x\tx"), "F\n");
    assert_eq!(c.ask("Lshared\tx"), "F\n");
    assert!(!relay.mail().join("abc123xyz@other.org").exists());
}

#[test]
fn nocreate_file_blocks_creation_but_not_existing_accounts() {
    let relay = Relay::new("");
    let service = start(&relay);
    let mut c = service.client();
    let existing = c.ask(&passdb_line(&addr("exists123"), "long-enough-pw"));
    assert!(existing.starts_with('O'));
    std::fs::write(relay.path("nocreate"), "").unwrap();
    assert_eq!(
        c.ask(&passdb_line(&addr("blocked12"), "long-enough-pw")),
        "N\n"
    );
    assert!(!relay.mailbox(&addr("blocked12")).exists());
    assert_eq!(
        c.ask(&passdb_line(&addr("exists123"), "long-enough-pw")),
        existing
    );
}

#[test]
fn system_limits_block_new_accounts_but_not_existing_ones() {
    let relay = Relay::new("min_available_memory = 99999999G");
    let user = addr("exists123");
    std::fs::create_dir_all(relay.mailbox(&user)).unwrap();
    std::fs::write(
        relay.mailbox(&user).join("password"),
        "{SHA512-CRYPT}$6$x$y",
    )
    .unwrap();
    let service = start(&relay);
    let mut c = service.client();
    assert_eq!(
        c.ask(&passdb_line(&addr("newuser12"), "long-enough-pw")),
        "N\n"
    );
    assert!(!relay.mailbox(&addr("newuser12")).join("password").exists());
    assert!(
        json(&c.ask(&passdb_line(&user, "long-enough-pw")))["password"] == "{SHA512-CRYPT}$6$x$y"
    );
    assert!(
        service.stderr().contains("registration rejected"),
        "{}",
        service.stderr()
    );
}

#[test]
fn iterate_lists_exactly_the_accounts_then_an_empty_line() {
    let relay = Relay::new("");
    let service = start(&relay);
    let mut c = service.client();
    let mut expected = Vec::new();
    for i in 0..10 {
        let user = addr(&format!("user{i:05}"));
        assert!(
            c.ask(&passdb_line(&user, "long-enough-pw"))
                .starts_with('O')
        );
        expected.push(format!("Oshared/userdb/{user}\t\n"));
    }
    std::fs::create_dir_all(relay.mail().join("pending_notifications")).unwrap();
    c.line("I0\t0\tshared/userdb/\t");
    let mut got = Vec::new();
    loop {
        let line = c.read_line();
        if line == "\n" {
            break;
        }
        got.push(line);
    }
    got.sort();
    assert_eq!(got, expected);
    // other paths: just the end of the iteration
    assert_eq!(c.ask("I0\t0\tshared/other/\t"), "\n");
    assert_eq!(c.ask("I0\t0"), "\n");
}

#[test]
fn a_hundred_concurrent_first_logins_create_the_address_exactly_once() {
    let relay = Relay::new("");
    let service = start(&relay);
    let user = addr("racer1234");
    let replies: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..100)
            .map(|i| {
                let service = &service;
                let user = &user;
                s.spawn(move || {
                    let mut c = service.client();
                    c.line("H3\t2\t0\t\tauth");
                    c.ask(&passdb_line(user, &format!("password-{i:03}")))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let stored = stored_hash(&relay, &user);
    for reply in &replies {
        assert_eq!(json(reply)["password"], stored.as_str());
    }
    assert_eq!(service.stderr().matches("Created address: ").count(), 1);
}

#[test]
fn many_threads_creating_many_accounts_all_succeed() {
    let relay = Relay::new("");
    let service = start(&relay);
    std::thread::scope(|s| {
        for t in 0..50 {
            let service = &service;
            s.spawn(move || {
                let mut c = service.client();
                for n in 0..5 {
                    let reply = c.ask(&passdb_line(
                        &addr(&format!("t{t:03}n{n:04}")),
                        "long-enough-pw",
                    ));
                    assert!(reply.starts_with('O'), "{reply:?}");
                }
            });
        }
    });
    assert_eq!(std::fs::read_dir(relay.mail()).unwrap().count(), 250);
}

#[test]
fn malformed_lines_are_answered_or_drop_only_that_client() {
    let relay = Relay::new("");
    let mut service = start(&relay);
    let mut c = service.client();
    // unknown commands are ignored, lookups without a user still get an answer
    c.line("Xgarbage");
    c.line("Uunset");
    assert_eq!(c.ask("Lshared/userdb/nobody123@chat.example.org"), "N\n");
    // non-UTF-8 lookups fail instead of being guessed at
    c.send(b"Lshared/userdb/\xff\xfe@chat.example.org\tx\n");
    assert_eq!(c.read_line(), "F\n");
    // commits: doveauth stores nothing; unknown transactions fail
    c.line("B1\tx");
    c.line("S1\tshared/passdb/x\tv");
    assert_eq!(c.ask("C1"), "F\n");
    assert_eq!(c.ask("C77"), "F\n");
    // pipelined lookups are answered in order
    c.send(b"Lshared/userdb/a@x\tx\nLshared\tx\nLshared/userdb/b@x\tx\n");
    assert_eq!(
        [c.read_line(), c.read_line(), c.read_line()],
        ["N\n", "F\n", "N\n"]
    );
    // an empty line ends the connection
    c.line("");
    assert_eq!(c.read_to_end(), "");

    // an endless line drops that client only
    let mut huge = service.client();
    huge.send(&vec![b'L'; 200_000]);
    assert_eq!(huge.read_to_end(), "");
    service.assert_alive();
    assert!(service.client().ask("Lshared/userdb/a@x\tx") == "N\n");
}
