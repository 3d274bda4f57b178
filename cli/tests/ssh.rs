//! `cmdeploy run` and `cmdeploy status` from this machine over SSH, on a booted Debian 12 host laid
//! out the way upstream's Python cmdeploy leaves a relay: the architecture check that changes
//! nothing, the adoption that keeps every piece of state byte for byte and says what it removed,
//! the no-op re-run, and status with its exit code. One host serves all checks. Slow: needs root,
//! systemd-nspawn, ssh; ignored unless run with `--include-ignored`.

#![allow(clippy::unwrap_used)] // a test fails by panicking

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;
use xtask::host::Host;

const DOMAIN: &str = "_adopt.example.org";
const NET: u8 = 50;
const ADDRESS: &str = "10.77.50.2";
const MAILBOX: &str = "/home/vmail/mail/_adopt.example.org/alice@_adopt.example.org";
const PASSWORD: &str = "adopted-password-1";

/// The programs upstream ran from its virtualenv, and how each unit is started.
const VENV_UNITS: &[(&str, &str)] = &[
    ("doveauth", "/run/doveauth/doveauth.socket"),
    (
        "chatmail-metadata",
        "/run/chatmail-metadata/metadata.socket",
    ),
    ("lastlogin", "/run/chatmail-lastlogin/lastlogin.socket"),
];

/// A stand-in for a program of upstream's (the virtualenv's scripts, the old filtermail):
/// what matters here is where it is and that units run it.
const STAND_IN: &str = "#!/bin/sh\nexec sleep infinity\n";

