//! The slow rung: `cmdeploy run` into real Debian 12 rootfs copies, checked by the real programs
//! (`postconf`, `postfix check`, `doveconf`, `opendkim`). Needs root, the cached rootfs (`cargo
//! xtask rootfs`); ignored unless run with `--include-ignored`.

#![allow(clippy::unwrap_used)] // a test fails by panicking

mod support;

use std::os::unix::fs::MetadataExt as _;
use support::*;

const NORMAL: &str = "mail_domain = chat.example.org\n";
const UNDERSCORE: &str = "mail_domain = _chat.example.org\nmtail_address = 127.0.0.1\n";
const IPV4: &str =
    "mail_domain = 10.77.0.2\ndisable_ipv6 = true\nimap_compress = true\nimap_rawlog = true\n";

/// The real programs accept what was written.
fn assert_configs_valid(root: &Root, with_dkim: bool) {
    let postconf = root.chroot(&["postconf"]);
    assert!(postconf.status.success());
    assert_eq!(
        String::from_utf8_lossy(&postconf.stderr),
        "",
        "postconf warns"
    );
    let check = root.chroot(&["postfix", "check"]);
    assert!(
        check.status.success(),
        "postfix check: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let doveconf = root.chroot(&["doveconf", "-n"]);
    assert!(
        doveconf.status.success(),
        "doveconf: {}",
        String::from_utf8_lossy(&doveconf.stderr)
    );
    let opendkim = root.chroot(&["opendkim", "-n", "-x", "/etc/opendkim.conf"]);
    assert!(
        opendkim.status.success(),
        "opendkim: {}",
        String::from_utf8_lossy(&opendkim.stderr)
    );
    let main_cf = String::from_utf8(root.read("/etc/postfix/main.cf")).unwrap();
    assert_eq!(
        main_cf.contains("non_smtpd_milters = unix:opendkim/opendkim.sock"),
        with_dkim
    );
}

#[test]
#[ignore = "slow: root, a Debian 12 rootfs"]
fn dry_run_on_a_fresh_root_changes_nothing_and_shows_the_plan() {
    let root = fresh_root("dry-run");
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), NORMAL);
    let before = snapshot(&root.path);
    let run = root_deploy(&root, &config, &["--dry-run"]);
    assert!(run.ok);
    assert!(
        run.stdout
            .contains("postfix: would install packages postfix"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("+++ /etc/postfix/main.cf (planned)"));
    assert!(run.stdout.contains("+myhostname = chat.example.org"));
    assert!(
        run.stdout
            .contains("opendkim: would generate /etc/dkimkeys/opendkim.private")
    );
    assert!(run.stdout.contains("dry run:"));
    assert!(snapshot(&root.path) == before, "a dry run changed the tree");
}

