//! DKIM on incoming mail, with keys served by a DNS server on 127.0.0.1 written here.

use std::net::UdpSocket;
use std::thread;

use mail_auth::common::crypto::{RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter as _;
use mail_auth::dkim::DkimSigner;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer};

use crate::common::*;

const KEY_DER: &[u8] = include_bytes!("../data/dkim-test-key.der");
const PUBLIC_B64: &str = include_str!("../data/dkim-test-key.pub.b64");

/// Answers every TXT query for `<selector>._domainkey.example.net` with the test key.
fn start_dns() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind dns");
    let port = socket.local_addr().expect("dns addr").port();
    thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            if let Some(answer) = dns_answer(&buf[..n]) {
                let _ = socket.send_to(&answer, peer);
            }
        }
    });
    port
}

/// A response to one query: the DKIM record for `sel1._domainkey.example.net`, NXDOMAIN else.
fn dns_answer(query: &[u8]) -> Option<Vec<u8>> {
    // The question: labels from offset 12 to the zero label, then type and class.
    let mut pos = 12;
    let mut labels = Vec::new();
    while *query.get(pos)? != 0 {
        let len = usize::from(query[pos]);
        labels.push(String::from_utf8_lossy(query.get(pos + 1..pos + 1 + len)?).to_lowercase());
        pos += 1 + len;
    }
    let question_end = pos + 5;
    let name = labels.join(".");
    let found = name == "sel1._domainkey.example.net";
    let mut out = Vec::new();
    out.extend_from_slice(&query[..2]);
    out.extend_from_slice(&[0x85, if found { 0x80 } else { 0x83 }]);
    out.extend_from_slice(&[0, 1, 0, u8::from(found), 0, 0, 0, 0]);
    out.extend_from_slice(query.get(12..question_end)?);
    if found {
        let record = format!("v=DKIM1; k=rsa; p={}", PUBLIC_B64.trim());
        let mut rdata = Vec::new();
        for chunk in record.as_bytes().chunks(255) {
            rdata.push(chunk.len() as u8);
            rdata.extend_from_slice(chunk);
        }
        out.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1, 0, 0, 0x0e, 0x10]);
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    Some(out)
}

fn sign(message: &str, domain: &str) -> String {
    let key = RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(
        KEY_DER.to_vec(),
    )))
    .expect("test key");
    let signature = DkimSigner::from_key(key)
        .domain(domain)
        .selector("sel1")
        .headers(["From", "To", "Subject", "Date", "Message-ID"])
        .sign(message.as_bytes())
        .expect("sign");
    format!("{}{message}", signature.to_header())
}

#[test]
fn dkim_signed_mail_passes_and_others_get_554() {
    let sink = Sink::start();
    let dns = format!("127.0.0.1:{}", start_dns());
    let fm = Filtermail::start(
        "incoming",
        sink.port,
        "",
        &[("FILTERMAIL_DNS_SERVER", &dns)],
    );
    assert!(!fm.logs().contains("DISABLED"));
    let from = "remote@example.net";
    let to = "strict@example.org";
    fm.create_account(to, true);
    let message = encrypted_message(from, to, 500);

    let signed = sign(&message, "example.net");
    send(fm.smtp_port, from, &[to], signed.as_bytes())
        .unwrap_or_else(|e| panic!("{e:?}\n{}", fm.logs()));
    assert_eq!(sink.wait_for(1).len(), 1);

    let cases = [
        (
            "unsigned",
            message.clone(),
            "554 5.7.1 No DKIM signature found",
        ),
        (
            "body changed after signing",
            signed.replacen("version identification", "version identificatioN", 1),
            "554 5.7.1 No valid DKIM signature found",
        ),
        (
            "signed by another domain",
            sign(&message, "example.com"),
            "554 5.7.1 No valid DKIM signature found",
        ),
        (
            "garbled signature header",
            signed.replacen("b=", "b=AAAA", 1),
            "554 5.7.1 No valid DKIM signature found",
        ),
    ];
    for (name, raw, want) in cases {
        let (code, text) = send(fm.smtp_port, from, &[to], raw.as_bytes())
            .err()
            .unwrap_or_default();
        assert_eq!(code, 554, "{name}: {text}");
        assert!(text.contains(&want[4..]), "{name}: {text}");
    }
    // Cleartext is still refused before DKIM is looked at.
    let plain = sign(&plain_message(from, to), "example.net");
    assert_eq!(
        send(fm.smtp_port, from, &[to], plain.as_bytes()).map_err(|e| e.0),
        Err(523)
    );
    assert_eq!(sink.count(), 1);
}