fn write(root: &Root, path: &str, content: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let full = root.path.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::fs::write(&full, content).unwrap();
    std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chroot_ok(root: &Root, argv: &[&str]) -> String {
    let output = root.chroot(argv);
    assert!(
        output.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn unit(description: &str, exec: &str, extra: &str) -> String {
    format!(
        "[Unit]\nDescription={description}\n\n[Service]\nExecStart={exec}\n{extra}\n\
         [Install]\nWantedBy=multi-user.target\n"
    )
}

/// What upstream's cmdeploy leaves on a relay (spec appendices A and B), made before boot.
fn upstream_layout(root: &Root) {
    let ini = "/usr/local/lib/chatmaild/chatmail.ini";
    write(
        root,
        ini,
        &format!("[params]\nmail_domain = {DOMAIN}\n"),
        0o644,
    );
    write(
        root,
        "/usr/local/lib/chatmaild/venv/pyvenv.cfg",
        "home = /usr/bin\n",
        0o644,
    );
    write(
        root,
        "/usr/local/lib/chatmaild/dist/chatmaild-0.3.tar.gz",
        "sdist\n",
        0o644,
    );
    let mut units = Vec::new();
    for (program, socket) in VENV_UNITS {
        let exe = format!("/usr/local/lib/chatmaild/venv/bin/{program}");
        write(root, &exe, STAND_IN, 0o755);
        let extra = format!("User=vmail\nRestart=always\nRuntimeDirectory={program}\n");
        let text = unit(program, &format!("{exe} {socket} {ini}"), &extra);
        write(
            root,
            &format!("/etc/systemd/system/{program}.service"),
            &text,
            0o644,
        );
        units.push(format!("{program}.service"));
    }
    for job in ["chatmail-expire", "chatmail-fsreport"] {
        let exe = format!("/usr/local/lib/chatmaild/venv/bin/{job}");
        write(root, &exe, "#!/bin/sh\nexit 0\n", 0o755);
        let service = format!(
            "[Unit]\nDescription={job}\n\n[Service]\nType=oneshot\nUser=vmail\n\
             ExecStart={exe} {ini}\n"
        );
        write(
            root,
            &format!("/etc/systemd/system/{job}.service"),
            &service,
            0o644,
        );
        let timer = "[Timer]\nOnCalendar=*-*-* 00:02:00\n\n[Install]\nWantedBy=timers.target\n";
        write(
            root,
            &format!("/etc/systemd/system/{job}.timer"),
            timer,
            0o644,
        );
        units.push(format!("{job}.timer"));
    }
    // Upstream's filtermail binary and its three units.
    write(root, "/usr/local/bin/filtermail", STAND_IN, 0o755);
    for (name, mode) in [
        ("filtermail", "outgoing"),
        ("filtermail-incoming", "incoming"),
        ("filtermail-transport", "transport"),
    ] {
        let exec = format!("/usr/local/bin/filtermail {ini} {mode}");
        write(
            root,
            &format!("/etc/systemd/system/{name}.service"),
            &unit(name, &exec, "User=vmail\n"),
            0o644,
        );
        units.push(format!("{name}.service"));
    }
    let mut enable = vec!["systemctl", "enable", "--quiet"];
    enable.extend(units.iter().map(String::as_str));
    chroot_ok(root, &enable);
    write(
        root,
        "/usr/lib/cgi-bin/newemail.py",
        "#!/usr/bin/python3\n",
        0o755,
    );
    write(root, "/root/from-cmdeploy/remote/__init__.py", "", 0o644);
    write(
        root,
        "/etc/chatmail-version",
        "0123456789abcdef\n\ndiff --git\n",
        0o644,
    );

    // State: the DKIM key, the self-signed certificate, an account with its password hash
    // and a message.
    chroot_ok(root, &["mkdir", "-p", "/etc/dkimkeys"]);
    chroot_ok(
        root,
        &[
            "opendkim-genkey",
            "-D",
            "/etc/dkimkeys",
            "-d",
            DOMAIN,
            "-s",
            "opendkim",
        ],
    );
    chroot_ok(root, &["chown", "-R", "opendkim:opendkim", "/etc/dkimkeys"]);
    make_certificate(
        root,
        "/etc/ssl/certs/mailserver.pem",
        "/etc/ssl/private/mailserver.key",
        DOMAIN,
    );
    let hash = chroot_ok(root, &["openssl", "passwd", "-6", PASSWORD]);
    write(
        root,
        &format!("{MAILBOX}/password"),
        &format!("{{SHA512-CRYPT}}{}", hash.trim()),
        0o600,
    );
    write(
        root,
        &format!("{MAILBOX}/new/1700000000.M1P1.relay"),
        "From: bob@example.org\nTo: alice@_adopt.example.org\nSubject: kept\n\nencrypted\n",
        0o600,
    );
    for dir in ["cur", "tmp"] {
        chroot_ok(root, &["mkdir", "-p", &format!("{MAILBOX}/{dir}")]);
    }
    chroot_ok(root, &["chown", "-R", "vmail:vmail", "/home/vmail/mail"]);
    // A Postfix that holds what it is given, so the queued mail waits for the checks.
    write(
        root,
        "/etc/postfix/main.cf",
        &format!(
            "myhostname = {DOMAIN}\nmydestination =\ninet_interfaces = loopback-only\n\
             compatibility_level = 3.6\nheader_checks = regexp:/etc/postfix/hold\n"
        ),
        0o644,
    );
    write(root, "/etc/postfix/hold", "/^Subject: held/ HOLD\n", 0o644);
}

/// Queues a mail in the booted host's Postfix (it lands in the hold queue); returns the
/// queue file.
fn queue_a_mail(host: &Host) -> String {
    host.exec_ok(&["systemctl", "restart", "postfix.service"])
        .unwrap();
    host.exec_ok(&[
        "/bin/sh",
        "-c",
        "printf 'Subject: held\\n\\nqueued before the adoption\\n' | \
         sendmail -f alice@_adopt.example.org bob@elsewhere.example",
    ])
    .unwrap();
    let start = Instant::now();
    loop {
        let found = host
            .exec_ok(&["find", "/var/spool/postfix/hold", "-type", "f"])
            .unwrap();
        if let Some(file) = found.lines().next() {
            return file.to_owned();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the mail never reached the hold queue"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// sha256 of each file, as `sha256sum` in the host prints them.
fn checksums(host: &Host, files: &[String]) -> String {
    let mut argv = vec!["sha256sum"];
    argv.extend(files.iter().map(String::as_str));
    host.exec_ok(&argv).unwrap()
}

fn settings(dir: &Path) -> PathBuf {
    config_file(
        dir,
        &format!(
            "mail_domain = {DOMAIN}\nmax_load_1m = 1000\niroh_relay =\n\
             privacy_mail = privacy@example.org\n"
        ),
    )
}

#[test]
#[ignore = "slow: root, a booted systemd-nspawn host reached over SSH"]
fn an_upstream_relay_is_deployed_over_ssh_keeping_its_state() {
    let root = installed_bootable_root("cm-adopt");
    upstream_layout(&root);
    let keys = tempfile::tempdir().unwrap();
    let ssh_options = xtask::host::authorize_ssh(keys.path(), &[&root.path]).unwrap();
    let host = Host::boot(&root.path, "cm-adopt", NET).unwrap();
    assert_eq!(host.address.to_string(), ADDRESS);
    let upstream_active = host
        .exec_ok(&["systemctl", "is-active", "doveauth", "filtermail-transport"])
        .unwrap();
    assert_eq!(upstream_active, "active\nactive\n", "upstream's units run");
    let held = queue_a_mail(&host);

    let mut state = vec![
        "/etc/dkimkeys/opendkim.private".to_owned(),
        "/etc/dkimkeys/opendkim.txt".to_owned(),
        "/etc/ssl/private/mailserver.key".to_owned(),
        "/etc/ssl/certs/mailserver.pem".to_owned(),
        held,
    ];
    let mailbox = host.exec_ok(&["find", MAILBOX, "-type", "f"]).unwrap();
    state.extend(mailbox.lines().map(str::to_owned));
    assert_eq!(state.len(), 7, "{state:?}");
    let state_before = checksums(&host, &state);

    let configs = tempfile::tempdir().unwrap();
    let config = settings(configs.path());
    let config = config.to_str().unwrap();
    let env = [("CMDEPLOY_SSH", ssh_options.as_str())];

    // A relay of another architecture: refused before anything is copied.
    let fake_uname = root.path.join("usr/local/sbin/uname");
    std::fs::write(&fake_uname, "#!/bin/sh\necho aarch64\n").unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(&fake_uname)
        .status()
        .unwrap();
    let etc = snapshot(&root.path.join("etc"));
    let local = snapshot(&root.path.join("usr/local"));
    let args = [
        "run",
        "--ssh-host",
        ADDRESS,
        "--skip-dns-check",
        "--config",
        config,
    ];
    let refused = cmdeploy(&args, &env);
    assert!(!refused.ok);
    assert!(
        refused.stderr.contains("root@10.77.50.2 is \"aarch64\"")
            && refused.stderr.contains("built for \"x86_64\"")
            && refused.stderr.contains("nothing was changed"),
        "{}",
        refused.stderr
    );
    assert!(snapshot(&root.path.join("etc")) == etc, "/etc unchanged");
    assert!(
        snapshot(&root.path.join("usr/local")) == local,
        "/usr/local unchanged"
    );
    std::fs::remove_file(&fake_uname).unwrap();

    // The adoption, over SSH.
    let first = cmdeploy(&args, &env);
    assert!(first.ok, "the deploy over SSH succeeds");
    for removed in [
        "legacy: remove /usr/local/lib/chatmaild/venv",
        "legacy: remove /usr/local/lib/chatmaild/dist",
        "legacy: remove /usr/lib/cgi-bin/newemail.py",
        "legacy: remove /root/from-cmdeploy",
        "removed (left by older releases, no longer declared, or replaced here):\n",
        "\n  /usr/local/lib/chatmaild/venv  (legacy)\n",
    ] {
        assert!(first.stdout.contains(removed), "{removed:?} not said");
    }
    assert_eq!(
        checksums(&host, &state),
        state_before,
        "keys, certificates, mailboxes, passwords and the queue are kept byte for byte"
    );
    let leftovers = host.exec(&["grep", "-rl", "chatmaild/venv", "/etc/systemd/system"]);
    assert_eq!(
        leftovers.unwrap().status.code(),
        Some(1),
        "no unit runs the virtualenv"
    );
    assert!(!root.path.join("usr/local/lib/chatmaild/venv").exists());
    let bundle = root.path.join("usr/local/lib/cmdeploy");
    assert_eq!(
        std::fs::read(root.path.join("usr/local/bin/filtermail")).unwrap(),
        std::fs::read(bundle.join("filtermail")).unwrap(),
        "upstream's filtermail is replaced by this workspace's"
    );
    // Upstream's transport unit is replaced by ours, running this workspace's filtermail.
    let transport = host
        .exec(&["systemctl", "is-active", "filtermail-transport.service"])
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&transport.stdout).trim(), "active");
    let unit = std::fs::read_to_string(
        root.path
            .join("etc/systemd/system/filtermail-transport.service"),
    )
    .unwrap();
    assert!(unit.contains("Written by cmdeploy"), "{unit}");
    // The adopted password logs in through this workspace's doveauth; the mail stays held.
    let user = format!("alice@{DOMAIN}");
    host.exec_ok(&["doveadm", "auth", "test", &user, PASSWORD])
        .unwrap();
    let queue = host.exec_ok(&["postqueue", "-p"]).unwrap();
    assert!(queue.contains("alice@_adopt.example.org"), "{queue}");

    // The re-run, reaching the mail domain through ssh's own settings (HostName); the
    // programs are the same, so none is sent again.
    let inode = |name: &str| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(bundle.join(name)).unwrap().ino()
    };
    let sent = (inode("cmdeploy"), inode("filtermail"));
    let default_host = format!("{ssh_options} -o HostName={ADDRESS}");
    let again = cmdeploy(
        &["run", "--skip-dns-check", "--config", config],
        &[("CMDEPLOY_SSH", default_host.as_str())],
    );
    assert!(again.ok && again.stdout.contains("nothing to change"));
    assert_eq!((inode("cmdeploy"), inode("filtermail")), sent);

    // Status: everything declared runs; a stopped service makes it exit 1.
    let status = cmdeploy(&["status", "--ssh-host", ADDRESS, "--config", config], &env);
    assert!(status.ok, "all declared services run");
    for line in [
        "mail domain:      _adopt.example.org\n",
        "privacy settings: present\n",
        "privacy_mail        privacy@example.org",
        &format!("deployed version: {}", chatmail_version::SOURCE_REVISION),
    ] {
        assert!(status.stdout.contains(line), "{line:?} missing");
    }
    let postfix = status
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("postfix.service"))
        .unwrap();
    assert!(
        postfix.contains("active") && postfix.contains("enabled"),
        "{postfix}"
    );
    // dns over SSH asks the relay's resolver; here its unbound serves the domain itself.
    std::fs::write(
        root.path.join("etc/unbound/unbound.conf.d/test-zone.conf"),
        format!(
            "server:\n  local-zone: \"{DOMAIN}.\" static\n\
             \x20 local-data: \"{DOMAIN}. NS ns.{DOMAIN}.\"\n\
             \x20 local-data: \"ns.{DOMAIN}. A 127.0.0.1\"\n\
             \x20 local-data: \"{DOMAIN}. A {ADDRESS}\"\n"
        ),
    )
    .unwrap();
    host.exec_ok(&["systemctl", "restart", "unbound.service"])
        .unwrap();
    // nspawn hosts count as containers, where the unbound component leaves resolv.conf alone.
    host.exec_ok(&["sh", "-c", "echo 'nameserver 127.0.0.1' > /etc/resolv.conf"])
        .unwrap();
    let zonefile = root.path.parent().unwrap().join("adopt.zone");
    let zone = cmdeploy(
        &[
            "dns",
            "--ssh-host",
            ADDRESS,
            "--config",
            config,
            "--zonefile",
            zonefile.to_str().unwrap(),
        ],
        &env,
    );
    assert!(zone.ok, "{}", zone.all());
    let zone = std::fs::read_to_string(&zonefile).unwrap();
    let address = format!("{DOMAIN}. ");
    assert!(
        zone.lines()
            .any(|l| l.starts_with(&address) && l.ends_with(&format!("A      {ADDRESS}"))),
        "{zone}"
    );
    let key = host
        .exec_ok(&[
            "openssl",
            "pkey",
            "-in",
            "/etc/dkimkeys/opendkim.private",
            "-pubout",
        ])
        .unwrap();
    let key: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(
        zone.replace("\" \"", "").contains(&key[..200]),
        "the adopted key: {zone}"
    );
    // With its address in DNS the relay passes run's pre-check, and the run says what next.
    let checked = cmdeploy(&["run", "--ssh-host", ADDRESS, "--config", config], &env);
    assert!(checked.ok, "{}", checked.all());
    assert!(
        checked.stdout.contains("nothing to change"),
        "{}",
        checked.stdout
    );
    assert!(
        checked
            .stderr
            .contains("Deploy completed, call `cmdeploy dns` next."),
        "{}",
        checked.stderr
    );
    let check = cmdeploy(&["dns", "--ssh-host", ADDRESS, "--config", config], &env);
    assert_eq!(
        check.code,
        Some(1),
        "the MX record is missing: {}",
        check.all()
    );
    assert!(
        check.stdout.contains(&format!("{DOMAIN}.")) && check.stdout.contains("MX"),
        "{}",
        check.stdout
    );

    host.exec_ok(&["systemctl", "stop", "filtermail-incoming.service"])
        .unwrap();
    let degraded = cmdeploy(&["status", "--ssh-host", ADDRESS, "--config", config], &env);
    assert!(!degraded.ok);
    assert!(
        degraded
            .stdout
            .contains("not as declared: filtermail-incoming.service"),
        "{}",
        degraded.stdout
    );
}