#[test]
#[ignore = "slow: root, a Debian 12 rootfs"]
fn normal_domain_deploys_validates_and_reruns_as_a_no_op() {
    let root = installed_root("normal");
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), NORMAL);
    let first = root_deploy(&root, &config, &[]);
    assert!(first.ok);
    assert!(
        first
            .stdout
            .contains("postfix: update /etc/postfix/main.cf")
    );
    assert!(
        !first.all().contains("postmap"),
        "regexp tables need no postmap"
    );
    assert_configs_valid(&root, true);
    // main.cf is written settled: Postfix reads it at once, where it waits up to 2.4 s for a
    // main.cf changed in the last two seconds (`-v -v` says when it pauses).
    let verbose = root.chroot(&["postconf", "-v", "-v", "-h", "myhostname"]);
    let said = String::from_utf8_lossy(&verbose.stderr);
    assert!(verbose.status.success(), "{said}");
    assert!(!said.contains("cool down"), "postconf waited:\n{said}");
    let key = root.read("/etc/dkimkeys/opendkim.private");
    let cert = root.read("/var/lib/chatmail-tls/live/chat.example.org/fullchain");
    // Without systemd nothing is started: what the first run owes stays on disk.
    let owed = String::from_utf8(root.read("/var/lib/cmdeploy/pending-restarts")).unwrap();
    for entry in [
        "daemon-reload",
        "component dovecot",
        "component opendkim",
        "component postfix",
    ] {
        assert!(
            owed.lines().any(|line| line == entry),
            "{entry} not owed: {owed}"
        );
    }

    let again = root_deploy(&root, &config, &["-v"]);
    assert!(again.ok);
    assert!(
        again.stdout.contains("nothing to change"),
        "{}",
        again.stdout
    );
    assert!(!again.all().contains("apt-get"), "a no-op run calls no apt");
    assert!(
        !again.all().contains("[$"),
        "a no-op run runs no command at all"
    );
    assert_eq!(
        root.read("/etc/dkimkeys/opendkim.private"),
        key,
        "the DKIM key survives"
    );
    assert_eq!(
        root.read("/var/lib/chatmail-tls/live/chat.example.org/fullchain"),
        cert
    );

    // One setting changes one line of one file.
    let config = config_file(dir.path(), &format!("{NORMAL}max_message_size = 1000000\n"));
    let changed = root_deploy(&root, &config, &[]);
    assert!(changed.ok);
    assert!(
        changed
            .stdout
            .contains("postfix: update /etc/postfix/main.cf")
    );
    assert!(
        changed
            .stdout
            .contains("dovecot: update /etc/dovecot/dovecot.conf")
    );
    assert!(!changed.stdout.contains("opendkim:"), "{}", changed.stdout);
    assert_eq!(root.read("/etc/dkimkeys/opendkim.private"), key);

    // What an interrupted key generation leaves is repaired; a valid key is never replaced.
    let private = root.path.join("etc/dkimkeys/opendkim.private");
    let public = root.path.join("etc/dkimkeys/opendkim.txt");
    // Killed after the generator, before the owner was set.
    std::os::unix::fs::chown(&private, Some(0), Some(0)).unwrap();
    std::os::unix::fs::chown(&public, Some(0), Some(0)).unwrap();
    let repaired = root_deploy(&root, &config, &[]);
    assert!(repaired.ok, "{}", repaired.all());
    assert!(
        repaired.stdout.contains(
            "opendkim: repair the owner of /etc/dkimkeys/opendkim.private, \
             /etc/dkimkeys/opendkim.txt (opendkim:opendkim)"
        ),
        "{}",
        repaired.stdout
    );
    assert_ne!(std::fs::metadata(&private).unwrap().uid(), 0);
    assert_eq!(root.read("/etc/dkimkeys/opendkim.private"), key);
    // The public half lost: the key stays, with a warning.
    std::fs::remove_file(&public).unwrap();
    let partial = root_deploy(&root, &config, &[]);
    assert!(partial.ok, "{}", partial.all());
    assert!(
        partial.stderr.contains(
            "/etc/dkimkeys/opendkim.txt is missing but /etc/dkimkeys/opendkim.private exists"
        ),
        "{}",
        partial.stderr
    );
    assert_eq!(root.read("/etc/dkimkeys/opendkim.private"), key);
    // Interrupted while writing the key: an empty file, and no public half.
    std::fs::write(&private, "").unwrap();
    std::os::unix::fs::chown(&private, Some(0), Some(0)).unwrap();
    let regenerated = root_deploy(&root, &config, &[]);
    assert!(regenerated.ok, "{}", regenerated.all());
    assert!(
        regenerated.stdout.contains(
            "opendkim: generate /etc/dkimkeys/opendkim.private again, an interrupted run left it empty"
        ),
        "{}",
        regenerated.stdout
    );
    let new_key = root.read("/etc/dkimkeys/opendkim.private");
    assert!(String::from_utf8_lossy(&new_key).contains("PRIVATE KEY"));
    assert_ne!(std::fs::metadata(&private).unwrap().uid(), 0);
    assert!(public.exists());
    let settled = root_deploy(&root, &config, &[]);
    assert!(
        settled.stdout.contains("nothing to change"),
        "{}",
        settled.stdout
    );
}

#[test]
#[ignore = "slow: root, a Debian 12 rootfs"]
fn underscore_domain_gets_a_self_signed_certificate_made_once() {
    let root = installed_root("underscore");
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), UNDERSCORE);
    assert!(root_deploy(&root, &config, &[]).ok);
    assert_configs_valid(&root, true);
    let cert = root.read("/etc/ssl/certs/mailserver.pem");
    let text = root.chroot(&[
        "openssl",
        "x509",
        "-in",
        "/etc/ssl/certs/mailserver.pem",
        "-noout",
        "-text",
    ]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(
            "DNS:_chat.example.org, DNS:www._chat.example.org, DNS:mta-sts._chat.example.org"
        ),
        "{text}"
    );
    assert!(
        text.contains("prime256v1") || text.contains("P-256"),
        "{text}"
    );
    let rerun = root_deploy(&root, &config, &[]);
    assert!(rerun.stdout.contains("nothing to change"));
    assert_eq!(
        root.read("/etc/ssl/certs/mailserver.pem"),
        cert,
        "never regenerated"
    );
}

