//! `cmdeploy dns`: quick checks of the bad-input paths and the IPv4 skip, and (slow) the real
//! thing: an authoritative `nsd` in a network namespace of its own serving test zones, and
//! `cmdeploy dns` in a second namespace whose resolver is that server.

#![allow(clippy::unwrap_used)] // a test fails by panicking

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use chatmail_core::config::Config;
use chatmail_dns::{Dkim, RelayData, zone};
use support::{Run, cmdeploy_via, config_file};
use xtask::nsd::{Nsd, Zone};

/// The test-only DKIM key of the chatmail-dns tests.
const KEY: &str = include_str!("../../chatmail-dns/tests/data/opendkim.private");
/// The name server's and the client's address (this test's range is 10.77.60.0/24).
const SERVER: &str = "10.77.60.1";
const CLIENT: &str = "10.77.60.2";

#[test]
fn ipv4_relays_skip_the_dns_checks() {
    let dir = tempfile::tempdir().unwrap();
    let ini = config_file(dir.path(), "mail_domain = 10.77.0.2\n");
    let run = cmdeploy_via(&[], &["--config", ini.to_str().unwrap(), "dns"], &[]);
    assert_eq!(run.code, Some(0));
    assert_eq!(
        run.stdout,
        "[WARNING] 10.77.0.2 is not a domain, skipping DNS checks.\n"
    );
}

#[test]
fn bad_settings_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.ini");
    let run = cmdeploy_via(&[], &["--config", missing.to_str().unwrap(), "dns"], &[]);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("nope.ini"), "{}", run.stderr);
    let ini = config_file(
        dir.path(),
        "mail_domain = chat.example.org\nmax_message_size = big\n",
    );
    let run = cmdeploy_via(&[], &["--config", ini.to_str().unwrap(), "dns"], &[]);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("max_message_size"), "{}", run.stderr);
}

/// A network namespace pair joined by a veth link, the resolver file of the client side, and
/// the nsd started in the server side; all removed when dropped, also after a failure.
struct Lab {
    server: String,
    client: String,
    dir: tempfile::TempDir,
    nsd: Option<Nsd>,
}

