//! The relay end to end on booted Debian 12 hosts (systemd-nspawn, each in its own network
//! namespace): `cmdeploy run` inside the host as an operator would, every declared service active,
//! exact re-runs, restarts only for what changed, split phases, `--only`, a killed run that
//! converges, every written unit verified by systemd, the TURN server and iroh-relay answering
//! (iroh-relay stopped and disabled while `iroh_relay` names another relay), and
//! two real Delta Chat accounts exchanging encrypted messages; `cmdeploy test` passing against
//! the IPv4 relay. Slow: needs root, systemd-nspawn,
//! the Delta Chat client (`scripts/setup-debian`); ignored unless run with `--include-ignored`.

#![allow(clippy::unwrap_used)] // a test fails by panicking

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

use support::*;
use xtask::host::Host;

/// The units the registry declares running for this host's config (`cmdeploy list`).
fn declared_running_units(host: &Host) -> Vec<String> {
    let cmdeploy = format!("{BUNDLE}/cmdeploy");
    let list = host
        .exec_ok(&[&cmdeploy, "list", "--config", HOST_CONFIG])
        .unwrap();
    list.lines()
        .filter_map(|line| line.trim().strip_prefix("service:"))
        .filter_map(|rest| rest.trim().strip_suffix(" (running)"))
        .map(str::to_owned)
        .collect()
}

/// Every unit file the deploy writes (as `cmdeploy list` names them) passes
/// `systemd-analyze verify` on the host itself.
fn assert_units_verify(host: &Host) {
    let cmdeploy = format!("{BUNDLE}/cmdeploy");
    let list = host
        .exec_ok(&[&cmdeploy, "list", "--config", HOST_CONFIG])
        .unwrap();
    let units: Vec<&str> = list
        .lines()
        .filter_map(|line| line.trim().strip_prefix("file:"))
        .map(str::trim)
        .filter(|path| path.starts_with("/etc/systemd/system/"))
        .filter(|path| {
            [".service", ".timer", ".socket", ".path"]
                .iter()
                .any(|kind| path.ends_with(kind))
        })
        .collect();
    assert!(units.len() > 10, "{units:?}");
    let mut verify = vec!["systemd-analyze", "verify", "--man=no"];
    verify.extend(&units);
    let output = host.exec(&verify).unwrap();
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "systemd-analyze verify {units:?}:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The TURN server answers on UDP 3478, and the bundled iroh-relay on HTTP port 3340 (its
/// captive-portal check, which nginx forwards to it).
fn assert_turn_and_iroh_relay_answer(host: &Host) {
    let udp = host
        .exec_ok(&["cat", "/proc/net/udp", "/proc/net/udp6"])
        .unwrap();
    assert!(
        udp.lines().any(|line| line
            .split_whitespace()
            .nth(1)
            .is_some_and(|local| local.ends_with(":0D96"))),
        "nothing listens on UDP 3478:\n{udp}"
    );
    let request = "exec 3<>/dev/tcp/127.0.0.1/3340 && \
                   printf 'GET /generate_204 HTTP/1.1\\r\\nHost: relay\\r\\nConnection: close\\r\\n\\r\\n' >&3 && \
                   cat <&3";
    // Started just now: it may take a moment to listen.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let answer = loop {
        match host.exec_ok(&["bash", "-c", request]) {
            Ok(answer) => break answer,
            Err(err) if std::time::Instant::now() > deadline => panic!("iroh-relay: {err:#}"),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(500)),
        }
    };
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
}

/// iroh-relay is stopped and disabled (`iroh_relay` names another relay).
fn assert_iroh_relay_is_off(host: &Host) {
    for (query, expected) in [("is-active", "inactive"), ("is-enabled", "disabled")] {
        let state = host
            .exec(&["systemctl", query, "iroh-relay.service"])
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&state.stdout).trim(),
            expected,
            "iroh-relay {query}"
        );
    }
}