#[test]
#[ignore = "slow: root, a Debian 12 rootfs"]
fn ipv4_relay_has_no_dkim_and_bracketed_addresses() {
    let root = installed_root("ipv4");
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), IPV4);
    let run = root_deploy(&root, &config, &[]);
    assert!(run.ok);
    assert!(
        !run.stdout.contains("opendkim:"),
        "opendkim is not used: {}",
        run.stdout
    );
    assert_configs_valid(&root, false);
    let main_cf = String::from_utf8(root.read("/etc/postfix/main.cf")).unwrap();
    assert!(main_cf.contains("mydestination = [10.77.0.2]\n"));
    assert!(main_cf.contains("myhostname = 2.0.77.10.in-addr.arpa\n"));
    assert!(root.path.join("home/vmail/mail/10.77.0.2").is_dir());
    assert!(!root.path.join("home/vmail/mail/[10.77.0.2]").exists());
}

/// Runs `argv` in the root; fails the test unless it succeeds; returns its output.
fn chroot_ok(root: &Root, argv: &[&str]) -> String {
    let output = root.chroot(argv);
    assert!(
        output.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
#[ignore = "slow: root, a Debian 12 rootfs"]
fn ipv4_mailboxes_an_earlier_release_kept_bracketed_are_moved_once() {
    const OLD: &str = "/home/vmail/mail/[10.77.0.2]";
    const NEW: &str = "/home/vmail/mail/10.77.0.2";
    let root = installed_root("ipv4-move");
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), IPV4);
    let inside = |path: &str| root.path.join(path.trim_start_matches('/'));

    // An account as an earlier release of this tool left it: password hash and a message.
    let mailbox = format!("{OLD}/alice@[10.77.0.2]");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(inside(&format!("{mailbox}/{sub}"))).unwrap();
    }
    let hash = chroot_ok(&root, &["openssl", "passwd", "-6", "kept-password-1"]);
    let password = format!("{{SHA512-CRYPT}}{}", hash.trim());
    std::fs::write(inside(&format!("{mailbox}/password")), &password).unwrap();
    std::fs::write(
        inside(&format!("{mailbox}/new/1700000000.M1P1.relay")),
        "From: bob@[10.77.0.3]\nTo: alice@[10.77.0.2]\nSubject: kept\n\nencrypted\n",
    )
    .unwrap();
    chroot_ok(&root, &["chown", "-R", "vmail:vmail", "/home/vmail/mail"]);
    chroot_ok(&root, &["chmod", "0700", OLD]);
    let accounts = snapshot(&inside(OLD));

    // The dry run shows the move, and no directory to create in its place.
    let before = snapshot(&root.path);
    let dry = root_deploy(&root, &config, &["--dry-run"]);
    assert!(dry.ok, "{}", dry.all());
    let line = format!("legacy: would move {OLD} to {NEW}\n");
    assert!(dry.stdout.contains(&line), "{}", dry.stdout);
    assert!(
        dry.stdout.contains(&format!(
            "would move (where an earlier release kept it):\n  {OLD} -> {NEW}  (legacy)\n"
        )),
        "{}",
        dry.stdout
    );
    assert!(!dry.stdout.contains(&format!("create directory {NEW}")));
    assert!(snapshot(&root.path) == before, "a dry run changed the tree");

    // The run moves it: same owners, modes, password and mail; the relay's programs find it.
    let run = root_deploy(&root, &config, &[]);
    assert!(run.ok, "{}", run.all());
    assert!(
        run.stdout
            .contains(&format!("legacy: move {OLD} to {NEW}\n")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!(
            "moved (where an earlier release kept it):\n  {OLD} -> {NEW}  (legacy)\n"
        )),
        "{}",
        run.stdout
    );
    assert!(!inside(OLD).exists());
    assert!(
        snapshot(&inside(NEW)) == accounts,
        "the accounts are kept as they were"
    );
    let meta = std::fs::metadata(inside(NEW)).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o700);
    let vmail = chroot_ok(&root, &["id", "-u", "vmail"]);
    assert_eq!(meta.uid().to_string(), vmail.trim());
    assert_eq!(
        std::fs::read_to_string(inside(&format!("{NEW}/alice@[10.77.0.2]/password"))).unwrap(),
        password
    );
    let dovecot = String::from_utf8(root.read("/etc/dovecot/dovecot.conf")).unwrap();
    assert!(
        dovecot.contains(&format!("mail_location = maildir:{NEW}/%u\n")),
        "{dovecot}"
    );
    assert_configs_valid(&root, false);
    let report = chroot_ok(
        &root,
        &["chatmail-fsreport", "/usr/local/lib/chatmaild/chatmail.ini"],
    );
    assert!(report.starts_with("accounts: 1 "), "{report}");

    // Once: the re-run changes nothing.
    let again = root_deploy(&root, &config, &[]);
    assert!(
        again.ok && again.stdout.contains("nothing to change"),
        "{}",
        again.all()
    );

    // Both there (an older copy came back): refused before anything changes, naming both.
    std::fs::create_dir(inside(OLD)).unwrap();
    let config = config_file(dir.path(), &format!("{IPV4}max_message_size = 1000000\n"));
    let before = snapshot(&root.path);
    let refused = root_deploy(&root, &config, &[]);
    assert!(!refused.ok);
    assert!(
        refused.stderr.contains(&format!(
            "legacy: both {OLD} (where an earlier release kept it) and {NEW}"
        )),
        "{}",
        refused.all()
    );
    assert!(
        snapshot(&root.path) == before,
        "a refused run changed the tree"
    );
}

