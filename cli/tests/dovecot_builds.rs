//! Which Dovecot a relay gets, on a booted Debian 12 host: Debian's (with one warning naming
//! the latency cost when the delay-free build cannot be had), a switch to our delay-free build
//! (`cargo xtask dovecot`) and back, each keeping mail, indexes and settings and restarting
//! Dovecot once; with ours, an IMAP IDLE client learns of a delivered message in well under
//! the 500 ms Debian's build waits. Slow: root, a booted systemd-nspawn host, the packages of
//! `cargo xtask dovecot`; ignored unless run with `--include-ignored`.

#![allow(clippy::unwrap_used)] // a test fails by panicking

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use chatmail_dovecot::{DEBS_ENV, OUR_MARKER};
use support::*;
use xtask::host::Host;
use xtask::latency::{self, Report};

/// Where the test copies our packages inside the host.
const HOST_DEBS: &str = "/root/dovecot-debs";

/// dovecot-core's version on the host.
fn dovecot_version(host: &Host) -> String {
    host.exec_ok(&["dpkg-query", "-W", "-f=${Version}", "dovecot-core"])
        .unwrap()
}

/// `cmdeploy run` inside the host with `DEBS_ENV` set to `choice` (unset for `None`).
fn deploy_with(host: &Host, choice: Option<&str>) -> String {
    let argv = xtask::bundle::host_run(&[]);
    let setting = choice.map(|choice| format!("{DEBS_ENV}={choice}"));
    let mut full: Vec<&str> = vec!["env"];
    full.extend(setting.as_deref());
    full.extend(argv.iter().map(String::as_str));
    let output = host.exec(&full).unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("$ {}\n{text}", full.join(" "));
    assert!(output.status.success(), "cmdeploy failed in the host");
    text
}

/// The journal's cursor now: what happens later is read with [`starts_since`].
fn cursor(host: &Host) -> String {
    let out = host
        .exec_ok(&["journalctl", "--show-cursor", "-n", "0", "-q"])
        .unwrap();
    out.trim()
        .strip_prefix("-- cursor: ")
        .unwrap_or_else(|| panic!("no cursor in {out:?}"))
        .to_owned()
}

/// How often systemd started dovecot.service after `cursor`.
fn starts_since(host: &Host, cursor: &str) -> usize {
    let after = format!("--after-cursor={cursor}");
    let log = host
        .exec_ok(&[
            "journalctl",
            "-q",
            "-o",
            "cat",
            "-u",
            "dovecot.service",
            &after,
        ])
        .unwrap();
    log.lines()
        .filter(|line| line.starts_with("Started dovecot.service"))
        .count()
}

/// The IDLE latency of `count` messages to `recipient` (a new account when `None`).
fn idle_latency(host: &Host, count: usize, recipient: Option<&(String, String)>) -> Report {
    let address = host.address.to_string();
    let report = latency::measure(&address, &format!("[{address}]"), count, recipient).unwrap();
    eprintln!("idle latency (ms): {:?}", report.latencies_ms());
    report
}

#[test]
#[ignore = "slow: root, a booted systemd-nspawn host, cargo xtask dovecot"]
fn dovecot_switches_between_debians_and_the_delay_free_build_keeping_mail() {
    let ours = our_dovecot();
    let root = fresh_root_from(&xtask::rootfs::ensure_bootable().unwrap(), "cm-dovecot");
    let debian = [(DEBS_ENV, "debian")];
    let install = cmdeploy(
        &["run", "--phase", "install", "--root", root.str()],
        &debian,
    );
    assert!(install.ok);
    assert!(
        !install.all().contains("warning"),
        "Debian's on purpose: no warning"
    );
    let host_debs = root.path.join(HOST_DEBS.trim_start_matches('/'));
    std::fs::create_dir_all(&host_debs).unwrap();
    for entry in std::fs::read_dir(&ours).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, host_debs.join(path.file_name().unwrap())).unwrap();
    }
    let bundle = root.path.join(BUNDLE.trim_start_matches('/'));
    xtask::bundle::copy(Path::new(env!("CARGO_BIN_EXE_cmdeploy")), &bundle).unwrap();
    set_config(&root, "mail_domain = 10.77.47.2\n");
    let host = Host::boot(&root.path, "cm-dovecot", 47).unwrap();

    // Unset, on a host that cannot download: Debian's, with one warning naming the cost.
    let first = deploy_with(&host, None);
    let warnings: BTreeSet<&str> = first
        .lines()
        .filter(|line| line.contains("about 0.5 s later"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning (and its summary): {first}");
    assert!(first.contains(&format!("{DEBS_ENV}=debian")), "{first}");
    let debians = dovecot_version(&host);
    assert!(!debians.contains(OUR_MARKER), "{debians}");
    let slow = idle_latency(&host, 3, None);
    assert!(
        slow.median_ms() >= 400.0,
        "Debian's Dovecot waits 500 ms before telling IDLE clients: {:?} ms",
        slow.latencies_ms()
    );
    let mailboxes = root.path.join("home/vmail/mail/10.77.47.2");
    let mail = snapshot(&mailboxes);
    let settings = snapshot(&root.path.join("etc/dovecot"));

    // Ours from a directory: installed, pinned, Dovecot restarted once, nothing lost.
    let before = cursor(&host);
    deploy_with(&host, Some(HOST_DEBS));
    let delay_free = dovecot_version(&host);
    assert!(delay_free.contains(OUR_MARKER), "{delay_free}");
    assert_eq!(starts_since(&host, &before), 1, "Dovecot restarted once");
    assert!(snapshot(&mailboxes) == mail, "mail and indexes are kept");
    assert!(
        snapshot(&root.path.join("etc/dovecot")) == settings,
        "settings are kept"
    );
    let pin = String::from_utf8(root.read("/etc/apt/preferences.d/pin-dovecot")).unwrap();
    assert!(pin.contains("Pin-Priority: -1"), "{pin}");
    let fast = idle_latency(&host, 5, Some(&slow.recipient));
    assert_eq!(fast.inbox_before, 3, "the earlier messages are still there");
    assert!(
        fast.median_ms() < 300.0,
        "the delay-free Dovecot tells IDLE clients at once: {:?} ms",
        fast.latencies_ms()
    );
    for choice in [Some(HOST_DEBS), None] {
        let again = deploy_with(&host, choice);
        assert!(again.contains("nothing to change"), "{again}");
    }

    // Debian's on purpose: the archive's build replaces ours, again keeping everything.
    let mail = snapshot(&mailboxes);
    let before = cursor(&host);
    deploy_with(&host, Some("debian"));
    assert_eq!(dovecot_version(&host), debians);
    assert_eq!(starts_since(&host, &before), 1, "Dovecot restarted once");
    assert!(snapshot(&mailboxes) == mail, "mail and indexes are kept");
    assert!(
        snapshot(&root.path.join("etc/dovecot")) == settings,
        "settings are kept"
    );
    let back = idle_latency(&host, 1, Some(&slow.recipient));
    assert_eq!(back.inbox_before, 8, "all messages are still there");
}