/// When each unit last became active: a restart changes it.
fn start_stamps(host: &Host, units: &[String]) -> BTreeMap<String, String> {
    units
        .iter()
        .map(|unit| {
            let property = "--property=ActiveEnterTimestampMonotonic";
            let stamp = host
                .exec_ok(&["systemctl", "show", property, "--value", unit])
                .unwrap();
            assert_ne!(stamp.trim(), "0", "{unit} never became active");
            (unit.clone(), stamp.trim().to_owned())
        })
        .collect()
}

fn assert_all_active(host: &Host, units: &[String]) {
    for unit in units {
        let state = host.exec(&["systemctl", "is-active", unit]).unwrap();
        let state = String::from_utf8_lossy(&state.stdout).trim().to_owned();
        if state != "active" {
            let journal = host.exec(&["journalctl", "-u", unit, "-n", "30", "--no-pager"]);
            let journal = String::from_utf8_lossy(&journal.unwrap().stdout).into_owned();
            panic!("{unit} is {state}, not active:\n{journal}");
        }
    }
}

/// Units whose start stamp differs between two snapshots.
fn restarted(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<String> {
    before
        .iter()
        .filter(|(unit, stamp)| after[*unit] != **stamp)
        .map(|(unit, _)| unit.clone())
        .collect()
}

/// Bytes of the files that must never change once made (keys, certificates), by path.
fn secrets(root: &Root, paths: &[&str]) -> Vec<Vec<u8>> {
    paths.iter().map(|path| root.read(path)).collect()
}

#[test]
#[ignore = "slow: root, a booted systemd-nspawn host"]
fn underscore_domain_relay_activates_exactly_and_carries_encrypted_chat() {
    let domain = "mail_domain = _chat.example.org\n";
    let (root, host) = relay_host("cm-under", 41, domain);

    let first = host_deploy(&host, &[]);
    assert_eq!(
        first.matches("systemd: daemon-reload").count(),
        1,
        "one daemon-reload for the written unit files and the enabled units:\n{first}"
    );
    let units = declared_running_units(&host);
    for unit in [
        "dovecot.service",
        "postfix.service",
        "opendkim.service",
        "doveauth.service",
        "filtermail.service",
    ] {
        assert!(
            units.iter().any(|u| u == unit),
            "{unit} not declared: {units:?}"
        );
    }
    assert_all_active(&host, &units);
    assert!(units.iter().any(|u| u == "turnserver.service"), "{units:?}");
    assert!(units.iter().any(|u| u == "iroh-relay.service"), "{units:?}");
    assert_turn_and_iroh_relay_answer(&host);
    assert_units_verify(&host);
    let keys = [
        "/etc/dkimkeys/opendkim.private",
        "/etc/ssl/private/mailserver.key",
        "/etc/ssl/certs/mailserver.pem",
    ];
    let secrets_before = secrets(&root, &keys);

    // A unit masked by hand (one of Debian's: a unit file of ours in /etc/systemd/system
    // cannot be masked) is unmasked and started: the unmask reaches systemd (the run's one
    // daemon-reload) before the start.
    host.exec_ok(&["systemctl", "mask", "--now", "nginx.service"])
        .unwrap();
    let unmasked = host_deploy(&host, &[]);
    for line in [
        "nginx: unmask nginx.service",
        "systemd: daemon-reload",
        "nginx: start nginx.service",
    ] {
        assert!(unmasked.contains(line), "{line} not done:\n{unmasked}");
    }
    assert_all_active(&host, &units);
    let started = start_stamps(&host, &units);

    let again = host_deploy(&host, &[]);
    assert!(again.contains("nothing to change"), "{again}");
    assert_eq!(
        start_stamps(&host, &units),
        started,
        "an identical re-run restarts nothing"
    );

    delta_chat_exchange(&host.address.to_string(), "_chat.example.org");

    // A dry run shows the restarts a change would bring, and does none of them.
    set_config(&root, &format!("{domain}max_message_size = 1000000\n"));
    let dry = host_deploy(&host, &["--dry-run"]);
    for restart in [
        "postfix: would reload postfix.service",
        "dovecot: would reload dovecot.service",
        "filtermail: would restart filtermail.service",
    ] {
        assert!(dry.contains(restart), "{restart} not shown:\n{dry}");
    }
    assert_eq!(
        start_stamps(&host, &units),
        started,
        "a dry run restarts nothing"
    );
    assert!(
        host.exec(&["test", "-e", "/var/lib/cmdeploy/pending-restarts"])
            .unwrap()
            .status
            .code()
            == Some(1),
        "a dry run owes nothing"
    );

    // Configure now, activate later: the owed restarts wait on disk in between.
    let configured = host_deploy(&host, &["--phase", "configure"]);
    assert!(configured.contains("postfix: update /etc/postfix/main.cf"));
    let owed = host
        .exec_ok(&["cat", "/var/lib/cmdeploy/pending-restarts"])
        .unwrap();
    assert!(
        owed.contains("reload postfix.service") && owed.contains("reload dovecot.service"),
        "{owed}"
    );
    assert_eq!(
        start_stamps(&host, &units),
        started,
        "configure restarts nothing"
    );
    // Configuration changes reload Dovecot: an IMAP IDLE connection stays open across them.
    let idle = IdleConnection::open(
        &host.address.to_string(),
        "idlecheck@_chat.example.org",
        "idle-check-password",
    );
    let activated = host_deploy(&host, &["--phase", "activate"]);
    assert!(
        activated.contains("dovecot: reload dovecot.service"),
        "{activated}"
    );
    assert!(idle.survived(), "the IDLE connection was dropped");
    let now = start_stamps(&host, &units);
    let mut changed = restarted(&started, &now);
    changed.sort();
    assert_eq!(
        changed,
        [
            "chatmail-expire.timer",
            "chatmail-fsreport.timer",
            "chatmail-metadata.service",
            "doveauth.service",
            "filtermail-incoming.service",
            "filtermail-transport.service",
            "filtermail.service",
            "lastlogin.service",
        ],
        "exactly the services that read max_message_size (directly or via chatmail.ini); \
         Dovecot, Postfix and nginx reload their configuration instead"
    );
    for reload in [
        "postfix: reload postfix.service",
        "nginx: reload nginx.service",
    ] {
        assert!(activated.contains(reload), "{reload}: {activated}");
    }
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
    for other in [
        "base:",
        "chatmaild:",
        "filtermail:",
        "opendkim:",
        "tls:",
        "dovecot:",
    ] {
        assert!(
            !only.lines().any(|line| line.starts_with(other)),
            "{other} touched: {only}"
        );
    }
    assert!(only.contains("postfix: reload postfix.service"), "{only}");
    assert_eq!(
        restarted(&now, &start_stamps(&host, &units)),
        Vec::<String>::new()
    );

    // What a run no longer declares goes: external TLS runs a unit that watches the
    // certificate; back to self-signed, the unit is stopped and disabled, its files removed.
    // Announcing another iroh relay meanwhile stops this one; back, it runs again.
    let settings = format!("{domain}max_message_size = 1000000\nmax_smtp_connections = 500\n");
    set_config(
        &root,
        &format!(
            "{settings}tls_external_cert_and_key = /etc/ssl/certs/mailserver.pem \
             /etc/ssl/private/mailserver.key\niroh_relay = https://iroh.example.net\n"
        ),
    );
    let external = host_deploy(&host, &[]);
    assert!(
        external.contains("tls: start tls-cert-reload.path"),
        "{external}"
    );
    assert_iroh_relay_is_off(&host);
    set_config(&root, &settings);
    let back = host_deploy(&host, &[]);
    for line in [
        "tls: stop tls-cert-reload.path",
        "tls: disable tls-cert-reload.path",
        "tls: remove /etc/systemd/system/tls-cert-reload.path (no longer declared)",
        "tls: remove /etc/systemd/system/tls-cert-reload.service (no longer declared)",
        "systemd: daemon-reload",
    ] {
        assert!(back.contains(line), "{line} not done:\n{back}");
    }
    let state = host
        .exec(&["systemctl", "is-active", "tls-cert-reload.path"])
        .unwrap();
    assert_ne!(
        state.status.code(),
        Some(0),
        "tls-cert-reload.path still runs"
    );
    assert!(
        back.contains("iroh-relay: start iroh-relay.service"),
        "{back}"
    );
    assert_turn_and_iroh_relay_answer(&host);
    assert!(
        host_deploy(&host, &[]).contains("nothing to change"),
        "the removal is done once"
    );
    assert_eq!(
        secrets(&root, &keys),
        secrets_before,
        "keys and certificates never change"
    );
}

/// An account of the IPv4 relay 10.77.45.2, laid out as upstream leaves it.
const CAROL: &str = "carol@[10.77.45.2]";
const CAROL_PASSWORD: &str = "upstream-password-1";
/// Upstream's mailboxes folder of an IPv4 relay: the address without brackets.
const IPV4_MAILBOXES: &str = "/home/vmail/mail/10.77.45.2";

/// Writes `CAROL`'s password hash and one message where upstream keeps them.
fn upstream_ipv4_account(host: &Host) {
    let mailbox = format!("{IPV4_MAILBOXES}/{CAROL}");
    let hash = host
        .exec_ok(&["openssl", "passwd", "-6", CAROL_PASSWORD])
        .unwrap();
    let script = format!(
        "mkdir -p {mailbox}/new {mailbox}/cur {mailbox}/tmp && \
         printf '%s' '{{SHA512-CRYPT}}{hash}' > {mailbox}/password && \
         printf 'From: dave@[10.77.45.3]\\nTo: {CAROL}\\nSubject: kept from upstream\\n\\nhello\\n' \
           > {mailbox}/new/1700000000.M1P1.upstream && \
         chown -R vmail:vmail /home/vmail/mail && chmod 0700 {IPV4_MAILBOXES}",
        mailbox = format!("'{mailbox}'"),
        hash = hash.trim(),
    );
    host.exec_ok(&["/bin/sh", "-c", &script]).unwrap();
}

/// `CAROL` logs in with her password (not a new account: a wrong one is refused) and her
/// message is there.
fn assert_carol_found(host: &Host) {
    host.exec_ok(&["doveadm", "auth", "test", CAROL, CAROL_PASSWORD])
        .unwrap();
    let wrong = host
        .exec(&["doveadm", "auth", "test", CAROL, "another-password-1"])
        .unwrap();
    assert!(
        !wrong.status.success(),
        "the account exists: its password is checked"
    );
    let mail = host
        .exec_ok(&[
            "doveadm", "fetch", "-u", CAROL, "text", "mailbox", "INBOX", "ALL",
        ])
        .unwrap();
    assert!(mail.contains("Subject: kept from upstream"), "{mail}");
}

#[test]
#[ignore = "slow: root, a booted systemd-nspawn host"]
fn ipv4_relay_converges_after_a_killed_run_and_loses_nothing() {
    let domain = "mail_domain = 10.77.45.2\n";
    let (root, host) = relay_host("cm-ipv4", 45, domain);
    assert_eq!(host.address.to_string(), "10.77.45.2");
    upstream_ipv4_account(&host);
    let password = root.read(&format!("{IPV4_MAILBOXES}/{CAROL}/password"));

    let first = host_deploy(&host, &[]);
    assert!(
        !first.contains("opendkim:"),
        "no DKIM for IPv4 relays: {first}"
    );
    let units = declared_running_units(&host);
    assert!(!units.iter().any(|u| u == "opendkim.service"), "{units:?}");
    assert_all_active(&host, &units);
    let keys = [
        "/etc/ssl/private/mailserver.key",
        "/etc/ssl/certs/mailserver.pem",
    ];
    let secrets_before = secrets(&root, &keys);
    assert!(host_deploy(&host, &[]).contains("nothing to change"));
    // The upstream relay's account is adopted as it is.
    assert_carol_found(&host);
    assert_eq!(
        root.read(&format!("{IPV4_MAILBOXES}/{CAROL}/password")),
        password
    );

    delta_chat_exchange(&host.address.to_string(), "[10.77.45.2]");
    let mailboxes = Path::new(IPV4_MAILBOXES.trim_start_matches('/'));
    let accounts = std::fs::read_dir(root.path.join(mailboxes))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains('@'))
        .count();
    assert_eq!(accounts, 3, "carol's, and two created by logging in");
    let mail_before = snapshot(&root.path.join(mailboxes));

    // Kill cmdeploy with SIGKILL right after its first configure change, then run again.
    set_config(&root, &format!("{domain}max_message_size = 2000000\n"));
    let started = start_stamps(&host, &units);
    let argv = xtask::bundle::host_run(&[]);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let mut child = host.spawn(&argv).unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let pid = lines.next().unwrap().unwrap();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.starts_with("chatmaild: update") {
            host.kill(&pid).unwrap();
            break;
        }
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run was killed");
    let owed = host
        .exec_ok(&["cat", "/var/lib/cmdeploy/pending-restarts"])
        .unwrap();
    assert!(
        owed.contains("component chatmaild") && owed.contains("component filtermail"),
        "{owed}"
    );

    let rerun = host_deploy(&host, &[]);
    assert!(
        rerun.contains("postfix: update /etc/postfix/main.cf"),
        "{rerun}"
    );
    assert_all_active(&host, &units);
    let restarted_units = restarted(&started, &start_stamps(&host, &units));
    for unit in ["doveauth.service", "filtermail.service"] {
        assert!(
            restarted_units.iter().any(|u| u == unit),
            "{unit} was owed a restart: {restarted_units:?}"
        );
    }
    // Their configuration changed too: they were owed (and got) a reload.
    for reload in [
        "postfix: reload postfix.service",
        "dovecot: reload dovecot.service",
    ] {
        assert!(rerun.contains(reload), "{reload} missing:\n{rerun}");
    }
    assert!(
        host_deploy(&host, &[]).contains("nothing to change"),
        "converged"
    );
    assert!(
        String::from_utf8(root.read("/etc/postfix/main.cf"))
            .unwrap()
            .contains("message_size_limit = 2000000\n")
    );
    assert_eq!(
        secrets(&root, &keys),
        secrets_before,
        "keys and certificates never change"
    );
    assert!(
        snapshot(&root.path.join(mailboxes)) == mail_before,
        "the mailboxes are untouched"
    );

    // A relay an earlier release of this tool deployed kept them bracketed: on the running
    // relay they are moved, with the daemons writing there stopped for it and started again.
    let old = "/home/vmail/mail/[10.77.45.2]";
    host.exec_ok(&["mv", IPV4_MAILBOXES, old]).unwrap();
    let moved = host_deploy(&host, &[]);
    for line in [
        format!("legacy: stop dovecot.service (to move {old})\n"),
        format!("legacy: stop doveauth.service (to move {old})\n"),
        format!("legacy: move {old} to {IPV4_MAILBOXES}\n"),
        "dovecot: start dovecot.service\n".to_owned(),
        format!(
            "moved (where an earlier release kept it):\n  {old} -> {IPV4_MAILBOXES}  (legacy)\n"
        ),
    ] {
        assert!(moved.contains(&line), "{line:?} missing:\n{moved}");
    }
    assert!(
        snapshot(&root.path.join(mailboxes)) == mail_before,
        "moved as they were"
    );
    assert_all_active(&host, &units);
    assert_carol_found(&host);
    assert!(host_deploy(&host, &[]).contains("nothing to change"));

    // `cmdeploy test` from this machine: what applies to an IPv4 relay passes; DKIM, DNS and
    // certificate validity do not apply and are skipped.
    let config = root.path.join(HOST_CONFIG.trim_start_matches('/'));
    let probe = cmdeploy(&["test", "--config", config.to_str().unwrap()], &[]);
    assert_eq!(probe.code, Some(0), "{}", probe.all());
    assert!(
        probe
            .stdout
            .contains("16 checks: 13 ok, 0 failed, 3 skipped"),
        "{}",
        probe.stdout
    );
}
