//! Transport mode: Postfix's side is an LMTP client; the receiving relays, DNS and
//! certificates are the [`testbed`](crate::testbed)'s.

use std::thread;
use std::time::Duration;

use mail_auth::hickory_resolver::proto::rr::rdata::MX;
use mail_auth::hickory_resolver::proto::rr::{Name, RData};

use crate::common::*;
use crate::testbed::*;

const FROM: &str = "alice@example.org";

#[test]
fn https_path_delivers_to_the_receiving_relay() {
    let bed = Testbed::new(11);
    let relay = bed.relay(2, &Cert::Trusted(&["mx.trusted.test"]), true, true);
    bed.mx("trusted.test", 10, "mx.trusted.test");
    bed.a("mx.trusted.test", 2);
    let transport = bed.transport();

    let message = encrypted_message(FROM, "bob@trusted.test", 2000);
    let replies = lmtp(transport.smtp_port, FROM, &["bob@trusted.test"], &message);
    assert_eq!(replies, ["250 OK (HTTPS)"], "{}", transport.logs());
    let got = relay.sink.wait_for(1);
    assert_eq!(got[0].rcpts, ["bob@trusted.test"]);
    assert_eq!(String::from_utf8_lossy(&got[0].data), message);
    assert!(
        transport
            .wait_log("delivery to trusted.test via mx.trusted.test over HTTPS: 250 OK (HTTPS)"),
        "{}",
        transport.logs()
    );
    assert!(
        relay
            .filtermail
            .logs()
            .contains("Incoming: Filtering encrypted mail.")
    );
}

#[test]
fn without_https_smtp_is_used_and_remembered() {
    let bed = Testbed::new(12);
    let relay = bed.relay(2, &Cert::Trusted(&["mx.nohttps.test"]), false, true);
    bed.mx("nohttps.test", 10, "mx.nohttps.test");
    bed.a("mx.nohttps.test", 2);
    let transport = bed.transport();

    for n in 1..=2 {
        let message = encrypted_message(FROM, "bob@nohttps.test", 500);
        let replies = lmtp(transport.smtp_port, FROM, &["bob@nohttps.test"], &message);
        assert_eq!(replies, ["250 OK (SMTP)"], "{}", transport.logs());
        let got = relay.sink.wait_for(n);
        assert_eq!(String::from_utf8_lossy(&got[n - 1].data), message);
    }
    let logs = transport.logs();
    assert_eq!(
        logs.matches("HTTPS delivery to mx.nohttps.test failed")
            .count(),
        1,
        "the second delivery must skip HTTPS:\n{logs}"
    );
    assert!(
        logs.contains("not trying HTTPS with mx.nohttps.test for 30 minutes"),
        "{logs}"
    );
}

#[test]
fn remote_refusals_come_back_as_they_are() {
    let bed = Testbed::new(13);
    let https = bed.relay(2, &Cert::Trusted(&["mx.strict.test"]), true, true);
    let smtp = bed.relay(3, &Cert::Trusted(&["mx.strict-smtp.test"]), false, true);
    bed.mx("strict.test", 10, "mx.strict.test");
    bed.a("mx.strict.test", 2);
    bed.mx("strict-smtp.test", 10, "mx.strict-smtp.test");
    bed.a("mx.strict-smtp.test", 3);
    https.filtermail.create_account("bob@strict.test", true);
    smtp.filtermail.create_account("bob@strict-smtp.test", true);
    let transport = bed.transport();

    for rcpt in ["bob@strict.test", "bob@strict-smtp.test"] {
        let plain = plain_message(FROM, rcpt);
        let replies = lmtp(transport.smtp_port, FROM, &[rcpt], &plain);
        assert_eq!(replies.len(), 1);
        assert!(
            replies[0].starts_with("523 Encryption Needed"),
            "{rcpt}: {replies:?}\n{}",
            transport.logs()
        );
    }
    assert_eq!(https.sink.count() + smtp.sink.count(), 0);
}

#[test]
fn dns_answers_decide_where_mail_goes() {
    let bed = Testbed::new(14);
    let relay = bed.relay(
        2,
        &Cert::Trusted(&["mx.trusted.test", "direct.test"]),
        true,
        true,
    );
    bed.mx("trusted.test", 10, "mx.trusted.test");
    bed.a("mx.trusted.test", 2);
    // No MX: the domain itself.
    bed.a("direct.test", 2);
    // The preferred MX is down; the second one takes the mail.
    bed.mx("backup.test", 20, "mx.trusted.test");
    bed.mx("backup.test", 10, "down.backup.test");
    bed.a("down.backup.test", 9);
    // Null MX (RFC 7505).
    bed.record("nullmx.test", RData::MX(MX::new(0, Name::root())));
    let transport = bed.transport();

    let message = encrypted_message(FROM, "bob@trusted.test", 300);
    let cases = [
        ("bob@direct.test", "250 OK (HTTPS)"),
        ("bob@backup.test", "250 OK (HTTPS)"),
        ("bob@nullmx.test", "556 5.1.10 "),
        ("bob@nx.test", "512 Domain nx.test does not exist"),
    ];
    for (rcpt, want) in cases {
        let replies = lmtp(transport.smtp_port, FROM, &[rcpt], &message);
        assert!(
            replies[0].starts_with(want),
            "{rcpt}: {replies:?}\n{}",
            transport.logs()
        );
    }
    let got = relay.sink.wait_for(2);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].rcpts, ["bob@direct.test"]);
    assert_eq!(got[1].rcpts, ["bob@backup.test"]);
    let logs = transport.logs();
    assert!(
        logs.contains("delivery to backup.test via down.backup.test failed"),
        "{logs}"
    );
}

