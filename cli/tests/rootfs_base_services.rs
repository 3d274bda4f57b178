//! The slow rung for unbound, journald, version and the legacy cleanup: leftovers of older releases
//! (packages from the mirror, files, an apt source line, a resolv.conf symlink) are seeded into a
//! fresh Debian 12 rootfs, `cmdeploy run` removes them, `unbound-checkconf` accepts the result, and
//! a re-run changes nothing. Then on a booted host (systemd-nspawn): unbound answers, systemd-
//! resolved is masked, and a re-run restarts nothing. Needs root, the cached rootfs, systemd-
//! nspawn; ignored unless run with `--include-ignored`.

#![allow(clippy::unwrap_used)] // a test fails by panicking

mod support;

use support::*;
use xtask::host::Host;

const NORMAL: &str = "mail_domain = chat.example.org\n";
const OBS_SOURCE: &str = "deb [signed-by=/etc/apt/keyrings/obs-home-deltachat.gpg] \
     https://download.opensuse.org/repositories/home:/deltachat/Debian_12/ ./";

/// Files and directories older releases left, each created with some content.
const LEFTOVER_FILES: &[&str] = &[
    "/etc/cron.d/expunge",
    "/etc/cron.d/chatmail-metrics",
    "/var/www/html/metrics",
    "/etc/apt/keyrings/obs-home-deltachat.gpg",
    "/var/log/journal/0123456789abcdef/system.journal",
    "/etc/mta-sts-daemon.yml",
    "/usr/local/lib/postfix-mta-sts-resolver/bin/mta-sts-daemon",
    "/etc/systemd/system/mta-sts-daemon.service",
];

fn chroot_ok(root: &Root, argv: &[&str]) -> String {
    let output = root.chroot(argv);
    assert!(
        output.status.success(),
        "{}: {}",
        argv.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// dpkg's state of `package` in the root (`installed`, `config-files`, `not-installed`).
fn package_state(root: &Root, package: &str) -> String {
    let output = root.chroot(&["dpkg-query", "-W", "-f=${db:Status-Status}", package]);
    let state = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if state.is_empty() {
        "not-installed".to_owned()
    } else {
        state
    }
}

/// A fresh rootfs with what an old upstream relay left behind.
fn root_with_leftovers() -> Root {
    let root = fresh_root("base-services");
    chroot_ok(&root, &["apt-get", "update", "-q"]);
    let install = [
        "apt-get",
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "unbound-anchor",
        "resolvconf",
    ];
    chroot_ok(&root, &install);
    for path in LEFTOVER_FILES {
        let full = root.path.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(&full, "left by an older release\n").unwrap();
    }
    // Added after the package lists were fetched: cmdeploy must drop it before apt runs.
    let sources = root.path.join("etc/apt/sources.list");
    let mut text = std::fs::read_to_string(&sources).unwrap();
    text.push_str(OBS_SOURCE);
    text.push('\n');
    std::fs::write(&sources, text).unwrap();
    // resolv.conf managed elsewhere, as resolvconf or systemd-resolved do it; the target of
    // the link still resolves so that the install phase can download.
    let resolv = root.path.join("etc/resolv.conf");
    let host_resolv = std::fs::read("/etc/resolv.conf").unwrap();
    std::fs::write(root.path.join("etc/resolv.conf.upstream"), host_resolv).unwrap();
    let _ = std::fs::remove_file(&resolv);
    std::os::unix::fs::symlink("resolv.conf.upstream", &resolv).unwrap();
    root
}

#[test]
#[ignore = "slow: root, a Debian 12 rootfs and a booted host"]
fn leftovers_are_cleaned_unbound_validates_and_a_rerun_changes_nothing() {
    let root = root_with_leftovers();
    assert_eq!(package_state(&root, "unbound-anchor"), "installed");
    assert_eq!(package_state(&root, "resolvconf"), "installed");
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), NORMAL);

    let first = root_deploy(&root, &config, &[]);
    for line in [
        "legacy: remove a line from /etc/apt/sources.list",
        "legacy: remove packages unbound-anchor",
        "unbound: purge packages resolvconf",
        "legacy: remove /var/log/journal",
        "journald: create /etc/systemd/journald.conf.d/chatmail.conf",
        "unbound: create /etc/unbound/unbound.conf.d/chatmail.conf",
        "unbound: update /etc/resolv.conf",
        "version: create /etc/chatmail-version",
    ] {
        assert!(first.stdout.contains(line), "{line:?} missing");
    }

    // Packages: the old ones gone, the resolver's installed.
    assert_ne!(package_state(&root, "unbound-anchor"), "installed");
    assert_eq!(
        package_state(&root, "resolvconf"),
        "not-installed",
        "purged"
    );
    for package in ["unbound", "dns-root-data", "dnsutils"] {
        assert_eq!(package_state(&root, package), "installed", "{package}");
    }
    // Files: the leftovers gone, the rest of sources.list kept.
    for path in LEFTOVER_FILES {
        let full = root.path.join(path.trim_start_matches('/'));
        assert!(!full.exists(), "{path} is still there");
    }
    assert!(!root.path.join("var/log/journal").exists());
    assert!(
        !root
            .path
            .join("usr/local/lib/postfix-mta-sts-resolver")
            .exists()
    );
    let sources = String::from_utf8(root.read("/etc/apt/sources.list")).unwrap();
    assert_eq!(sources, "deb http://deb.debian.org/debian bookworm main\n");

    // The resolver's configuration, accepted by unbound itself.
    assert!(root.path.join("var/lib/unbound/root.key").is_file());
    let checked = chroot_ok(&root, &["unbound-checkconf"]);
    assert!(checked.contains("no errors"), "{checked}");
    let resolv = root.path.join("etc/resolv.conf");
    assert!(
        std::fs::symlink_metadata(&resolv).unwrap().is_file(),
        "the symlink is replaced by a file"
    );
    let resolv = String::from_utf8(root.read("/etc/resolv.conf")).unwrap();
    assert!(
        resolv.ends_with("nameserver 127.0.0.1\nnameserver 9.9.9.9\n"),
        "{resolv}"
    );
    let journald = String::from_utf8(root.read("/etc/systemd/journald.conf.d/chatmail.conf"));
    let journald = journald.unwrap();
    assert!(journald.contains("[Journal]\nStorage=volatile\nMaxRetentionSec=3d\n"));
    let version = String::from_utf8(root.read("/etc/chatmail-version")).unwrap();
    assert_eq!(
        version,
        format!(
            "{}\ncmdeploy {}\n",
            chatmail_version::SOURCE_REVISION,
            env!("CARGO_PKG_VERSION")
        )
    );
    let owed = String::from_utf8(root.read("/var/lib/cmdeploy/pending-restarts")).unwrap();
    assert!(
        owed.contains("component unbound\n") && owed.contains("component journald\n"),
        "{owed}"
    );
    assert!(
        !owed.contains("version"),
        "the version file restarts nothing"
    );

    // The identical re-run: no change, no command (no validator, no apt, no restart owed).
    let again = root_deploy(&root, &config, &["-v"]);
    assert!(
        again.stdout.contains("nothing to change"),
        "{}",
        again.stdout
    );
    assert!(!again.all().contains("[$"), "a no-op run runs no command");

    // IPv6 off: one file changes, unbound-checkconf runs and accepts it; resolv.conf stays.
    let config = config_file(dir.path(), &format!("{NORMAL}disable_ipv6 = true\n"));
    let ipv4 = root_deploy(&root, &config, &["-v"]);
    assert!(
        ipv4.stdout
            .contains("unbound: update /etc/unbound/unbound.conf.d/chatmail.conf")
    );
    assert!(
        ipv4.all().contains(
            "[$ unbound-checkconf /var/lib/cmdeploy/stage/etc/unbound/unbound.conf.d/chatmail.conf]"
        ),
        "validated on the staged copy"
    );
    assert!(!ipv4.stdout.contains("/etc/resolv.conf"));
    let conf = String::from_utf8(root.read("/etc/unbound/unbound.conf.d/chatmail.conf")).unwrap();
    assert!(conf.contains("interface: 127.0.0.1\n") && conf.contains("do-ip6: no\n"));
}

