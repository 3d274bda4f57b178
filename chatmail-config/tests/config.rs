//! Config parsing, defaults, derived values, environment overrides and every validation error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chatmail_config::{Config, Source, TlsMode, parse_size_mb};

fn parse(text: &str) -> Result<Config, String> {
    Config::parse(text, Path::new("chatmail.ini"), &|_| None).map_err(|e| e.to_string())
}

fn parse_env(text: &str, env: &[(&str, &str)]) -> Result<Config, String> {
    parse_with(text, env, &[])
}

/// Parses `text` with `env` overrides and the extension keys `extra`.
fn parse_with(
    text: &str,
    env: &[(&str, &str)],
    extra: &[&'static chatmail_config::schema::Key],
) -> Result<Config, String> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::parse_extended(
        text,
        Path::new("chatmail.ini"),
        &|k| env.get(k).cloned(),
        extra,
    )
    .map_err(|e| e.to_string())
}

#[test]
fn only_mail_domain_gives_upstreams_defaults() {
    let c = parse("[params]\nmail_domain = chat.example.org\n").unwrap();
    assert_eq!(c.mail_domain, "chat.example.org");
    assert_eq!(c.ipv4_relay, None);
    assert_eq!(c.postfix_myhostname, "chat.example.org");
    assert_eq!(
        (c.filtermail_smtp_port, c.filtermail_smtp_port_incoming),
        (10080, 10081)
    );
    assert_eq!(
        (
            c.filtermail_http_port_incoming,
            c.filtermail_lmtp_port_transport
        ),
        (10082, 10083)
    );
    assert_eq!(
        (c.postfix_reinject_port, c.postfix_reinject_port_incoming),
        (10025, 10026)
    );
    assert_eq!(
        (c.max_user_send_per_minute, c.max_user_send_burst_size),
        (60, 10)
    );
    assert_eq!(
        (c.max_mailbox_size.as_str(), c.max_mailbox_size_mb),
        ("500M", 500)
    );
    assert_eq!(c.max_message_size, 31_457_280);
    assert_eq!(
        (
            c.delete_mails_after,
            c.delete_large_after,
            c.delete_inactive_users_after
        ),
        (20, 7, 90)
    );
    assert_eq!(
        (
            c.username_min_length,
            c.username_max_length,
            c.password_min_length
        ),
        (9, 9, 9)
    );
    assert_eq!(
        (c.max_imap_connections, c.max_smtp_connections),
        (10000, 1000)
    );
    assert_eq!(
        (c.min_available_memory_mb, c.min_free_disk_space_mb),
        (200, 1024)
    );
    assert_eq!(c.max_load_1m, 5.0);
    assert_eq!(
        c.mailboxes_dir,
        Path::new("/home/vmail/mail/chat.example.org")
    );
    assert_eq!(c.passdb_path, Path::new("/home/vmail/passdb.sqlite"));
    assert_eq!(
        c.turn_socket_path,
        Path::new("/run/chatmail-turn/turn.socket")
    );
    assert_eq!(
        (c.iroh_relay.as_str(), c.enable_iroh_relay),
        ("https://chat.example.org", true)
    );
    assert_eq!(c.mtail_address, None);
    assert!(!c.disable_ipv6 && !c.imap_rawlog && !c.imap_compress);
    assert_eq!(c.privacy_mail, None);
    assert!(c.unused_keys.is_empty());
    assert_eq!(c.tls.mode, TlsMode::Acme);
    assert_eq!(
        c.tls.cert_path,
        Path::new("/var/lib/chatmail-tls/live/chat.example.org/fullchain")
    );
    assert_eq!(
        c.tls.key_path,
        Path::new("/var/lib/chatmail-tls/live/chat.example.org/privkey")
    );
}