#[test]
fn one_reply_per_recipient_in_rcpt_order() {
    let bed = Testbed::new(15);
    let first = bed.relay(2, &Cert::Trusted(&["mx.one.test"]), true, true);
    let second = bed.relay(3, &Cert::Trusted(&["mx.two.test"]), false, true);
    bed.mx("one.test", 10, "mx.one.test");
    bed.a("mx.one.test", 2);
    bed.mx("two.test", 10, "mx.two.test");
    bed.a("mx.two.test", 3);
    let transport = bed.transport();

    let rcpts = [
        "a@one.test",
        "b@two.test",
        "x@nx.test",
        "c@ONE.test",
        "d@two.test",
    ];
    let message = encrypted_message(FROM, "a@one.test", 300);
    let replies = lmtp(transport.smtp_port, FROM, &rcpts, &message);
    assert_eq!(
        replies,
        [
            "250 OK (HTTPS)",
            "250 OK (SMTP)",
            "512 Domain nx.test does not exist",
            "250 OK (HTTPS)",
            "250 OK (SMTP)",
        ],
        "{}",
        transport.logs()
    );
    assert_eq!(
        first.sink.wait_for(1)[0].rcpts,
        ["a@one.test", "c@one.test"]
    );
    assert_eq!(
        second.sink.wait_for(1)[0].rcpts,
        ["b@two.test", "d@two.test"]
    );
}

#[test]
fn underscore_domains_accept_any_certificate_others_need_a_trusted_one() {
    let bed = Testbed::new(16);
    let underscore = bed.relay(2, &Cert::SelfSigned(&["_self.test"]), true, true);
    let untrusted = bed.relay(3, &Cert::SelfSigned(&["mx.untrusted.test"]), true, true);
    bed.a("_self.test", 2);
    bed.mx("untrusted.test", 10, "mx.untrusted.test");
    bed.a("mx.untrusted.test", 3);
    let transport = bed.transport();

    let message = encrypted_message(FROM, "bob@_self.test", 300);
    let replies = lmtp(transport.smtp_port, FROM, &["bob@_self.test"], &message);
    assert_eq!(replies, ["250 OK (HTTPS)"], "{}", transport.logs());
    assert_eq!(underscore.sink.wait_for(1).len(), 1);

    let literal = format!("bob@[{}]", bed.ip(2));
    let replies = lmtp(transport.smtp_port, FROM, &[&literal], &message);
    assert_eq!(replies, ["250 OK (HTTPS)"], "{}", transport.logs());
    assert_eq!(underscore.sink.wait_for(2)[1].rcpts, [literal]);

    let replies = lmtp(transport.smtp_port, FROM, &["bob@untrusted.test"], &message);
    assert!(
        replies[0].starts_with(
            "421 Failed to connect to any mail server; last attempt to mx.untrusted.test: "
        ),
        "{replies:?}\n{}",
        transport.logs()
    );
    assert!(replies[0].contains("TLS handshake"), "{replies:?}");
    assert_eq!(untrusted.sink.count(), 0);
}

#[test]
fn a_full_destination_queue_is_transport_busy() {
    let bed = Testbed::new(17);
    // A host that accepts connections and never answers: deliveries to it hang.
    let hanging = std::net::TcpListener::bind((bed.ip(2), bed.https_port)).expect("bind");
    bed.a("stuck.test", 2);
    let transport = bed.transport();
    let message = encrypted_message(FROM, "bob@stuck.test", 100);

    // One delivery in progress and a queue of 30 behind it.
    let waiting: Vec<RawClient> = (0..31)
        .map(|_| lmtp_until_data(transport.smtp_port, FROM, &["bob@stuck.test"], &message))
        .collect();
    thread::sleep(Duration::from_millis(500));
    let replies = lmtp(
        transport.smtp_port,
        FROM,
        &["bob@stuck.test", "x@nx.test"],
        &message,
    );
    assert_eq!(
        replies,
        ["421 Transport busy", "512 Domain nx.test does not exist"],
        "{}",
        transport.logs()
    );
    drop((waiting, hanging));
}
