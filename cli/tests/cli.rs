//! The command line without a Debian rootfs: the registry, `init`, `list`, `config`, the
//! generated compose file, and
//! every kind of bad input, each refused with a clear message before the target is touched.

#![allow(clippy::unwrap_used)] // a test fails by panicking

mod support;

use std::path::Path;

use support::*;

#[test]
fn the_registry_holds_exactly_the_built_in_components() {
    cmdeploy::components::expect_registry(&[]).unwrap();
    let registry = chatmail_core::Registry::linked().unwrap();
    assert_eq!(
        registry.names(),
        [
            "base",
            "chatmaild",
            "fcgiwrap",
            "filtermail",
            "iroh-relay",
            "legacy",
            "journald",
            "mtail",
            "opendkim",
            "turn",
            "unbound",
            "tls",
            "acmetool",
            "dovecot",
            "postfix",
            "upgrades",
            "website",
            "nginx",
            "version"
        ]
    );
}

#[test]
fn init_writes_a_commented_file_and_refuses_to_overwrite_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chatmail.ini");
    let config = path.to_str().unwrap();
    let run = cmdeploy(&["init", "chat.example.org", "--config", config], &[]);
    assert!(run.ok);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("mail_domain = chat.example.org\n"));
    assert!(text.contains("# max_user_send_per_minute = 60\n"));

    std::fs::write(&path, "[params]\nmail_domain = mine.example.org\n").unwrap();
    let run = cmdeploy(&["init", "other.example.org", "--config", config], &[]);
    assert!(!run.ok);
    assert!(
        run.stderr.contains("exists, not modifying it (use --force"),
        "{}",
        run.stderr
    );
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("mine.example.org")
    );

    let run = cmdeploy(
        &["init", "other.example.org", "--force", "--config", config],
        &[],
    );
    assert!(run.ok);
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("mail_domain = other.example.org\n")
    );

    let run = cmdeploy(
        &["init", "not a domain", "--force", "--config", config],
        &[],
    );
    assert!(!run.ok);
    assert!(run.stderr.contains("is not a domain name"));
}

#[test]
fn config_shows_each_value_and_its_origin() {
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(
        dir.path(),
        "mail_domain = 1.2.3.4\nmax_message_size = 1000\n",
    );
    let run = cmdeploy(
        &["config", "--config", path.to_str().unwrap()],
        &[("CHATMAIL_DISABLE_IPV6", "true")],
    );
    assert!(run.ok);
    let line = |key: &str| {
        run.stdout
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap()
            .to_owned()
    };
    assert!(
        line("max_message_size").ends_with("chatmail.ini:3"),
        "{}",
        line("max_message_size")
    );
    assert!(
        line("disable_ipv6").contains("true")
            && line("disable_ipv6").ends_with("$CHATMAIL_DISABLE_IPV6")
    );
    assert!(line("max_user_send_per_minute").ends_with("default"));
    assert!(
        run.stdout
            .contains("mail_domain (in addresses)    [1.2.3.4]"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("tls mode                      self"));
}

#[test]
fn list_shows_components_in_order_with_what_they_declare() {
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(dir.path(), "mail_domain = 1.2.3.4\n");
    let run = cmdeploy(&["list", "--config", path.to_str().unwrap()], &[]);
    assert!(run.ok);
    let names: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.is_empty())
        .collect();
    assert_eq!(
        names,
        [
            "base",
            "chatmaild",
            "fcgiwrap",
            "filtermail",
            "iroh-relay",
            "legacy",
            "journald",
            "mtail",
            "opendkim  (not used by this config)",
            "turn",
            "unbound",
            "tls",
            "acmetool  (not used by this config)",
            "dovecot",
            "postfix",
            "upgrades",
            "website",
            "nginx",
            "version"
        ]
    );
    assert!(run.stdout.contains("  file:     /etc/postfix/main.cf\n"));
    assert!(
        run.stdout
            .contains("  service:  postfix.service (running)\n")
    );
    let overrides = dir.path().join("templates");
    std::fs::create_dir_all(overrides.join("postfix")).unwrap();
    std::fs::write(overrides.join("postfix/main.cf.j2"), "# mine\n").unwrap();
    let listed = cmdeploy(
        &[
            "list",
            "--config",
            path.to_str().unwrap(),
            "--templates",
            overrides.to_str().unwrap(),
        ],
        &[],
    );
    assert!(listed.ok);
    let expected = format!(
        "template postfix/main.cf.j2 is overridden by {}\n",
        overrides.join("postfix/main.cf.j2").display()
    );
    assert!(listed.stdout.starts_with(&expected), "{}", listed.stdout);
    let packages = cmdeploy(&["list", "--packages", "--config", "/nonexistent"], &[]);
    assert!(packages.ok);
    assert!(packages.stdout.lines().any(|l| l == "dovecot-imapd"));
}