#[test]
fn ipv4_relays_get_brackets_reverse_pointer_and_self_signed_tls() {
    let c = parse("[params]\nmail_domain = 1.3.3.7\n").unwrap();
    assert_eq!(c.mail_domain, "[1.3.3.7]");
    assert_eq!(c.mail_domain_bare, "1.3.3.7");
    assert_eq!(c.ipv4_relay, Some("1.3.3.7".parse().unwrap()));
    assert_eq!(c.postfix_myhostname, "7.3.3.1.in-addr.arpa");
    assert_eq!(c.tls.mode, TlsMode::SelfSigned);
    // Upstream's folder: the address without brackets (addresses keep them).
    assert_eq!(c.mailboxes_dir, Path::new("/home/vmail/mail/1.3.3.7"));
    assert_eq!(
        c.mailbox_dir("a@[1.3.3.7]").unwrap(),
        Path::new("/home/vmail/mail/1.3.3.7/a@[1.3.3.7]")
    );
    // Where an earlier release kept them, moved from by a deploy.
    assert_eq!(
        c.bracketed_mailboxes_dir(),
        Some(PathBuf::from("/home/vmail/mail/[1.3.3.7]"))
    );
    let set = parse("[params]\nmail_domain = 1.3.3.7\nmailboxes_dir = /srv/mail\n").unwrap();
    assert_eq!(set.bracketed_mailboxes_dir(), None);
    let domain = parse("[params]\nmail_domain = chat.example.org\n").unwrap();
    assert_eq!(domain.bracketed_mailboxes_dir(), None);
    assert_eq!(c.iroh_relay, "https://1.3.3.7");
}

#[test]
fn underscore_domains_are_self_signed_unless_external_certs_are_given() {
    let c = parse("[params]\nmail_domain = _chat.example.org\n").unwrap();
    assert_eq!(c.tls.mode, TlsMode::SelfSigned);
    assert_eq!(c.tls.cert_path, Path::new("/etc/ssl/certs/mailserver.pem"));
    assert_eq!(c.tls.key_path, Path::new("/etc/ssl/private/mailserver.key"));
    let c = parse(
        "[params]\nmail_domain = _chat.example.org\ntls_external_cert_and_key = /c/cert.pem   /c/key.pem\n",
    )
    .unwrap();
    assert_eq!(c.tls.mode, TlsMode::External);
    assert_eq!(c.tls.cert_path, Path::new("/c/cert.pem"));
    assert_eq!(c.tls.key_path, Path::new("/c/key.pem"));
}

#[test]
fn external_tls_needs_exactly_two_paths() {
    for value in ["/only/one", "/a /b /c", "relative /b"] {
        let err = parse(&format!(
            "[params]\nmail_domain = example.org\ntls_external_cert_and_key = {value}\n"
        ))
        .unwrap_err();
        assert!(err.contains("two space-separated"), "{err}");
        assert!(
            err.starts_with("chatmail.ini:3: tls_external_cert_and_key"),
            "{err}"
        );
    }
}

#[test]
fn sizes_follow_upstreams_rules() {
    for (text, mb) in [
        ("500M", 500),
        ("2G", 2048),
        (" 1g ", 1024),
        ("100MB", 100),
        ("256", 256),
    ] {
        assert_eq!(parse_size_mb(text), Some(mb), "{text}");
    }
    assert_eq!(parse_size_mb("lots"), None);
    let err = parse("[params]\nmail_domain = example.org\nmax_mailbox_size = lots\n").unwrap_err();
    assert_eq!(
        err,
        "chatmail.ini:3: max_mailbox_size = \"lots\": expected a size above 0, such as 500M, 2G or 256 (megabytes)"
    );
}

