//! HTTP `/mxdeliv` in incoming mode.

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::common::*;

/// Sends one HTTP/1.1 request and returns (status, body).
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: relay.example.org\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("write head");
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

#[test]
fn mxdeliv_accepts_encrypted_and_refuses_cleartext() {
    let sink = Sink::start();
    let fm = Filtermail::start(
        "incoming",
        sink.port,
        "max_message_size = 50000",
        &[("FILTERMAIL_SKIP_DKIM", "true")],
    );
    fm.create_account("strict@example.org", true);
    fm.create_account("other@example.org", true);
    let from = [("X-MAIL-FROM", "remote@example.net")];
    let to = [
        ("X-MAIL-FROM", "remote@example.net"),
        ("X-MAIL-TO", "strict@example.org"),
        ("X-MAIL-TO", "<other@example.org>"),
    ];

    let message = encrypted_message("remote@example.net", "strict@example.org", 1000);
    assert_eq!(
        http(fm.http_port, "POST", "/mxdeliv", &to, message.as_bytes()),
        (200, "250 OK".to_owned())
    );
    let got = sink.wait_for(1);
    assert_eq!(got[0].rcpts, ["strict@example.org", "other@example.org"]);
    assert_eq!(String::from_utf8_lossy(&got[0].data), message);

    let plain = plain_message("remote@example.net", "strict@example.org");
    let (status, body) = http(fm.http_port, "POST", "/mxdeliv", &to, plain.as_bytes());
    assert_eq!(status, 400);
    assert!(body.starts_with("523 Encryption Needed"), "{body}");

    let big = encrypted_message("remote@example.net", "strict@example.org", 60_000);
    let (status, body) = http(fm.http_port, "POST", "/mxdeliv", &to, big.as_bytes());
    assert_eq!(
        (status, body.as_str()),
        (413, "552 Message exceeds maximum size")
    );

    assert_eq!(http(fm.http_port, "GET", "/mxdeliv", &to, b"").0, 405);
    assert_eq!(
        http(fm.http_port, "POST", "/other", &to, message.as_bytes()).0,
        404
    );
    let (status, body) = http(fm.http_port, "POST", "/mxdeliv", &from, message.as_bytes());
    assert_eq!(
        (status, body.as_str()),
        (400, "503 5.5.1 Error: need RCPT command")
    );
    assert_eq!(sink.count(), 1);
}
