//! chatmail-metadata as a black box: the real binary on a real Unix socket, a local HTTP
//! server standing in for the push service and a local TURN credential socket.
// Helpers outside #[test] functions panic on purpose, too.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::time::Duration;

use common::{Client, DOMAIN, PushServer, Relay, Service};

const BIN: &str = env!("CARGO_BIN_EXE_chatmail-metadata");
const SERVER: &str = "shared/0123abcd/vendor/vendor.dovecot/pvt/server/vendor/deltachat";

fn start(relay: &Relay, notify_url: &str) -> Service {
    std::fs::create_dir_all(relay.mail()).unwrap();
    let appversions = relay.path("appversions.json");
    relay.start_dict(
        BIN,
        &[
            "--notify-url",
            notify_url,
            "--appversions",
            appversions.to_str().unwrap(),
        ],
    )
}

fn account(relay: &Relay) -> String {
    let addr = format!("someone12@{DOMAIN}");
    std::fs::create_dir_all(relay.mailbox(&addr)).unwrap();
    addr
}

fn set_token(c: &mut Client, addr: &str, token: &str) -> String {
    c.line(&format!("B1\t{addr}"));
    c.line(&format!("S1\tpriv/0123abcd/devicetoken\t{token}"));
    c.ask("C1")
}

fn new_message(c: &mut Client, addr: &str) -> String {
    c.line(&format!("B2\t{addr}"));
    c.line("S2\tpriv/0123abcd/messagenew");
    c.ask("C2")
}

fn queue_len(relay: &Relay) -> usize {
    std::fs::read_dir(relay.mail().join("pending_notifications"))
        .unwrap()
        .count()
}

#[test]
fn device_tokens_are_stored_listed_and_survive_a_restart() {
    let relay = Relay::new("");
    let addr = account(&relay);
    let service = start(&relay, "http://127.0.0.1:9/notify");
    let mut c = service.client();
    c.line("H3\t2\t0\t\tmetadata");
    let lookup = format!("Lpriv/0123abcd/devicetoken\t{addr}");
    assert_eq!(c.ask(&lookup), "O\n");
    assert_eq!(set_token(&mut c, &addr, "1111"), "O\n");
    assert_eq!(c.ask(&lookup), "O1111\n");
    assert_eq!(set_token(&mut c, &addr, "2222"), "O\n");
    assert_eq!(c.ask(&lookup), "O1111 2222\n");
    drop(service);

    let service = start(&relay, "http://127.0.0.1:9/notify");
    assert_eq!(service.client().ask(&lookup), "O1111 2222\n");
}

#[test]
fn messagenew_posts_every_token_to_the_push_service() {
    let relay = Relay::new("");
    let addr = account(&relay);
    let server = PushServer::start();
    let service = start(&relay, &server.url);
    let mut c = service.client();
    set_token(&mut c, &addr, "01234");
    set_token(&mut c, &addr, "56789");
    assert_eq!(new_message(&mut c, &addr), "O\n");
    let mut got = server.wait_for(2, Duration::from_secs(10));
    got.sort();
    assert_eq!(got, ["01234", "56789"]);
    assert!(common::wait_until(Duration::from_secs(5), || queue_len(
        &relay
    ) == 0));
    // no tokens: nothing to send, still a successful commit
    let other = format!("other1234@{DOMAIN}");
    std::fs::create_dir_all(relay.mailbox(&other)).unwrap();
    assert_eq!(new_message(&mut c, &other), "O\n");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(server.bodies().len(), 2);
}

#[test]
fn notifications_queued_while_the_push_service_is_down_arrive_after_a_restart() {
    let relay = Relay::new("");
    let addr = account(&relay);
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}/notify");
    let service = start(&relay, &url);
    let mut c = service.client();
    set_token(&mut c, &addr, "tok-a");
    set_token(&mut c, &addr, "tok-b");
    assert_eq!(new_message(&mut c, &addr), "O\n");
    assert_eq!(new_message(&mut c, &addr), "O\n");
    assert!(common::wait_until(Duration::from_secs(5), || {
        service
            .stderr()
            .matches("Notification request failed")
            .count()
            >= 4
    }));
    assert_eq!(queue_len(&relay), 4);
    let log = service.stop();
    assert!(log.contains("Notification request failed"), "{log}");
    assert_eq!(queue_len(&relay), 4, "the queue survives the service");

    let server = PushServer::start_on(port);
    let _service = start(&relay, &url);
    let mut got = server.wait_for(4, Duration::from_secs(10));
    got.sort();
    assert_eq!(got, ["tok-a", "tok-a", "tok-b", "tok-b"]);
    assert!(common::wait_until(Duration::from_secs(5), || queue_len(
        &relay
    ) == 0));
}