#[test]
fn errors_name_the_file_line_key_and_value() {
    let cases = [
        ("[params]\n", "mail_domain is not set; it is required"),
        (
            "[params]\nmail_domain = bad domain!\n",
            "chatmail.ini:2: mail_domain = \"bad domain!\": expected a domain name",
        ),
        (
            "[params]\nmail_domain = example.org\nfiltermail_smtp_port = http\n",
            "chatmail.ini:3: filtermail_smtp_port = \"http\": expected a port number from 1 to 65535",
        ),
        (
            "[params]\nmail_domain = example.org\npostfix_reinject_port = 70000\n",
            "chatmail.ini:3: postfix_reinject_port = \"70000\": expected a port number",
        ),
        (
            "[params]\nmail_domain = example.org\nmax_message_size = 30MB\n",
            "chatmail.ini:3: max_message_size = \"30MB\": expected a whole number",
        ),
        (
            "[params]\nmail_domain = example.org\ndisable_ipv6 = maybe\n",
            "chatmail.ini:3: disable_ipv6 = \"maybe\": expected true or false",
        ),
        (
            "[params]\nmail_domain = example.org\nmax_load_1m = -1\n",
            "chatmail.ini:3: max_load_1m = \"-1\": expected a number",
        ),
        (
            "[params]\nmail_domain = example.org\nmtail_address = my-laptop\n",
            "chatmail.ini:3: mtail_address = \"my-laptop\": expected an IP address or localhost",
        ),
        (
            "[params]\nmail_domain = example.org\nmailboxes_dir = mail\n",
            "chatmail.ini:3: mailboxes_dir = \"mail\": expected an absolute path",
        ),
        (
            "mail_domain = x\n",
            "chatmail.ini:1: setting \"mail_domain\" comes before any [section]",
        ),
        (
            "[other]\nmail_domain = x\n",
            "chatmail.ini: no [params] section",
        ),
        (
            "[params]\nmail_domain = a.org\nmail_domain = b.org\n",
            "chatmail.ini:3: mail_domain is set twice (also at chatmail.ini:2)",
        ),
        (
            "[params]\nmail_domain = a.org\npostfix_reinject_port = 10080\n",
            "postfix_reinject_port and filtermail_smtp_port are both 10080",
        ),
        (
            "[params]\nmail_domain = a.org\nusername_min_length = 12\n",
            "username_min_length (12) is larger than username_max_length (9)",
        ),
    ];
    for (text, expected) in cases {
        let err = parse(text).unwrap_err();
        assert!(
            err.starts_with(expected),
            "for {text:?}:\n got  {err}\n want {expected}"
        );
    }
}

#[test]
fn dangerous_values_are_refused_before_anything_uses_them() {
    let refused = |line: &str| {
        parse(&format!("[params]\nmail_domain = example.org\n{line}\n")).expect_err(line)
    };
    // Values that would break out of their line in a configuration file.
    let injected = refused("privacy_mail = me@example.org\n  disable_plaintext_auth = no");
    assert_eq!(
        injected,
        "chatmail.ini:3: privacy_mail = \"me@example.org\\ndisable_plaintext_auth = no\": \
         expected a single line without control characters"
    );
    let env = parse_env(
        "[params]\nmail_domain = example.org\n",
        &[("CHATMAIL_ACME_EMAIL", "a@example.org\nevil: yes")],
    )
    .unwrap_err();
    assert!(
        env.starts_with(
            "$CHATMAIL_ACME_EMAIL=\"a@example.org\\nevil: yes\": expected a single line"
        ),
        "{env}"
    );
    assert!(refused("acme_email = a@example.org\u{7}").contains("control characters"));
    // A postal address may span lines: it goes into a web page, not a configuration file.
    let postal =
        parse("[params]\nmail_domain = example.org\nprivacy_postal = Street 1\n  12345 Town\n");
    assert_eq!(
        postal.unwrap().privacy_postal.as_deref(),
        Some("Street 1\n12345 Town")
    );

    // Zero where zero has no meaning.
    for key in [
        "max_user_send_per_minute",
        "max_user_send_burst_size",
        "max_message_size",
        "max_imap_connections",
        "max_smtp_connections",
        "password_min_length",
        "username_min_length",
    ] {
        let err = refused(&format!("{key} = 0"));
        assert_eq!(
            err,
            format!("chatmail.ini:3: {key} = \"0\": expected a whole number (1 or more)")
        );
    }
    for key in [
        "delete_mails_after",
        "delete_large_after",
        "delete_inactive_users_after",
    ] {
        let err = refused(&format!("{key} = 0"));
        assert!(
            err.ends_with("expected a whole number of days (1 or more)"),
            "{err}"
        );
    }
    assert!(refused("max_mailbox_size = 0M").contains("expected a size above 0"));

    // The mailboxes go to vmail with mode 0700: never a system directory.
    for dir in [
        "/",
        "/etc",
        "/etc/mail",
        "//etc/",
        "/usr/local/mail",
        "/home",
        "/var/lib/",
        "/home/../etc",
        "/proc/1",
    ] {
        let err = refused(&format!("mailboxes_dir = {dir}"));
        assert!(
            err.contains("expected an absolute path of a directory of its own"),
            "{dir}: {err}"
        );
    }
    for dir in [
        "/home/vmail/mail/example.org",
        "/srv/mail",
        "/var/lib/chatmail",
    ] {
        let config = parse(&format!(
            "[params]\nmail_domain = example.org\nmailboxes_dir = {dir}\n"
        ));
        assert_eq!(config.unwrap().mailboxes_dir, Path::new(dir));
    }

    // Internal ports never take a public service's port.
    let port = refused("filtermail_smtp_port = 25");
    assert_eq!(
        port,
        "filtermail_smtp_port = 25 is the relay's SMTP port; internal services need ports of their own"
    );
    assert!(refused("postfix_reinject_port = 443").contains("HTTPS port"));
}

