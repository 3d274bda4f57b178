//! The newemail CGI as fcgiwrap runs it: ini from $CHATMAIL_INI, a CGI response on stdout.
// Helpers outside #[test] functions panic on purpose, too.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_newemail");

/// Runs the CGI for a relay with `mail_domain = domain`, checks the CGI framing and returns
/// the JSON.
fn call(dir: &Path, domain: &str) -> serde_json::Value {
    let ini = dir.join(format!("{domain}.ini"));
    std::fs::write(&ini, format!("[params]\nmail_domain = {domain}\n")).unwrap();
    let out = Command::new(BIN)
        .env("CHATMAIL_INI", &ini)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.split('\n').collect();
    assert_eq!(lines.len(), 4, "{text:?}");
    assert_eq!(lines[0], "Content-Type: application/json");
    assert_eq!(lines[1], "");
    assert_eq!(lines[3], "");
    serde_json::from_str(lines[2]).unwrap()
}

#[test]
fn suggests_distinct_accounts_of_the_configured_shape() {
    let dir = tempfile::tempdir().unwrap();
    let first = call(dir.path(), "chat.example.org");
    let second = call(dir.path(), "chat.example.org");
    assert_ne!(first["email"], second["email"]);
    assert_ne!(first["password"], second["password"]);
    let email = first["email"].as_str().unwrap();
    let (local, domain) = email.split_once('@').unwrap();
    assert_eq!(domain, "chat.example.org");
    assert_eq!(local.len(), 9);
    assert!(
        local
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    );
    let password = first["password"].as_str().unwrap();
    assert_eq!(password.len(), 12);
    assert!(password.bytes().all(|b| b.is_ascii_graphic()));
    assert!(
        first.get("dclogin_url").is_none(),
        "acme relays get no dclogin URL"
    );
}

#[test]
fn self_signed_relays_get_a_dclogin_url() {
    let dir = tempfile::tempdir().unwrap();
    let named = call(dir.path(), "_test.example.org");
    let url = named["dclogin_url"].as_str().unwrap();
    let email = named["email"].as_str().unwrap();
    assert!(url.starts_with(&format!("dclogin:{email}?p=")), "{url}");
    assert!(url.ends_with("&v=1&ic=3"), "{url}");

    let ip = call(dir.path(), "1.3.3.7");
    let email = ip["email"].as_str().unwrap();
    assert!(email.ends_with("@[1.3.3.7]"), "{email}");
    let url = ip["dclogin_url"].as_str().unwrap();
    assert!(url.starts_with(&format!("dclogin:{email}?p=")), "{url}");
    assert!(url.ends_with("&v=1&ih=1.3.3.7&sh=1.3.3.7&ic=3"), "{url}");
}

#[test]
fn a_missing_ini_is_a_500_not_a_crash() {
    let out = Command::new(BIN)
        .env("CHATMAIL_INI", "/nonexistent/chatmail.ini")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("Status: 500"), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/chatmail.ini"));
}
