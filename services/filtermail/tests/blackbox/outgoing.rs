//! Outgoing mode: which submitted messages pass, the rate limit and the size limit.

use crate::common::*;

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.net";

fn start(sink: &Sink, extra: &str) -> Filtermail {
    Filtermail::start("outgoing", sink.port, extra, &[])
}

#[test]
fn encrypted_mail_is_reinjected_unchanged() -> TestResult {
    let sink = Sink::start();
    let fm = start(&sink, "");
    let message = encrypted_message(ALICE, BOB, 2000);
    send(
        fm.smtp_port,
        ALICE,
        &[BOB, "carol@example.com"],
        message.as_bytes(),
    )
    .map_err(|e| format!("{e:?}"))?;
    let got = sink.wait_for(1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].mail_from, ALICE);
    assert_eq!(got[0].rcpts, [BOB, "carol@example.com"]);
    assert_relayed(&got[0], &message);
    assert!(fm.wait_log("Outgoing: Filtering encrypted mail."));
    Ok(())
}

#[test]
fn gnupg_legacy_packets_pass() -> TestResult {
    let sink = Sink::start();
    let fm = start(&sink, "");
    let armored = include_str!("../data/gnupg-encrypted.asc").replace('\n', "\r\n");
    let message = encrypted_mime(&headers(ALICE, BOB, "[...]"), &armored);
    send(fm.smtp_port, ALICE, &[BOB], message.as_bytes()).map_err(|e| format!("{e:?}"))?;
    assert_eq!(sink.wait_for(1).len(), 1);
    Ok(())
}

/// Each near miss with the reply code the spec gives it.
#[test]
fn near_misses_are_refused() -> TestResult {
    let sink = Sink::start();
    let fm = start(&sink, "");
    let head = headers(ALICE, BOB, "[...]");
    let armored = armored_encrypted(500);
    let version_header = armored.replacen(
        "-----BEGIN PGP MESSAGE-----\r\n",
        "-----BEGIN PGP MESSAGE-----\r\nVersion: Other 1.0\r\n",
        1,
    );
    let mut bad_base64_lines: Vec<String> = armored.lines().map(str::to_owned).collect();
    bad_base64_lines[3].insert_str(5, "!*!");
    let bad_base64 = bad_base64_lines.join("\r\n");
    let third_part = multipart(
        &head,
        "multipart/encrypted; protocol=\"application/pgp-encrypted\"",
        &[
            ("Content-Type: application/pgp-encrypted", "Version: 1"),
            ("Content-Type: application/octet-stream", &armored),
            ("Content-Type: text/plain", "and a cleartext leak"),
        ],
    );
    let text_with_armor = format!("{head}Content-Type: text/plain\r\n\r\n{armored}");
    let cases = [
        ("plain text", plain_message(ALICE, BOB), 523),
        ("text/plain carrying armor", text_with_armor, 523),
        (
            "literal packet",
            encrypted_mime(&head, &armored_literal()),
            523,
        ),
        (
            "Version: armor header",
            encrypted_mime(&head, &version_header),
            523,
        ),
        ("bad base64", encrypted_mime(&head, &bad_base64), 523),
        ("third MIME part", third_part, 523),
        (
            "control part says Version: 2",
            encrypted_mime(&head, &armored)
                .replace("\r\n\r\nVersion: 1\r\n", "\r\n\r\nVersion: 2\r\n"),
            523,
        ),
        (
            "forged From",
            encrypted_message("mallory@example.org", BOB, 100),
            500,
        ),
        ("no From", "Subject: x\r\n\r\nbody\r\n".to_owned(), 500),
        (
            "setup message to someone else",
            multipart(
                &headers(ALICE, BOB, "Autocrypt Setup Message"),
                "multipart/mixed",
                &[("Content-Type: text/plain", "key backup")],
            ),
            523,
        ),
    ];
    for (name, message, code) in cases {
        let result = send(fm.smtp_port, ALICE, &[BOB], message.as_bytes());
        assert_eq!(result.map_err(|e| e.0), Err(code), "{name}");
    }
    assert_eq!(sink.count(), 0);
    assert!(fm.logs().contains("Rejected unencrypted mail"));
    assert!(fm.logs().contains("Outgoing: Filtering unencrypted mail."));
    Ok(())
}