/// When `unit` last became active: a restart changes it.
fn started_at(host: &Host, unit: &str) -> String {
    let property = "--property=ActiveEnterTimestampMonotonic";
    let stamp = host
        .exec_ok(&["systemctl", "show", property, "--value", unit])
        .unwrap();
    assert_ne!(stamp.trim(), "0", "{unit} never became active");
    stamp.trim().to_owned()
}

#[test]
#[ignore = "slow: root, a Debian 12 rootfs and a booted host"]
fn on_a_booted_host_unbound_answers_and_a_rerun_restarts_nothing() {
    let (_root, host) = relay_host("cm-unbound", 42, "mail_domain = _chat.example.org\n");

    let first = host_deploy(&host, &[]);
    for line in [
        "journald: restart systemd-journald.service",
        "unbound: mask systemd-resolved.service",
        "unbound: disable unbound-resolvconf.service",
    ] {
        assert!(first.contains(line), "{line:?} missing");
    }
    // Debian enabled unbound, so booting started it unconfigured: the new settings restart it.
    assert!(first.contains("unbound: restart unbound.service"));
    assert!(
        !first.contains("/etc/resolv.conf"),
        "a container's resolv.conf belongs to its engine"
    );
    let show = |property: &str, unit: &str| {
        host.exec_ok(&["systemctl", "show", property, "--value", unit])
            .unwrap()
    };
    assert_eq!(
        show("--property=ActiveState", "unbound.service"),
        "active\n"
    );
    assert_eq!(
        show("--property=UnitFileState", "systemd-resolved.service"),
        "masked\n"
    );
    // unbound serves its built-in localhost zone (no network needed).
    let answer = host
        .exec_ok(&[
            "dig",
            "+short",
            "+time=2",
            "+tries=3",
            "@127.0.0.1",
            "localhost",
        ])
        .unwrap();
    assert_eq!(answer, "127.0.0.1\n");
    let journald = host
        .exec_ok(&["systemd-analyze", "cat-config", "systemd/journald.conf"])
        .unwrap();
    assert!(journald.contains("Storage=volatile"), "{journald}");
    let unbound = started_at(&host, "unbound.service");
    let journal = started_at(&host, "systemd-journald.service");

    let again = host_deploy(&host, &[]);
    assert!(again.contains("nothing to change"), "{again}");
    assert_eq!(
        started_at(&host, "unbound.service"),
        unbound,
        "not restarted"
    );
    assert_eq!(started_at(&host, "systemd-journald.service"), journal);
}
