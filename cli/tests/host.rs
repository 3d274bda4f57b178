//! Activation on a booted Debian 12 host (systemd-nspawn): services start, a re-run restarts
//! nothing, and restarts owed by `--phase configure` are done by a later `--phase activate`.
//! Slow: needs root, systemd-nspawn and CHATMAIL_SLOW_TESTS=1.

#![allow(clippy::unwrap_used)] // a test fails by panicking

mod support;

use std::collections::BTreeMap;

use support::*;
use xtask::host::Host;

/// Where the deploy bundle (cmdeploy and the relay's programs) goes in the host.
const BUNDLE: &str = "/usr/local/lib/cmdeploy";

const UNITS: [&str; 3] = ["dovecot.service", "postfix.service", "opendkim.service"];

/// A bootable rootfs with the install phase done (in a chroot, where the mirror is reachable).
fn installed_bootable_root(name: &str) -> Root {
    let root = fresh_root_from(&xtask::rootfs::ensure_bootable().unwrap(), name);
    let run = cmdeploy(&["run", "--phase", "install", "--root", root.str()], &[]);
    assert!(run.ok);
    let bundle = root.path.join(BUNDLE.trim_start_matches('/'));
    xtask::bundle::copy(
        std::path::Path::new(env!("CARGO_BIN_EXE_cmdeploy")),
        &bundle,
    )
    .unwrap();
    root
}

fn set_config(root: &Root, body: &str) {
    std::fs::write(
        root.path.join("root/chatmail.ini"),
        format!("[params]\n{body}"),
    )
    .unwrap();
}

fn deploy(host: &Host, extra: &[&str]) -> String {
    let cmdeploy = format!("{BUNDLE}/cmdeploy");
    let mut argv = vec![cmdeploy.as_str(), "run", "--config", "/root/chatmail.ini"];
    argv.extend(extra);
    let output = host.exec(&argv).unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("$ {}\n{text}", argv.join(" "));
    assert!(output.status.success(), "cmdeploy failed in the host");
    text
}

/// When each unit last became active: a restart changes it.
fn start_stamps(host: &Host) -> BTreeMap<&'static str, String> {
    UNITS
        .iter()
        .map(|unit| {
            let property = "--property=ActiveEnterTimestampMonotonic";
            let stamp = host
                .exec_ok(&["systemctl", "show", property, "--value", unit])
                .unwrap();
            assert_ne!(stamp.trim(), "0", "{unit} never became active");
            (*unit, stamp.trim().to_owned())
        })
        .collect()
}

#[test]
fn activation_starts_services_restarts_only_what_changed_and_survives_split_phases() {
    if !slow_tests_enabled() {
        return;
    }
    let root = installed_bootable_root("host-activate");
    let domain = "mail_domain = _chat.example.org\n";
    set_config(&root, domain);
    let host = Host::boot(&root.path, "cm-activate", 41).unwrap();

    deploy(&host, &[]);
    let active = host
        .exec(&["systemctl", "is-active", UNITS[0], UNITS[1], UNITS[2]])
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&active.stdout),
        "active\nactive\nactive\n"
    );
    let started = start_stamps(&host);

    let again = deploy(&host, &[]);
    assert!(again.contains("nothing to change"), "{again}");
    assert_eq!(
        start_stamps(&host),
        started,
        "an identical re-run restarts nothing"
    );

    // Configure now, activate later: the restarts are owed on disk in between.
    set_config(&root, &format!("{domain}max_message_size = 1000000\n"));
    let configured = deploy(&host, &["--phase", "configure"]);
    assert!(configured.contains("postfix: update /etc/postfix/main.cf"));
    let owed = host
        .exec_ok(&["cat", "/var/lib/cmdeploy/pending-restarts"])
        .unwrap();
    assert!(
        owed.contains("component postfix") && owed.contains("component dovecot"),
        "{owed}"
    );
    assert_eq!(start_stamps(&host), started, "configure restarts nothing");
    let activated = deploy(&host, &["--phase", "activate"]);
    assert!(
        activated.contains("postfix: restart postfix.service"),
        "{activated}"
    );
    assert!(
        activated.contains("dovecot: restart dovecot.service"),
        "{activated}"
    );
    let now = start_stamps(&host);
    assert_ne!(now["postfix.service"], started["postfix.service"]);
    assert_ne!(now["dovecot.service"], started["dovecot.service"]);
    assert_eq!(
        now["opendkim.service"], started["opendkim.service"],
        "opendkim's inputs did not change"
    );
    assert!(
        host.exec(&["test", "-e", "/var/lib/cmdeploy/pending-restarts"])
            .unwrap()
            .status
            .code()
            == Some(1)
    );

    // --only postfix touches postfix alone.
    set_config(
        &root,
        &format!("{domain}max_message_size = 1000000\nmax_smtp_connections = 500\n"),
    );
    let only = deploy(&host, &["--only", "postfix"]);
    assert!(
        only.contains("postfix: update /etc/postfix/master.cf"),
        "{only}"
    );
    assert!(
        !only.contains("dovecot:") && !only.contains("opendkim:"),
        "{only}"
    );
    let after = start_stamps(&host);
    assert_ne!(after["postfix.service"], now["postfix.service"]);
    assert_eq!(after["dovecot.service"], now["dovecot.service"]);
}
