//! Activation on a booted Debian 12 host (systemd-nspawn): services start, a re-run restarts
//! nothing, and restarts owed by `--phase configure` are done by a later `--phase activate`.
//! Slow: needs root, systemd-nspawn and CHATMAIL_SLOW_TESTS=1.

#![allow(clippy::unwrap_used)] // a test fails by panicking

mod support;

use std::collections::BTreeMap;

use support::*;
use xtask::host::Host;

const UNITS: [&str; 3] = ["dovecot.service", "postfix.service", "opendkim.service"];

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

    host_deploy(&host, &[]);
    let active = host
        .exec(&["systemctl", "is-active", UNITS[0], UNITS[1], UNITS[2]])
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&active.stdout),
        "active\nactive\nactive\n"
    );
    let started = start_stamps(&host);

    let again = host_deploy(&host, &[]);
    assert!(again.contains("nothing to change"), "{again}");
    assert_eq!(
        start_stamps(&host),
        started,
        "an identical re-run restarts nothing"
    );

    // Configure now, activate later: the restarts are owed on disk in between.
    set_config(&root, &format!("{domain}max_message_size = 1000000\n"));
    let configured = host_deploy(&host, &["--phase", "configure"]);
    assert!(configured.contains("postfix: update /etc/postfix/main.cf"));
    let owed = host
        .exec_ok(&["cat", "/var/lib/cmdeploy/pending-restarts"])
        .unwrap();
    assert!(
        owed.contains("component postfix") && owed.contains("component dovecot"),
        "{owed}"
    );
    assert_eq!(start_stamps(&host), started, "configure restarts nothing");
    let activated = host_deploy(&host, &["--phase", "activate"]);
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
    let only = host_deploy(&host, &["--only", "postfix"]);
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