#[test]
fn securejoin_and_setup_message_exceptions() -> TestResult {
    let sink = Sink::start();
    let fm = start(&sink, "");
    let securejoin = |header: &str, body: &str| {
        multipart(
            &format!(
                "{}Secure-Join: {header}\r\n",
                headers(ALICE, BOB, "Message from alice")
            ),
            "multipart/mixed",
            &[("Content-Type: text/plain; charset=utf-8", body)],
        )
    };
    send(
        fm.smtp_port,
        ALICE,
        &[BOB],
        securejoin("vc-request", "Secure-Join: vc-request").as_bytes(),
    )
    .map_err(|e| format!("vc-request: {e:?}"))?;
    send(
        fm.smtp_port,
        ALICE,
        &[BOB],
        securejoin("vg-request", "secure-join: vg-request\r\n").as_bytes(),
    )
    .map_err(|e| format!("vg-request: {e:?}"))?;
    let setup = multipart(
        &headers(ALICE, ALICE, "Autocrypt Setup Message"),
        "multipart/mixed",
        &[("Content-Type: text/plain", "key backup follows")],
    );
    send(fm.smtp_port, ALICE, &[ALICE], setup.as_bytes()).map_err(|e| format!("ASM: {e:?}"))?;
    assert_eq!(sink.wait_for(3).len(), 3);

    let refused = [
        securejoin("vc-request", "Meow!"),
        securejoin("vc-auth", "Secure-Join: vc-auth"),
        securejoin("vc-request", "Secure-Join: vc-request").replace(
            "--b0undary-XYZ--",
            "--b0undary-XYZ\r\nContent-Type: text/plain\r\n\r\nsecond part\r\n--b0undary-XYZ--",
        ),
    ];
    for message in refused {
        assert_eq!(
            send(fm.smtp_port, ALICE, &[BOB], message.as_bytes()).map_err(|e| e.0),
            Err(523)
        );
    }
    assert_eq!(sink.count(), 3);
    Ok(())
}

#[test]
fn rate_limit_lets_exactly_the_burst_through() -> TestResult {
    let sink = Sink::start();
    let fm = start(
        &sink,
        "max_user_send_per_minute = 2\nmax_user_send_burst_size = 4",
    );
    let message = encrypted_message(ALICE, BOB, 100);
    for i in 0..4 {
        send(fm.smtp_port, ALICE, &[BOB], message.as_bytes())
            .map_err(|e| format!("#{i}: {e:?}"))?;
    }
    let refused = send(fm.smtp_port, ALICE, &[BOB], message.as_bytes());
    let (code, text) = refused.err().ok_or("fifth message passed")?;
    assert_eq!(code, 450);
    assert!(
        text.contains("4.7.1: Too much mail from alice@example.org"),
        "{text}"
    );
    // Another sender is not affected.
    let other = encrypted_message("dave@example.org", BOB, 100);
    send(fm.smtp_port, "dave@example.org", &[BOB], other.as_bytes())
        .map_err(|e| format!("{e:?}"))?;
    assert_eq!(sink.wait_for(5).len(), 5);
    Ok(())
}

#[test]
fn size_limit_gives_552() -> TestResult {
    let sink = Sink::start();
    let fm = start(&sink, "max_message_size = 20000");
    let small = encrypted_message(ALICE, BOB, 5_000);
    send(fm.smtp_port, ALICE, &[BOB], small.as_bytes()).map_err(|e| format!("{e:?}"))?;
    let big = encrypted_message(ALICE, BOB, 30_000);
    assert_eq!(
        send(fm.smtp_port, ALICE, &[BOB], big.as_bytes()).map_err(|e| e.0),
        Err(552)
    );
    assert_eq!(sink.wait_for(1).len(), 1);
    Ok(())
}

#[test]
fn postfix_refusal_is_passed_back() -> TestResult {
    let sink = Sink::start_with_rcpt_reply(Some(
        "550 5.1.1 <bob@example.net>: Recipient address rejected",
    ));
    let fm = start(&sink, "");
    let message = encrypted_message(ALICE, BOB, 100);
    let (code, text) = send(fm.smtp_port, ALICE, &[BOB], message.as_bytes())
        .err()
        .ok_or("accepted")?;
    assert_eq!(code, 550);
    assert!(text.contains("Recipient address rejected"), "{text}");
    Ok(())
}

#[test]
fn unreachable_postfix_gives_451() -> TestResult {
    let fm = Filtermail::start("outgoing", free_port(), "", &[]);
    let message = encrypted_message(ALICE, BOB, 100);
    assert_eq!(
        send(fm.smtp_port, ALICE, &[BOB], message.as_bytes()).map_err(|e| e.0),
        Err(451)
    );
    Ok(())
}
