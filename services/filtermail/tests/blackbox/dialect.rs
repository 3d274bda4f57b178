//! The SMTP dialect, spoken line by line, and robustness against malformed clients.

use crate::common::*;

const ALICE: &str = "alice@example.org";

#[test]
fn greeting_ehlo_xforward_and_basic_commands() {
    let sink = Sink::start();
    let fm = Filtermail::start("outgoing", sink.port, "", &[]);
    let (mut c, greeting) = RawClient::connect(fm.smtp_port);
    assert_eq!(greeting, "220 filtermail SMTP");
    assert_eq!(
        c.cmd("EHLO postfix"),
        "250-filtermail\n250-XFORWARD ADDR\n250 OK"
    );
    assert_eq!(c.cmd("HELO postfix"), "250 OK");
    assert_eq!(
        c.cmd("XFORWARD NAME=spike.porcupine.org ADDR=IPv6:2001:DB8::1 PROTO=ESMTP"),
        "250 OK"
    );
    assert_eq!(c.cmd("NOOP"), "250 OK");
    assert_eq!(c.cmd("VRFY alice"), "500 Command not recognized");
    assert_eq!(
        c.cmd("RCPT TO:<bob@example.net>"),
        "503 5.5.1 Error: need MAIL command"
    );
    assert_eq!(
        c.cmd("MAIL FROM:bogus<"),
        "500 Invalid address in MAIL FROM"
    );
    assert_eq!(
        c.cmd("mail from:<Alice@Example.org> SIZE=100 BODY=8BITMIME"),
        "250 OK"
    );
    assert_eq!(c.cmd("DATA"), "503 5.5.1 Error: need RCPT command");
    assert_eq!(c.cmd("MAIL FROM:<alice@example.org>"), "250 OK");
    assert_eq!(c.cmd("RCPT TO:<>"), "500 Invalid address in RCPT TO");
    assert_eq!(c.cmd("RCPT TO:<bob@example.net> NOTIFY=NEVER"), "250 OK");
    assert_eq!(c.cmd("RSET"), "250 OK");
    assert_eq!(c.cmd("DATA"), "503 5.5.1 Error: need RCPT command");
    assert_eq!(c.cmd("QUIT"), "221 OK");
    assert!(c.is_closed());
}

#[test]
fn dot_stuffing_and_several_messages_per_connection() {
    let sink = Sink::start();
    let fm = Filtermail::start("outgoing", sink.port, "", &[]);
    let message = encrypted_message(ALICE, "bob@example.net", 200);
    let (mut c, _) = RawClient::connect(fm.smtp_port);
    c.cmd("EHLO postfix");
    for _ in 0..2 {
        assert_eq!(c.cmd("MAIL FROM:<alice@example.org>"), "250 OK");
        assert_eq!(c.cmd("RCPT TO:<bob@example.net>"), "250 OK");
        assert!(c.cmd("DATA").starts_with("354 "));
        // A line starting with a dot arrives stuffed and leaves unstuffed.
        let stuffed = message.replacen(
            "Subject: [...]\r\n",
            "Subject: [...]\r\nX-Dot: x\r\n..\r\n",
            1,
        );
        c.write(stuffed.as_bytes());
        assert_eq!(c.cmd("."), "250 OK");
    }
    let got = sink.wait_for(2);
    assert_eq!(got.len(), 2);
    let want = message.replacen(
        "Subject: [...]\r\n",
        "Subject: [...]\r\nX-Dot: x\r\n.\r\n",
        1,
    );
    assert_eq!(String::from_utf8_lossy(&got[1].data), want);
}

#[test]
fn the_first_log_line_says_it_is_serving() {
    let sink = Sink::start();
    for (mode, env) in [
        ("outgoing", &[][..]),
        ("incoming", &[("FILTERMAIL_SKIP_DKIM", "1")][..]),
    ] {
        let fm = Filtermail::start(mode, sink.port, "", env);
        let logs = fm.logs();
        let first = logs.lines().next().unwrap_or_default();
        assert!(first.contains("entering serving loop"), "{mode}: {logs}");
    }
}