#[test]
fn server_keys_and_unknown_keys() {
    let relay = Relay::new("iroh_relay = https://example.org/");
    std::fs::write(
        relay.path("appversions.json"),
        "{\n  \"clients\": [\n    {\"clientId\": \"x\"}\n  ]\n}\n",
    )
    .unwrap();
    let service = start(&relay, "http://127.0.0.1:9/notify");
    let mut c = service.client();
    assert_eq!(c.ask(&format!("L{SERVER}/maxsmtprecipients\tx")), "O1000\n");
    assert_eq!(
        c.ask(&format!("L{SERVER}/irohrelay\tx")),
        "Ohttps://example.org/\n"
    );
    assert_eq!(
        c.ask(&format!("L{SERVER}/appversions\tx")),
        "O{\"clients\":[{\"clientId\":\"x\"}]}\n"
    );
    assert_eq!(c.ask(&format!("L{SERVER}/unknown\tx")), "N\n");
    assert_eq!(
        c.ask("Lshared/0123abcd/vendor/other/maxsmtprecipients\tx"),
        "N\n"
    );
    assert_eq!(
        c.ask(&format!("Lpriv/123/chatmail\tsomeone12@{DOMAIN}")),
        "N\n"
    );
    assert_eq!(c.ask("I0\t0\tpriv/0123abcd/\tx"), "\n");
    // the TURN socket is not in the ini: nothing listens at the default path
    assert_eq!(c.ask(&format!("L{SERVER}/turn\tx")), "N\n");
    std::fs::write(relay.path("appversions.json"), "{broken").unwrap();
    assert_eq!(c.ask(&format!("L{SERVER}/appversions\tx")), "N\n");
}

#[test]
fn turn_credentials_come_from_the_turn_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("turn.socket");
    let relay = Relay::new(&format!("turn_socket_path = {}", socket.display()));
    let service = start(&relay, "http://127.0.0.1:9/notify");
    let mut c = service.client();
    // missing socket → N
    assert_eq!(c.ask(&format!("L{SERVER}/turn\tx")), "N\n");

    let listener = UnixListener::bind(&socket).unwrap();
    let turn = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(b"user:pass\n").unwrap();
        // a second client gets no answer: the service must time out, not hang
        let (_silent, _) = listener.accept().unwrap();
        std::thread::sleep(Duration::from_secs(7));
    });
    assert_eq!(
        c.ask(&format!("L{SERVER}/turn\tx")),
        format!("O{DOMAIN}:3478:user:pass\n")
    );
    let started = std::time::Instant::now();
    assert_eq!(c.ask(&format!("L{SERVER}/turn\tx")), "N\n");
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    turn.join().unwrap();
}

#[test]
fn refused_sets_fail_the_commit() {
    let relay = Relay::new("iroh_relay =");
    let addr = account(&relay);
    let service = start(&relay, "http://127.0.0.1:9/notify");
    let mut c = service.client();
    assert_eq!(c.ask(&format!("L{SERVER}/irohrelay\tx")), "N\n");
    c.line(&format!("B5\t{addr}"));
    c.line("S5\tpriv/0123abcd/somethingelse\tv");
    assert_eq!(c.ask("C5"), "F\n");
    c.line(&format!("B6\t{addr}"));
    c.line("S6\tshared/0123abcd/devicetoken\tv");
    assert_eq!(c.ask("C6"), "F\n");
    c.line("B7\tnot-an-address");
    c.line("S7\tpriv/0123abcd/devicetoken\tv");
    assert_eq!(c.ask("C7"), "F\n");
    assert!(!relay.mailbox(&addr).join("metadata.json").exists());
}