#[test]
fn domains_longer_than_a_certificate_allows_are_refused() {
    let long = format!("{}.example.org", "a".repeat(52));
    assert_eq!(long.len(), 64);
    parse(&format!("[params]\nmail_domain = {long}\n")).unwrap();
    let too_long = format!("{}.{}.org", "a".repeat(63), "b".repeat(63));
    let err = parse(&format!("[params]\nmail_domain = {too_long}\n")).unwrap_err();
    assert!(err.ends_with("expected a domain of at most 64 characters: TLS certificates name it in their common name, which allows no more"), "{err}");
}

#[test]
fn huge_files_and_values_are_refused_without_echoing_them() {
    let dir = tempfile::tempdir().unwrap();
    let huge = dir.path().join("chatmail.ini");
    std::fs::write(
        &huge,
        format!("[params]\nmail_domain = a.org\n#{}\n", "x".repeat(2 << 20)),
    )
    .unwrap();
    let err = Config::load(&huge).unwrap_err().to_string();
    assert!(
        err.ends_with("bytes; a settings file is at most 1048576 bytes"),
        "{err}"
    );
    assert!(err.len() < 200);

    let value = "y".repeat(100_000);
    let err = parse(&format!(
        "[params]\nmail_domain = a.org\nprivacy_pdo = {value}\n"
    ))
    .unwrap_err();
    assert!(
        err.ends_with("… (100000 bytes)\": expected at most 4096 bytes"),
        "{err}"
    );
    assert!(err.len() < 250, "{}", err.len());
    let bad_line = parse(&format!("[params]\nmail_domain = a.org\n{value}\n")).unwrap_err();
    assert!(bad_line.len() < 250, "{}", bad_line.len());

    let file = dir.path().join("value");
    std::fs::write(&file, &value).unwrap();
    let err = parse_env(
        "[params]\nmail_domain = a.org\n",
        &[("CHATMAIL_PRIVACY_PDO_FILE", file.to_str().unwrap())],
    )
    .unwrap_err();
    assert!(
        err.ends_with("is 100000 bytes; a value is at most 4096"),
        "{err}"
    );
}

#[test]
fn domains_are_checked() {
    for good in [
        "example.org",
        "_test.example.org",
        "localhost",
        "1.2.3.4",
        "a-b.c_d.org",
    ] {
        assert!(chatmail_config::is_valid_domain(good), "{good}");
    }
    for bad in [
        "",
        "exa mple.org",
        "-a.org",
        "a..org",
        "ex/ample.org",
        "12394142",
        "1.2.3.999",
        "fe::1",
    ] {
        assert!(!chatmail_config::is_valid_domain(bad), "{bad}");
    }
}