#[test]
#[ignore = "slow: root, a Debian 12 rootfs"]
fn a_failed_validation_changes_no_live_file_and_owes_nothing() {
    let root = installed_root("rollback");
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), UNDERSCORE);
    assert!(root_deploy(&root, &config, &[]).ok);
    let live = ["/etc/postfix/main.cf", "/etc/postfix/master.cf"];
    let state = |path: &str| {
        let meta = std::fs::metadata(root.path.join(&path[1..])).unwrap();
        (root.read(path), meta.mtime(), meta.mtime_nsec(), meta.ino())
    };
    let before: Vec<_> = live.iter().map(|path| state(path)).collect();
    let owed = root.read("/var/lib/cmdeploy/pending-restarts");

    // An operator override with a misspelt setting: postconf warns, the run must fail.
    let overrides = dir.path().join("templates");
    std::fs::create_dir_all(overrides.join("postfix")).unwrap();
    let builtin = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../templates/postfix/main.cf.j2"
    ))
    .unwrap();
    std::fs::write(
        overrides.join("postfix/main.cf.j2"),
        format!("{builtin}smtpd_tls_secrity_level = encrypt\n"),
    )
    .unwrap();
    let config = config_file(
        dir.path(),
        &format!("{UNDERSCORE}max_smtp_connections = 500\n"),
    );
    let run = root_deploy(
        &root,
        &config,
        &["--templates", overrides.to_str().unwrap()],
    );
    assert!(!run.ok);
    assert!(
        run.stderr
            .contains("validation failed: `postconf -n -c /etc/postfix`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("smtpd_tls_secrity_level"),
        "the validator's output is shown"
    );
    assert!(run.stderr.contains("nothing was changed"), "{}", run.stderr);
    let after: Vec<_> = live.iter().map(|path| state(path)).collect();
    assert!(after == before, "a live file was touched");
    assert_eq!(
        root.read("/var/lib/cmdeploy/pending-restarts"),
        owed,
        "a failed validation owes nothing"
    );
    assert!(
        !root.path.join("var/lib/cmdeploy/stage").exists(),
        "the staged copies are gone"
    );
}

#[test]
#[ignore = "slow: root, a Debian 12 rootfs"]
fn a_syntax_error_in_an_override_fails_before_the_target_is_touched() {
    let root = installed_root("broken-override");
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), UNDERSCORE);
    let overrides = dir.path().join("templates");
    std::fs::create_dir_all(overrides.join("dovecot")).unwrap();
    let broken = overrides.join("dovecot/dovecot.conf.j2");
    std::fs::write(&broken, "protocols = imap\n{% if config.disable_ipv6 %\n").unwrap();
    let before = snapshot(&root.path);
    let run = root_deploy(
        &root,
        &config,
        &["--templates", overrides.to_str().unwrap()],
    );
    assert!(!run.ok);
    assert!(
        run.stderr
            .contains(&format!("{}: line 2: syntax error", broken.display())),
        "{}",
        run.stderr
    );
    assert!(
        snapshot(&root.path) == before,
        "nothing on the target changed"
    );
}