/// A target directory with the accounts files a run reads; a snapshot proves a refused run
/// left it alone.
fn untouched_target() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33::/var/www:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(etc.join("group"), "root:x:0:\nwww-data:x:33:\n").unwrap();
    let root = dir.path().to_str().unwrap().to_owned();
    (dir, root)
}

#[test]
fn bad_input_is_refused_with_a_clear_message_and_the_target_untouched() {
    let configs = tempfile::tempdir().unwrap();
    let overrides = configs.path().join("templates");
    std::fs::create_dir_all(overrides.join("chatmaild")).unwrap();
    std::fs::write(
        overrides.join("chatmaild/appversions.json"),
        r#"{"clients": [{"clientId": "deltachat", "sources": [{"sourceId": "web",
            "versionInteger": 1, "versionString": "1", "downloadUrl": "https://evil.example/"}]}]}"#,
    )
    .unwrap();
    let overrides = overrides.to_str().unwrap();
    let long_domain = format!("mail_domain = {}.{}.org\n", "a".repeat(63), "b".repeat(63));
    let cases: &[(&str, Option<&str>, &[&str], &str)] = &[
        (
            "missing config",
            None,
            &[],
            "to exist, run `cmdeploy init <domain>` first",
        ),
        (
            "no mail_domain",
            Some("max_message_size = 10\n"),
            &[],
            "mail_domain is not set; it is required",
        ),
        (
            "bad domain",
            Some("mail_domain = exa mple.org\n"),
            &[],
            ":2: mail_domain = \"exa mple.org\": expected a domain name",
        ),
        (
            "non-numeric port",
            Some("mail_domain = a.org\nfiltermail_smtp_port = smtp\n"),
            &[],
            ":3: filtermail_smtp_port = \"smtp\": expected a port number from 1 to 65535",
        ),
        (
            "bad size",
            Some("mail_domain = a.org\nmax_mailbox_size = big\n"),
            &[],
            ":3: max_mailbox_size = \"big\": expected a size above 0, such as 500M",
        ),
        (
            "bad --only",
            Some("mail_domain = a.org\n"),
            &["--only", "postfx"],
            "unknown component \"postfx\"; known components: base, chatmaild",
        ),
        (
            "bad --skip",
            Some("mail_domain = a.org\n"),
            &["--skip", "nginxx"],
            "unknown component \"nginxx\"",
        ),
        (
            "bad --phase",
            Some("mail_domain = a.org\n"),
            &["--phase", "install,deploy"],
            "unknown phase \"deploy\"",
        ),
        (
            "--root with a remote --ssh-host",
            Some("mail_domain = a.org\n"),
            &["--ssh-host", "relay.example.org"],
            "is a directory on this machine; it cannot be deployed over SSH to root@relay.example.org",
        ),
        (
            "bad --ssh-host",
            Some("mail_domain = a.org\n"),
            &["--ssh-host", "admin@relay"],
            "--ssh-host \"admin@relay\" is not a host name or address",
        ),
        (
            "bad app versions",
            Some("mail_domain = a.org\n"),
            &["--templates", overrides],
            "template chatmaild/appversions.json (for /usr/local/lib/chatmaild/appversions.json) \
             is not a valid app-versions document: client \"deltachat\", source \"web\": \
             downloadUrl \"https://evil.example/\" must start with https://github.com/deltachat/ \
             or https://download.delta.chat/",
        ),
        (
            "mailboxes in a system directory",
            Some("mail_domain = a.org\nmailboxes_dir = /etc\n"),
            &[],
            ":3: mailboxes_dir = \"/etc\": expected an absolute path of a directory of its own",
        ),
        (
            "an internal port on a public one",
            Some("mail_domain = a.org\nfiltermail_smtp_port = 25\n"),
            &[],
            "filtermail_smtp_port = 25 is the relay's SMTP port",
        ),
        (
            "a domain longer than certificates allow",
            Some(&long_domain),
            &[],
            "expected a domain of at most 64 characters",
        ),
        (
            "a --templates directory that does not exist",
            Some("mail_domain = a.org\n"),
            &["--templates", "/nonexistent/templates"],
            "template overrides /nonexistent/templates: no such directory",
        ),
        (
            "privacy contacts of others",
            Some("mail_domain = a.org\nprivacy_mail = privacy@merlinux.eu\n"),
            &[],
            "please set your own privacy contacts",
        ),
    ];
    for (what, body, extra, expected) in cases {
        let config = match body {
            Some(body) => config_file(configs.path(), body),
            None => configs.path().join("absent.ini"),
        };
        let (dir, root) = untouched_target();
        let before = snapshot(dir.path());
        let mut args = vec!["run", "--root", &root, "--config", config.to_str().unwrap()];
        args.extend_from_slice(extra);
        let run = cmdeploy(&args, &[]);
        assert!(!run.ok, "{what}: must fail");
        assert!(
            run.stderr.starts_with("error: ") || run.stderr.contains("error:"),
            "{what}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains(expected),
            "{what}: expected {expected:?} in {:?}",
            run.stderr
        );
        assert!(snapshot(dir.path()) == before, "{what}: the target changed");
    }
}