#[test]
fn unknown_keys_are_collected_in_file_order() {
    let c = parse("[params]\nmail_domain = a.org\npassthrough_senders = x\nfoo = 1\n").unwrap();
    let keys: Vec<_> = c
        .unused_keys
        .iter()
        .map(|u| (u.key.as_str(), u.line))
        .collect();
    assert_eq!(keys, [("passthrough_senders", 3), ("foo", 4)]);
}

#[test]
fn iroh_relay_set_even_empty_disables_the_local_relay() {
    let c = parse("[params]\nmail_domain = a.org\niroh_relay =\n").unwrap();
    assert_eq!((c.iroh_relay.as_str(), c.enable_iroh_relay), ("", false));
    let c =
        parse("[params]\nmail_domain = a.org\niroh_relay = https://iroh.example.net\n").unwrap();
    assert_eq!(
        (c.iroh_relay.as_str(), c.enable_iroh_relay),
        ("https://iroh.example.net", false)
    );
}

#[test]
fn environment_overrides_win_and_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("email");
    std::fs::write(&secret, "ops@example.org\n").unwrap();
    let secret = secret.to_str().unwrap();
    let c = parse_env(
        "[params]\nmail_domain = a.org\nmax_message_size = 100\n",
        &[
            ("CHATMAIL_MAX_MESSAGE_SIZE", "2000"),
            ("CHATMAIL_ACME_EMAIL_FILE", secret),
            ("CHATMAIL_NOT_A_KEY", "ignored"),
        ],
    )
    .unwrap();
    assert_eq!(c.max_message_size, 2000);
    assert_eq!(c.acme_email, "ops@example.org");
    let size = c.setting("max_message_size").unwrap();
    assert_eq!(
        size.source,
        Source::Env {
            var: "CHATMAIL_MAX_MESSAGE_SIZE".into()
        }
    );
    assert_eq!(
        c.setting("mail_domain").unwrap().source.to_string(),
        "chatmail.ini:2"
    );
    assert_eq!(
        c.setting("max_user_send_per_minute").unwrap().source,
        Source::Default
    );
    assert_eq!(c.setting("privacy_mail").unwrap().source, Source::Unset);
    assert!(c.effective_ini().contains("max_message_size = 2000\n"));
    assert!(c.effective_ini().contains("acme_email = ops@example.org\n"));

    let err = parse_env(
        "[params]\nmail_domain = a.org\n",
        &[("CHATMAIL_DISABLE_IPV6", "perhaps")],
    )
    .unwrap_err();
    assert_eq!(
        err,
        "$CHATMAIL_DISABLE_IPV6=\"perhaps\": expected true or false"
    );
    let err = parse_env(
        "[params]\n",
        &[("CHATMAIL_MAIL_DOMAIN_FILE", "/nonexistent/x")],
    )
    .unwrap_err();
    assert!(
        err.starts_with("$CHATMAIL_MAIL_DOMAIN_FILE: cannot read /nonexistent/x"),
        "{err}"
    );
}

#[test]
fn effective_ini_reads_back_to_the_same_settings() {
    let c = parse("[params]\nmail_domain = a.org\niroh_relay =\nmax_mailbox_size = 2G\n").unwrap();
    let again = parse(&c.effective_ini()).unwrap();
    assert_eq!(again.max_mailbox_size_mb, 2048);
    assert!(!again.enable_iroh_relay);
    assert_eq!(again.mail_domain, "a.org");
}

#[test]
fn privacy_contacts_of_the_maintainers_are_refused() {
    let c = parse("[params]\nmail_domain = a.org\nprivacy_mail = privacy@merlinux.eu\n").unwrap();
    let err = c.check_privacy().unwrap_err().to_string();
    assert!(
        err.contains("please set your own privacy contacts"),
        "{err}"
    );
    let c = parse("[params]\nmail_domain = x.testrun.org\nprivacy_mail = privacy@merlinux.eu\n")
        .unwrap();
    c.check_privacy().unwrap();
    let c = parse("[params]\nmail_domain = a.org\nprivacy_mail = me@a.org\n").unwrap();
    c.check_privacy().unwrap();
}

