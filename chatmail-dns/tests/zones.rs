//! Zones rendered for fixture configs, compared with the reviewed copies under
//! `tests/zones/<fixture>.zone`; and the DKIM record checked against OpenSSL's public key.
//! After an intended change, regenerate them with
//! `UPDATE_SNAPSHOTS=1 cargo test -p chatmail-dns --test zones` and review the diff.

#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::path::Path;
use std::process::Command;

use chatmail_core::config::Config;
use chatmail_dns::{Dkim, RelayData, zone};

/// The test-only DKIM key (made once with `openssl genrsa 2048`).
const KEY: &str = include_str!("data/opendkim.private");

/// (fixture, chatmail.ini body, A, AAAA, published sts id, acme account URL)
const FIXTURES: &[(&str, &str, &str, &str, &str, &str)] = &[
    (
        "acme-domain",
        "mail_domain = chat.example.org\n",
        "203.0.113.5",
        "2001:db8::5",
        "",
        "https://acme-v02.api.letsencrypt.org/acme/acct/123456789",
    ),
    (
        "acme-domain-published-policy",
        "mail_domain = chat.example.org\n",
        "203.0.113.5",
        "",
        "202401021530",
        "",
    ),
    (
        "underscore-domain",
        "mail_domain = _chat.example.org\n",
        "203.0.113.6",
        "",
        "",
        "",
    ),
    (
        "external-tls",
        "mail_domain = chat.example.org\n\
         tls_external_cert_and_key = /etc/certs/fullchain.pem /etc/certs/key.pem\n",
        "",
        "2001:db8::7",
        "",
        "",
    ),
];

#[test]
fn rendered_zones_match_the_reviewed_snapshots() {
    let update = std::env::var("UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1");
    let dkim = Dkim::from_pem(KEY).unwrap();
    let mut problems = Vec::new();
    for (fixture, body, a, aaaa, sts_id, url) in FIXTURES {
        let config = Config::parse(
            &format!("[params]\n{body}"),
            Path::new("chatmail.ini"),
            &|_| None,
        )
        .unwrap();
        let data = RelayData {
            a: a.to_string(),
            aaaa: aaaa.to_string(),
            mta_sts: format!("{}.", config.mail_domain_bare),
            www: format!("{}.", config.mail_domain_bare),
            sts_id: sts_id.to_string(),
            acme_account_url: url.to_string(),
            dkim: Ok(dkim.clone()),
        };
        let rendered = zone::for_relay(&config, &data, &dkim, "202511251200");
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/zones")
            .join(format!("{fixture}.zone"));
        if update {
            std::fs::write(&path, &rendered).unwrap();
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(expected) if expected == rendered => {}
            Ok(_) => problems.push(format!("{fixture}: differs")),
            Err(_) => problems.push(format!("{fixture}: no snapshot")),
        }
        // Every rendered line reads back as a record of the same zone.
        let records = zone::parse(&rendered).unwrap();
        assert!(records.iter().any(|r| !r.required), "{fixture}");
    }
    assert!(
        problems.is_empty(),
        "{}\nrun UPDATE_SNAPSHOTS=1 cargo test -p chatmail-dns --test zones and review the diff",
        problems.join("\n")
    );
}

#[test]
fn dkim_value_holds_the_public_key_openssl_derives() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/opendkim.private");
    let output = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(output.status.success(), "openssl pkey -pubout");
    let public: String = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    let dkim = Dkim::read(&path).unwrap();
    assert_eq!(dkim.value, format!("v=DKIM1;k=rsa;p={public};s=email;t=s"));
    // The same key in the traditional PKCS#1 form gives the same record.
    let pkcs1 = Command::new("openssl")
        .args(["rsa", "-traditional", "-in"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(pkcs1.status.success(), "openssl rsa -traditional");
    let pkcs1 = String::from_utf8(pkcs1.stdout).unwrap();
    assert!(
        pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
        "{pkcs1}"
    );
    assert_eq!(Dkim::from_pem(&pkcs1).unwrap(), dkim);
    // Chunks of at most 255 characters that join back to the value.
    let chunked = dkim.chunked();
    let parts: Vec<&str> = chunked.split("\" \"").collect();
    assert!(parts.len() >= 2, "{chunked}");
    assert!(parts.iter().all(|p| p.trim_matches('"').len() <= 255));
    assert_eq!(chunked.replace("\" \"", "").trim_matches('"'), dkim.value);
    assert_eq!(dkim.unsplit(), format!("\"{}\"", dkim.value));
}

#[test]
fn a_bad_key_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("opendkim.private");
    let err = Dkim::read(&path).unwrap_err();
    assert!(
        format!("{err:#}").contains("cannot read the DKIM key"),
        "{err:#}"
    );
    std::fs::write(&path, "not a key\n").unwrap();
    let err = Dkim::read(&path).unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains(path.to_str().unwrap()), "{message}");
    assert!(message.contains("not an RSA private key"), "{message}");
}