#[test]
fn unknown_keys_only_warn() {
    let configs = tempfile::tempdir().unwrap();
    let config = config_file(
        configs.path(),
        "mail_domain = a.org\npassthrough_senders = x@y.org\n",
    );
    let (dir, root) = untouched_target();
    let before = snapshot(dir.path());
    let run = cmdeploy(
        &[
            "run",
            "--dry-run",
            "--only",
            "base",
            "--phase",
            "configure",
            "--root",
            &root,
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    );
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("contains settings that have no effect: passthrough_senders")
    );
    assert!(run.stdout.contains("base: would create /etc/mailname"));
    assert!(snapshot(dir.path()) == before);
}

#[test]
fn a_second_run_on_the_same_target_is_refused_while_one_holds_the_lock() {
    let configs = tempfile::tempdir().unwrap();
    let config = config_file(configs.path(), "mail_domain = a.org\n");
    let (dir, root) = untouched_target();
    let target = chatmail_core::Target::new(dir.path(), false).unwrap();
    let lock = chatmail_core::RunLock::acquire(&target).unwrap();
    let args = [
        "run",
        "--dry-run",
        "--only",
        "base",
        "--root",
        &root,
        "--config",
        config.to_str().unwrap(),
    ];
    let run = cmdeploy(&args, &[]);
    assert!(!run.ok);
    assert!(
        run.stderr.contains("another cmdeploy run is deploying"),
        "{}",
        run.stderr
    );
    drop(lock);
    assert!(
        cmdeploy(&args, &[]).ok,
        "free again once the lock is released"
    );
}

/// The `dovecot` section of `cmdeploy list` with `DEBS_ENV` set to `choice`.
fn dovecot_listing(choice: &str) -> Vec<String> {
    let listed = cmdeploy(
        &["list", "--config", "/nonexistent"],
        &[("CMDEPLOY_DOVECOT_DEBS", choice)],
    );
    assert!(listed.ok, "{}", listed.all());
    listed
        .stdout
        .lines()
        .skip_while(|line| *line != "dovecot")
        .skip(1)
        .take_while(|line| line.starts_with(' '))
        .map(str::to_owned)
        .collect()
}

/// A `.deb` of `package` at `version` for this machine's architecture, made with dpkg-deb.
fn fake_deb(dir: &Path, package: &str, version: &str) {
    let tree = tempfile::tempdir().unwrap();
    std::fs::create_dir(tree.path().join("DEBIAN")).unwrap();
    let arch = chatmail_core::deb_arch(std::env::consts::ARCH);
    std::fs::write(
        tree.path().join("DEBIAN/control"),
        format!(
            "Package: {package}\nVersion: {version}\nArchitecture: {arch}\n\
             Maintainer: cmdeploy tests <root@localhost>\nDescription: a test package\n"
        ),
    )
    .unwrap();
    let deb = dir.join(format!("{package}_{version}_{arch}.deb"));
    let built = std::process::Command::new("dpkg-deb")
        .args(["--root-owner-group", "-b"])
        .arg(tree.path())
        .arg(&deb)
        .output()
        .unwrap();
    assert!(built.status.success(), "{built:?}");
}