impl Lab {
    fn new() -> Lab {
        let id = std::process::id();
        let lab = Lab {
            server: format!("cmdns{id}s"),
            client: format!("cmdns{id}c"),
            dir: tempfile::tempdir().unwrap(),
            nsd: None,
        };
        lab.cleanup_network();
        let (s, c) = (lab.server.as_str(), lab.client.as_str());
        ip(&["netns", "add", s]);
        ip(&["netns", "add", c]);
        ip(&["link", "add", s, "type", "veth", "peer", "name", c]);
        for (ns, address) in [(s, SERVER), (c, CLIENT)] {
            ip(&["link", "set", ns, "netns", ns]);
            ip(&["-n", ns, "addr", "add", &format!("{address}/24"), "dev", ns]);
            ip(&["-n", ns, "link", "set", ns, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        let etc = Path::new("/etc/netns").join(c);
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("resolv.conf"), format!("nameserver {SERVER}\n")).unwrap();
        lab
    }

    /// Serves `zones` (name, records) with a freshly started nsd.
    fn serve(&mut self, zones: &[(String, String)]) {
        let zones: Vec<Zone> = zones
            .iter()
            .map(|(name, records)| Zone {
                name: name.clone(),
                records: records.clone(),
            })
            .collect();
        self.nsd = Some(Nsd::start(&self.server, SERVER, self.dir.path(), &zones).unwrap());
    }

    /// `cmdeploy --config INI dns ARGS...` in the client namespace, DKIM key under `root`.
    fn dns(&self, ini: &Path, root: &Path, args: &[&str]) -> Run {
        let mut all = vec![
            "--config",
            ini.to_str().unwrap(),
            "dns",
            "--root",
            root.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        cmdeploy_via(&["ip", "netns", "exec", &self.client], &all, &[])
    }

    fn cleanup_network(&self) {
        for ns in [&self.server, &self.client] {
            let _ = Command::new("ip").args(["netns", "delete", ns]).output();
        }
        let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&self.client));
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        drop(self.nsd.take());
        self.cleanup_network();
    }
}

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The zone `cmdeploy dns` should ask for, for an external-TLS relay at `domain`.
fn expected_zone(domain: &str, dkim: &Dkim) -> String {
    let config = external_tls(domain);
    let data = RelayData {
        a: "10.77.60.5".into(),
        aaaa: String::new(),
        mta_sts: String::new(),
        www: String::new(),
        sts_id: String::new(),
        acme_account_url: String::new(),
        dkim: Ok(dkim.clone()),
    };
    zone::for_relay(&config, &data, dkim, "")
}

fn external_tls(domain: &str) -> Config {
    Config::parse(
        &external_tls_ini(domain),
        Path::new("chatmail.ini"),
        &|_| None,
    )
    .unwrap()
}

fn external_tls_ini(domain: &str) -> String {
    format!(
        "[params]\nmail_domain = {domain}\n\
         tls_external_cert_and_key = /etc/certs/fullchain.pem /etc/certs/key.pem\n"
    )
}

/// The zone's lines up to the recommended section (its required records).
fn required_part(zone: &str) -> String {
    zone.split(zone::RECOMMENDED).next().unwrap().to_owned()
}

#[test]
#[ignore = "slow: root, nsd in a network namespace"]
fn dns_checks_against_a_real_authoritative_server() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    std::fs::create_dir_all(root.join("etc/dkimkeys")).unwrap();
    std::fs::write(root.join("etc/dkimkeys/opendkim.private"), KEY).unwrap();
    let dkim = Dkim::from_pem(KEY).unwrap();
    let other_key = Command::new("openssl")
        .args(["genrsa", "2048"])
        .output()
        .unwrap();
    let other_dkim = Dkim::from_pem(&String::from_utf8(other_key.stdout).unwrap()).unwrap();

    let name = |case: &str| format!("{case}.cmdns.test");
    let complete = expected_zone(&name("complete"), &dkim);
    let recommended_missing = required_part(&expected_zone(&name("recommended"), &dkim));
    let wrong = expected_zone(&name("wrong"), &dkim)
        .replace(
            &format!("MX     10 {}.", name("wrong")),
            "MX     20 mx.elsewhere.test.",
        )
        .replace(&dkim.chunked(), &other_dkim.chunked());
    let a_only = |case: &str| format!("{}. 3600 IN A 10.77.60.5\n", name(case));
    // The acme case has the names its certificate covers, but no acmetool account.
    let acme = format!(
        "{complete_a}mta-sts.{n}. 3600 IN CNAME {n}.\nwww.{n}. 3600 IN CNAME {n}.\n",
        complete_a = a_only("acme"),
        n = name("acme")
    );
    let mut lab = Lab::new();
    lab.serve(&[
        (name("complete"), complete.clone()),
        (name("recommended"), recommended_missing),
        (name("wrong"), wrong),
        (name("missing"), a_only("missing")),
        (name("acme"), acme),
        (name("noaddress"), String::new()),
    ]);
    let ini = |case: &str| {
        let path = work.path().join(format!("{case}.ini"));
        std::fs::write(&path, external_tls_ini(&name(case))).unwrap();
        path
    };

    // Everything set: exit 0 and the one success line.
    let run = lab.dns(&ini("complete"), &root, &[]);
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert!(
        run.stderr
            .contains("Great! All your DNS entries are verified and correct.")
    );
    assert!(!run.stdout.contains("WARNING"), "{}", run.stdout);