#[test]
fn malformed_clients_get_an_error_reply_and_a_log_line() {
    let sink = Sink::start();
    let mut fm = Filtermail::start("outgoing", sink.port, "max_message_size = 10000", &[]);

    // A bare LF inside the data: the rest is read, then refused and the connection closed.
    let mut c = in_data(fm.smtp_port);
    c.write(b"Subject: x\nbody\r\n.\r\n");
    assert_eq!(
        c.reply(),
        "500 5.5.2 Bare LF in message data, lines must end in CRLF"
    );
    assert!(c.is_closed());
    assert!(
        fm.wait_log("message data refused: 500 5.5.2 Bare LF"),
        "{}",
        fm.logs()
    );
    // A client that ends every line, the end marker too, with a bare LF.
    let mut c = in_data(fm.smtp_port);
    c.write(b"Subject: x\n\nbody\n.\n");
    assert!(c.reply().starts_with("500 5.5.2 Bare LF"));
    assert!(c.is_closed());

    // An endless command line.
    let (mut c, _) = RawClient::connect(fm.smtp_port);
    c.write(&vec![b'A'; 100_000]);
    assert_eq!(c.reply(), "500 5.5.2 Line too long");
    assert!(c.is_closed());
    assert!(
        fm.wait_log("command line longer than 4096 bytes"),
        "{}",
        fm.logs()
    );

    // A message line without end, far beyond the size limit, then the end marker.
    let mut c = in_data(fm.smtp_port);
    c.write(&vec![b'x'; 300_000]);
    assert_eq!(c.cmd("\r\n."), "552 Message exceeds maximum size");
    assert!(c.is_closed());
    assert!(
        fm.wait_log("552 Message exceeds maximum size, closing"),
        "{}",
        fm.logs()
    );

    // Binary garbage, a client vanishing mid-data, invalid UTF-8.
    let (mut c, _) = RawClient::connect(fm.smtp_port);
    c.write(b"\x00\xff\xfe garbage \x80\r\n");
    assert_eq!(c.reply(), "500 Command not recognized");
    assert!(fm.wait_log("unknown command \"\\0"), "{}", fm.logs());
    c.cmd("MAIL FROM:<alice@example.org>");
    c.cmd("RCPT TO:<bob@example.net>");
    c.cmd("DATA");
    c.write(b"From: <alice@example.org>\r\nhalf a mess");
    drop(c);
    assert!(fm.wait_log("vanished during DATA"), "{}", fm.logs());

    // Garbage without end: after 20 errors the client is told and disconnected.
    let (mut c, _) = RawClient::connect(fm.smtp_port);
    for _ in 1..20 {
        assert_eq!(c.cmd("GARBAGE"), "500 Command not recognized");
    }
    assert_eq!(c.cmd("GARBAGE"), "421 4.7.0 Too many errors");
    assert!(c.is_closed());
    assert!(fm.wait_log("20 errors in one connection"), "{}", fm.logs());

    // A message that is not a message at all.
    let mut c = in_data(fm.smtp_port);
    c.write(b"\r\n\r\n");
    assert_eq!(c.cmd("."), "500 Failed to parse message: no header found");

    // Still serving.
    let (mut c, greeting) = RawClient::connect(fm.smtp_port);
    assert_eq!(greeting, "220 filtermail SMTP");
    assert_eq!(c.cmd("NOOP"), "250 OK");
    assert!(fm.is_running());
    assert_eq!(sink.count(), 0);
}

/// A connection from alice to bob, after the `354` reply to `DATA`.
fn in_data(port: u16) -> RawClient {
    let (mut c, _) = RawClient::connect(port);
    c.cmd("MAIL FROM:<alice@example.org>");
    c.cmd("RCPT TO:<bob@example.net>");
    assert!(c.cmd("DATA").starts_with("354 "));
    c
}

#[test]
fn invalid_sender_on_outgoing_closes() {
    let sink = Sink::start();
    let fm = Filtermail::start("outgoing", sink.port, "", &[]);
    let (mut c, _) = RawClient::connect(fm.smtp_port);
    assert_eq!(c.cmd("MAIL FROM:<>"), "500 Invalid from address <>");
    assert!(c.is_closed());
    let (mut c, _) = RawClient::connect(fm.smtp_port);
    assert_eq!(
        c.cmd("MAIL FROM:<a@b@c>"),
        "500 Invalid from address <a@b@c>"
    );
}

#[test]
fn help_and_bad_arguments() -> TestResult {
    let bin = env!("CARGO_BIN_EXE_filtermail");
    let help = std::process::Command::new(bin).arg("--help").output()?;
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success());
    for word in ["outgoing", "incoming", "FILTERMAIL_SKIP_DKIM", "<CONFIG>"] {
        assert!(text.contains(word), "{word} missing in:\n{text}");
    }
    let missing = std::process::Command::new(bin)
        .args(["/nonexistent/chatmail.ini", "outgoing"])
        .output()?;
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/chatmail.ini"));
    Ok(())
}