#[test]
fn missing_file_says_to_run_init() {
    let err = Config::load(Path::new("/nonexistent/chatmail.ini"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "expecting /nonexistent/chatmail.ini to exist, run `cmdeploy init <domain>` first"
    );
}

#[test]
fn mailbox_dirs_reject_bad_addresses() {
    let c = parse("[params]\nmail_domain = a.org\n").unwrap();
    assert_eq!(
        c.mailbox_dir("x@a.org").unwrap(),
        Path::new("/home/vmail/mail/a.org/x@a.org")
    );
    for bad in ["", "nodomain", "a/b@a.org"] {
        assert!(c.mailbox_dir(bad).is_err(), "{bad}");
    }
}

/// Keys a component outside the built-in schema declares, as a third-party crate would.
static EXTENSION: [chatmail_config::schema::Key; 2] = [
    chatmail_config::schema::Key {
        name: "probe_port",
        kind: chatmail_config::schema::Kind::Port,
        default: chatmail_config::schema::DefaultValue::Value("9115"),
        group: chatmail_config::schema::Group::Deployment,
        help: "The probe's port.",
    },
    chatmail_config::schema::Key {
        name: "probe_verbose",
        kind: chatmail_config::schema::Kind::Bool,
        default: chatmail_config::schema::DefaultValue::Value("false"),
        group: chatmail_config::schema::Group::Deployment,
        help: "Log every probe.",
    },
];

fn parse_extended(text: &str, env: &[(&str, &str)]) -> Result<Config, String> {
    let extra: Vec<&'static chatmail_config::schema::Key> = EXTENSION.iter().collect();
    parse_with(text, env, &extra)
}

#[test]
fn extension_keys_are_typed_overridable_and_not_unused() {
    let text = "[params]\nmail_domain = a.org\nprobe_verbose = yes\nstray = 1\n";
    let c = parse_extended(text, &[]).unwrap();
    assert_eq!(c.extension::<u16>("probe_port").unwrap(), 9115);
    assert!(c.extension::<bool>("probe_verbose").unwrap());
    let unused: Vec<&str> = c.unused_keys.iter().map(|u| u.key.as_str()).collect();
    assert_eq!(unused, ["stray"]);
    let setting = c.setting("probe_verbose").unwrap();
    assert_eq!(setting.source.to_string(), "chatmail.ini:3");
    assert!(c.effective_ini().contains("probe_verbose = true\n"));

    let c = parse_extended(text, &[("CHATMAIL_PROBE_PORT", "19115")]).unwrap();
    assert_eq!(c.extension::<u16>("probe_port").unwrap(), 19115);
    assert_eq!(
        c.extension::<u16>("probe_verbose").unwrap_err().to_string(),
        "probe_verbose = \"true\" (chatmail.ini:3): cannot be read as u16"
    );
    assert_eq!(
        c.extension::<u16>("nope").unwrap_err().to_string(),
        "nope is not a declared setting"
    );

    // Without the declaration the same file only warns about the keys.
    let c = parse(text).unwrap();
    let unused: Vec<&str> = c.unused_keys.iter().map(|u| u.key.as_str()).collect();
    assert_eq!(unused, ["probe_verbose", "stray"]);
}

#[test]
fn bad_extension_values_name_file_line_key_and_expectation() {
    let err = parse_extended("[params]\nmail_domain = a.org\nprobe_port = 0\n", &[]).unwrap_err();
    assert_eq!(
        err,
        "chatmail.ini:3: probe_port = \"0\": expected a port number from 1 to 65535"
    );
    let err = parse_extended(
        "[params]\nmail_domain = a.org\n",
        &[("CHATMAIL_PROBE_VERBOSE", "maybe")],
    )
    .unwrap_err();
    assert_eq!(
        err,
        "$CHATMAIL_PROBE_VERBOSE=\"maybe\": expected true or false"
    );
}