#[test]
fn dovecot_builds_are_chosen_at_install_time_and_a_bad_directory_changes_nothing() {
    let pin = "  file:     /etc/apt/preferences.d/pin-dovecot";
    let upstream = dovecot_listing("download");
    assert!(
        !upstream.iter().any(|l| l.contains("packages:")),
        "{upstream:?}"
    );
    for package in ["dovecot-core", "dovecot-imapd", "dovecot-lmtpd"] {
        let line = format!(
            "  deb:      {package} 1:2.3.21+dfsg1-3 from \
             https://download.delta.chat/dovecot/{package}_2.3.21%2Bdfsg1-3_amd64.deb"
        );
        assert!(upstream.contains(&line), "{upstream:?}");
    }
    assert!(upstream.iter().any(|l| l == pin), "{upstream:?}");

    let debian = dovecot_listing("debian");
    assert!(
        debian.contains(&"  packages: dovecot-core dovecot-imapd dovecot-lmtpd".to_owned()),
        "{debian:?}"
    );
    assert!(debian.iter().any(|l| l == pin), "{debian:?}");

    // A directory: one build of the three packages, found by their control data.
    let debs = tempfile::tempdir().unwrap();
    let version = "1:2.3.19.1+dfsg1-2.1+deb12u6+chatmail1";
    for package in [
        "dovecot-core",
        "dovecot-imapd",
        "dovecot-lmtpd",
        "dovecot-pop3d",
    ] {
        fake_deb(debs.path(), package, version);
    }
    let dir = debs.path().to_str().unwrap();
    let ours = dovecot_listing(dir);
    for package in ["dovecot-core", "dovecot-imapd", "dovecot-lmtpd"] {
        let arch = chatmail_core::deb_arch(std::env::consts::ARCH);
        let line =
            format!("  deb:      {package} {version} from {dir}/{package}_{version}_{arch}.deb");
        assert!(ours.contains(&line), "{ours:?}");
    }
    assert!(!ours.iter().any(|l| l.contains("pop3d")), "{ours:?}");

    // A mixed, an incomplete or an unreadable set is refused, naming the directory and what
    // is wrong, before anything changes.
    let (_dir, root) = untouched_target();
    let before = snapshot(Path::new(&root));
    let install = |dir: &Path| {
        cmdeploy(
            &[
                "run", "--root", &root, "--phase", "install", "--only", "dovecot",
            ],
            &[("CMDEPLOY_DOVECOT_DEBS", dir.to_str().unwrap())],
        )
    };
    fake_deb(debs.path(), "dovecot-lmtpd", "1:2.3.21+dfsg1-3");
    let mixed = install(debs.path());
    assert!(!mixed.ok);
    assert!(
        mixed.stderr.contains(&format!(
            "CMDEPLOY_DOVECOT_DEBS={dir}: the .deb files must be one build"
        )) && mixed.stderr.contains("dovecot-lmtpd 1:2.3.21+dfsg1-3"),
        "{}",
        mixed.all()
    );
    let incomplete = tempfile::tempdir().unwrap();
    fake_deb(incomplete.path(), "dovecot-core", version);
    let run = install(incomplete.path());
    assert!(
        !run.ok
            && run
                .stderr
                .contains("no amd64 .deb file of dovecot-imapd, dovecot-lmtpd")
            && run.stderr.contains(incomplete.path().to_str().unwrap()),
        "{}",
        run.all()
    );
    let broken = tempfile::tempdir().unwrap();
    std::fs::write(broken.path().join("dovecot-core.deb"), b"").unwrap();
    let run = install(broken.path());
    assert!(
        !run.ok
            && run
                .stderr
                .contains("dovecot-core.deb is not a readable .deb file"),
        "{}",
        run.all()
    );
    assert_eq!(snapshot(Path::new(&root)), before, "nothing installed");
}

#[test]
fn run_and_status_go_to_the_mail_domain_over_ssh_and_say_when_it_cannot_be_reached() {
    let configs = tempfile::tempdir().unwrap();
    let config = config_file(configs.path(), "mail_domain = 127.0.0.1\n");
    let config = config.to_str().unwrap();
    // Nothing listens on port 9 here: ssh itself fails.
    let env = [("CMDEPLOY_SSH", "-p 9 -o ConnectTimeout=5")];
    for command in ["run", "status"] {
        let run = cmdeploy(&[command, "--config", config], &env);
        assert!(!run.ok, "{command}");
        assert!(
            run.stderr.contains("error: ssh root@127.0.0.1 failed:"),
            "{command}: {}",
            run.stderr
        );
    }
    let nowhere = cmdeploy(
        &["run", "--phase", "install", "--config", "/nonexistent"],
        &[],
    );
    assert!(
        nowhere
            .stderr
            .contains("no relay to act on: give --ssh-host HOST"),
        "{}",
        nowhere.stderr
    );
}