    // The zone file written is exactly the zone served.
    let out = work.path().join("written.zone");
    let run = lab.dns(
        &ini("complete"),
        &root,
        &["--zonefile", out.to_str().unwrap()],
    );
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert!(run.stderr.contains(&format!(
        "DNS records successfully written to: {}",
        out.display()
    )));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), complete);

    // Only recommended records missing: exit 0 with the warning list.
    let run = lab.dns(&ini("recommended"), &root, &[]);
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert!(
        run.stdout
            .contains("WARNING: these recommended DNS entries are not set:")
    );
    assert!(
        run.stdout.contains("_dmarc.recommended.cmdns.test."),
        "{}",
        run.stdout
    );
    assert!(
        !run.stderr.contains("Please set required"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("Great!"), "{}", run.stderr);

    // A wrong MX and another DKIM key: exit 1 naming exactly those two, with the unsplit
    // DKIM alternative.
    let run = lab.dns(&ini("wrong"), &root, &[]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(
        run.stderr
            .contains("Please set required DNS entries at your DNS provider:")
    );
    let required: Vec<&str> = run.stdout.split("\n\n").next().unwrap().lines().collect();
    assert_eq!(
        required,
        [
            zone::line(
                &format!("{}.", name("wrong")),
                "MX",
                &format!("10 {}.", name("wrong"))
            ),
            zone::dkim_line(&name("wrong"), &dkim.chunked()),
        ]
    );
    assert!(run.stdout.contains("you can try this one:"));
    assert!(
        run.stdout
            .contains(&zone::dkim_line(&name("wrong"), &dkim.unsplit()))
    );
    assert!(!run.stdout.contains("WARNING"), "{}", run.stdout);

    // Only an address: the required records are listed, then the recommended ones.
    let run = lab.dns(&ini("missing"), &root, &[]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    for record in [
        "MX     10 missing",
        "www.missing",
        "opendkim._domainkey.missing",
    ] {
        assert!(run.stdout.contains(record), "{record}: {}", run.stdout);
    }
    assert!(
        run.stdout
            .contains("WARNING: these recommended DNS entries are not set:")
    );

    // No address at all: the pre-check stops.
    let run = lab.dns(&ini("noaddress"), &root, &[]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert_eq!(
        run.stdout,
        "Missing A and/or AAAA DNS records for noaddress.cmdns.test!\n"
    );
    // `cmdeploy run` makes the same check first and stops before planning anything.
    let noaddress = ini("noaddress");
    let deploy = cmdeploy_via(
        &["ip", "netns", "exec", &lab.client],
        &[
            "run",
            "--ssh-host",
            "@local",
            "--dry-run",
            "--config",
            noaddress.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(deploy.code, Some(1), "{}", deploy.all());
    assert_eq!(
        deploy.stderr,
        "Missing A and/or AAAA DNS records for noaddress.cmdns.test!\n"
    );
    assert_eq!(deploy.stdout, "", "nothing planned or changed");

    // ACME mode: the CNAMEs are required; then the account URL (no acmetool in this root).
    let acme_ini = |case: &str| {
        let path = work.path().join(format!("{case}-acme.ini"));
        std::fs::write(&path, format!("[params]\nmail_domain = {}\n", name(case))).unwrap();
        path
    };
    let run = lab.dns(&acme_ini("missing"), &root, &[]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert_eq!(
        run.stdout,
        "Missing MTA-STS CNAME record:\nmta-sts.missing.cmdns.test.   CNAME  missing.cmdns.test.\n"
    );
    let run = lab.dns(&acme_ini("acme"), &root, &[]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(
        run.stderr
            .contains("could not get letsencrypt account url, please run 'cmdeploy run'")
    );

    // No DKIM key under the root.
    let empty: PathBuf = work.path().join("empty-root");
    std::fs::create_dir_all(&empty).unwrap();
    let run = lab.dns(&ini("complete"), &empty, &[]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(
        run.stderr
            .contains("could not determine dkim_entry, please run 'cmdeploy run'")
    );
    assert!(run.stderr.contains("opendkim.private"), "{}", run.stderr);
}
