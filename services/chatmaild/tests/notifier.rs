//! The notifier's queue against a local HTTP server standing in for the push service:
//! delivery, 410, retries, the deadline, server down then up, and restarts.
// Helpers outside #[test] functions panic on purpose, too.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chatmail_config::Config;
use chatmaild::accounts::Account;
use chatmaild::notifier::{self, Notifier, Settings};
use chatmaild::tokens;
use common::{DOMAIN, PushServer, Relay};

fn config(relay: &Relay) -> Arc<Config> {
    Arc::new(Config::load(&relay.ini()).unwrap())
}

fn settings(url: &str, delays_ms: &[u64]) -> Settings {
    Settings {
        delays: delays_ms
            .iter()
            .copied()
            .map(Duration::from_millis)
            .collect(),
        ..Settings::new(url)
    }
}

fn queued(config: &Config) -> Vec<PathBuf> {
    match std::fs::read_dir(notifier::queue_dir(config)) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

fn queue_empties(config: &Config) -> bool {
    common::wait_until(Duration::from_secs(10), || queued(config).is_empty())
}

fn addr() -> String {
    format!("someone12@{DOMAIN}")
}

#[test]
fn each_token_is_posted_once_and_the_queue_file_removed() {
    let relay = Relay::new("");
    let config = config(&relay);
    let server = PushServer::start();
    let notifier = Notifier::start(config.clone(), settings(&server.url, &[0, 50])).unwrap();
    notifier
        .notify(&addr(), &["tok1".into(), "tok2".into()])
        .unwrap();
    let mut got = server.wait_for(2, Duration::from_secs(10));
    got.sort();
    assert_eq!(got, ["tok1", "tok2"]);
    assert!(queue_empties(&config));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(server.bodies().len(), 2);
    notifier.stop();
}

#[test]
fn status_410_forgets_the_token() {
    let relay = Relay::new("");
    let config = config(&relay);
    let account = Account::new(&config, &addr()).unwrap();
    std::fs::create_dir_all(&account.dir).unwrap();
    let now = chatmaild::unix_now();
    tokens::add(&account, "gone", now).unwrap();
    tokens::add(&account, "kept", now).unwrap();
    let server = PushServer::start();
    server.respond_with(&[410]);
    let notifier = Notifier::start(config.clone(), settings(&server.url, &[0, 50])).unwrap();
    notifier.notify(&addr(), &["gone".into()]).unwrap();
    server.wait_for(1, Duration::from_secs(10));
    assert!(queue_empties(&config));
    assert!(common::wait_until(Duration::from_secs(5), || {
        tokens::valid(&account, chatmaild::unix_now()).unwrap() == ["kept"]
    }));
    notifier.stop();
}

#[test]
fn failures_move_through_every_level_then_the_item_is_dropped() {
    let relay = Relay::new("");
    let config = config(&relay);
    let server = PushServer::start();
    server.respond_with(&[500, 404, 503, 500, 500, 500, 500]);
    let notifier =
        Notifier::start(config.clone(), settings(&server.url, &[0, 20, 40, 60, 80])).unwrap();
    notifier.notify(&addr(), &["tok".into()]).unwrap();
    assert_eq!(server.wait_for(5, Duration::from_secs(10)), ["tok"; 5]);
    assert!(queue_empties(&config));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.bodies().len(), 5, "no try after the last level");
    notifier.stop();
}

#[test]
fn items_past_their_deadline_are_not_retried() {
    let relay = Relay::new("");
    let config = config(&relay);
    let server = PushServer::start();
    server.respond_with(&[500]);
    let short = Settings {
        deadline: Duration::from_millis(10),
        ..settings(&server.url, &[0, 50, 50])
    };
    let notifier = Notifier::start(config.clone(), short).unwrap();
    notifier.notify(&addr(), &["tok".into()]).unwrap();
    server.wait_for(1, Duration::from_secs(10));
    assert!(queue_empties(&config));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.bodies().len(), 1);
    notifier.stop();
}

#[test]
fn server_down_then_up_delivers_on_retry() {
    let relay = Relay::new("");
    let config = config(&relay);
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}/notify");
    let notifier = Notifier::start(config.clone(), settings(&url, &[0, 700, 700, 700])).unwrap();
    notifier.notify(&addr(), &["tok".into()]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(queued(&config).len(), 1, "kept while the server is down");
    let server = PushServer::start_on(port);
    assert_eq!(server.wait_for(1, Duration::from_secs(10)), ["tok"]);
    assert!(queue_empties(&config));
    notifier.stop();
}

#[test]
fn a_restart_delivers_what_was_queued_before_it() {
    let relay = Relay::new("");
    let config = config(&relay);
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}/notify");
    let first = Notifier::start(config.clone(), settings(&url, &[0, 3_600_000])).unwrap();
    first.notify(&addr(), &["t1".into(), "t2".into()]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    first.stop();
    assert_eq!(queued(&config).len(), 2);

    // leftovers that are not items are removed on start
    let dir = notifier::queue_dir(&config);
    std::fs::write(dir.join("abc.tmp"), format!("{}\n1\nx", addr())).unwrap();
    std::fs::write(dir.join("empty"), "").unwrap();
    std::fs::write(dir.join("garbage"), "no address here").unwrap();

    let server = PushServer::start_on(port);
    let second = Notifier::start(config.clone(), settings(&url, &[0, 50])).unwrap();
    let mut got = server.wait_for(2, Duration::from_secs(10));
    got.sort();
    assert_eq!(got, ["t1", "t2"]);
    assert!(queue_empties(&config));
    second.stop();
}

#[test]
fn a_restart_drops_what_is_past_its_deadline() {
    let relay = Relay::new("");
    let config = config(&relay);
    let dir = notifier::queue_dir(&config);
    std::fs::create_dir_all(&dir).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Queued by an earlier run: 6 hours ago (past the 5 h deadline) and a minute ago.
    let old = dir.join("0123old");
    std::fs::write(&old, format!("{}\n{}\nstale", addr(), now - 6 * 3600)).unwrap();
    std::fs::write(
        dir.join("0123new"),
        format!("{}\n{}.5\nfresh", addr(), now - 60),
    )
    .unwrap();

    let server = PushServer::start();
    let notifier = Notifier::start(config.clone(), Settings::new(&server.url)).unwrap();
    assert!(!old.exists(), "dropped at start");
    assert_eq!(server.wait_for(1, Duration::from_secs(10)), ["fresh"]);
    assert!(queue_empties(&config));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(server.bodies(), ["fresh"]);
    notifier.stop();
}