#[test]
fn test_fails_every_check_it_cannot_make_and_refuses_unknown_check_names() {
    let configs = tempfile::tempdir().unwrap();
    // An IPv4 relay on this machine, where no mail server listens.
    let config = config_file(configs.path(), "mail_domain = 127.0.0.1\n");
    let config = config.to_str().unwrap();
    let run = cmdeploy(&["test", "--config", config, "--skip", "turn"], &[]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    let verdict = |check: &str| {
        run.stdout
            .lines()
            .find(|line| line.split_whitespace().nth(1) == Some(check))
            .and_then(|line| line.split_whitespace().next())
            .unwrap_or_else(|| panic!("no line for {check}:\n{}", run.stdout))
    };
    assert_eq!(verdict("login"), "FAIL");
    assert!(
        run.stdout.contains("connecting to 127.0.0.1:993"),
        "{}",
        run.stdout
    );
    assert_eq!(verdict("turn"), "skip", "--skip");
    // IPv4 relays: no DKIM, no DNS records, a self-signed certificate.
    for skipped in ["unsigned-mail-refused", "dns", "tls-certificate"] {
        assert_eq!(verdict(skipped), "skip", "{skipped}");
    }
    assert!(
        run.stdout
            .contains("16 checks: 0 ok, 12 failed, 4 skipped (failed: login, wrong-password,"),
        "{}",
        run.stdout
    );

    let unknown = cmdeploy(&["test", "--config", config, "--skip", "nonsense"], &[]);
    assert_eq!(unknown.code, Some(1));
    assert!(
        unknown
            .stderr
            .contains("--skip \"nonsense\": no such check (checks: login, wrong-password,"),
        "{}",
        unknown.stderr
    );
}

/// `cmdeploy compose` for fixture configs, compared with the reviewed copies in
/// `tests/snapshots/compose/` (same `UPDATE_SNAPSHOTS=1` switch).
#[test]
fn compose_files_match_the_reviewed_snapshots() {
    let update = std::env::var("UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1");
    let snapshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/compose");
    std::fs::create_dir_all(&snapshots).unwrap();
    let fixtures = [
        ("underscore-domain.yml", "mail_domain = _chat.example.org\n"),
        ("ipv4-relay.yml", "mail_domain = 10.0.0.5\n"),
        (
            "acme-with-metrics.yml",
            "mail_domain = chat.example.org\nmtail_address = 127.0.0.1\n",
        ),
    ];
    for (name, body) in fixtures {
        let dir = tempfile::tempdir().unwrap();
        let ini = config_file(dir.path(), body);
        let run = cmdeploy(&["compose", "--config", ini.to_str().unwrap()], &[]);
        assert!(run.ok, "{}", run.all());
        let again = cmdeploy(&["compose", "--config", ini.to_str().unwrap()], &[]);
        assert_eq!(run.stdout, again.stdout, "the output is deterministic");
        let path = snapshots.join(name);
        if update {
            std::fs::write(&path, &run.stdout).unwrap();
        }
        let reviewed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            reviewed == run.stdout,
            "{name} differs from its snapshot\nrun UPDATE_SNAPSHOTS=1 cargo test -p cmdeploy --test snapshots and review the diff"
        );
    }
}

#[test]
fn website_only_deploys_the_website_alone() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), "mail_domain = _chat.example.org\n");
    let (_target, root) = untouched_target();
    let run = cmdeploy(
        &[
            "run",
            "--root",
            &root,
            "--website-only",
            "--phase",
            "configure",
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    );
    assert!(run.ok, "{}", run.all());
    let summary: Vec<&str> = run
        .stdout
        .lines()
        .filter(|line| line.starts_with("  ") && line.contains("change"))
        .collect();
    assert_eq!(summary, ["  website  6 change(s)"], "{}", run.stdout);
    assert!(Path::new(&root).join("var/www/html/index.html").exists());
    assert!(
        run.stderr.contains("Website deployment completed."),
        "{}",
        run.stderr
    );
    let both = cmdeploy(&["run", "--website-only", "--only", "postfix"], &[]);
    assert!(
        !both.ok && both.stderr.contains("cannot be used with"),
        "{}",
        both.stderr
    );
}
