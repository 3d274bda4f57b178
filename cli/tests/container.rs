//! The container path as the README gives it: `cargo xtask image` builds the relay's image (on a
//! Docker engine the test starts itself; the default base, absent there, comes from the cached
//! Debian rootfs), `cmdeploy init` and `cmdeploy compose` write the settings and the compose file,
//! `docker-compose up -d` brings it up with host networking, every health check passes (within
//! 15 s on fresh volumes, 8 s on existing ones, where each container's time goes printed;
//! iroh-relay's too: the image always carries it), every container on a read-only root with
//! only its own volumes, and two Delta Chat accounts
//! exchange encrypted messages through it. Then `down` and `up` again: same keys and secrets, the stored mail still there. Also: the image holds no
//! deployment value and no private key. Slow: needs root, docker.io and docker-compose
//! (`scripts/setup-debian`); ignored unless run with `--include-ignored`. Binds the relay's ports
//! on this machine, and fails first, clearly, when one is taken.

#![allow(clippy::unwrap_used)] // a test fails by panicking

mod support;

use std::time::Duration;

use support::containers::{DOMAIN, Project, assert_ports_free, build_image, ok};
use support::*;
use xtask::docker::Dockerd;

const TAG: &str = xtask::image::DEFAULT_TAG;
/// Files made once that must survive recreating the containers.
const SECRETS: [(&str, &str); 3] = [
    ("opendkim", "/etc/dkimkeys/opendkim.private"),
    ("dovecot", "/etc/ssl/private/mailserver.key"),
    ("turnserver", "/etc/chatmail-turn/secret"),
];

fn read_secrets(project: &Project) -> Vec<String> {
    SECRETS
        .iter()
        .map(|(service, path)| project.exec(service, &["cat", path]))
        .collect()
}

#[test]
#[ignore = "slow: root, the tests' own dockerd and the relay image"]
fn relay_runs_from_its_image_and_keeps_its_state_across_recreation() {
    assert_ports_free();
    let dockerd = Dockerd::start().unwrap();
    // The README's commands, with its defaults (engine found on PATH, base debian:bookworm,
    // imported from the cached rootfs when absent, tag chatmail-relay:latest); only the
    // binaries are this test build's instead of a release build.
    build_image(&[], &[("DOCKER_HOST", &dockerd.host)]);

    // Nothing of a deployment is in the image: no settings, keys, certificates or domain.
    // Every layer earns its place: none holds a copy of the packages stage that a later one
    // deletes.
    let history = ok(dockerd.docker(&["history", "--no-trunc", "--format", "{{.CreatedBy}}", TAG]));
    assert!(
        !history
            .lines()
            .any(|l| l.contains("COPY") && l.contains("cmdeploy-packages")),
        "{history}"
    );
    let size = ok(dockerd.docker(&["image", "inspect", "--format", "{{.Size}}", TAG]));
    let size: f64 = size.trim().parse().unwrap();
    eprintln!("image size: {:.0} MB", size / 1e6);
    let inspect = ok(dockerd.docker(&["image", "inspect", TAG]));
    for label in ["version", "revision", "source"] {
        assert!(
            inspect.contains(&format!("\"org.opencontainers.image.{label}\"")),
            "{inspect}"
        );
    }
    assert!(!inspect.contains(DOMAIN), "{inspect}");
    let in_image = |script: &str| {
        ok(dockerd.docker(&["run", "--rm", "--entrypoint", "sh", TAG, "-c", script]))
    };
    let files = in_image(
        "ls /etc/dkimkeys /etc/chatmail-turn /var/lib/chatmail-tls /etc/ssl/private \
         /usr/local/lib/chatmaild 2>&1; cat /etc/mailname 2>&1; true",
    );
    for secret in [
        "opendkim.private",
        "secret",
        "mailserver.key",
        "chatmail.ini",
        DOMAIN,
    ] {
        assert!(
            !files.contains(secret),
            "the image holds {secret}:\n{files}"
        );
    }
    // No private key at all, in particular none a package script made at build time (the
    // snakeoil pair, Dovecot's): it would be the same in every deployment.
    let keys = in_image(
        "grep -rlsE -- '-----BEGIN ([A-Z]+ )?PRIVATE KEY' /etc /var /usr/local /root; true",
    );
    assert_eq!(keys, "", "private keys in the image");

    let compose = xtask::image::Engine {
        program: "docker-compose".into(),
        env: vec![("DOCKER_HOST".into(), dockerd.host.clone())],
    };
    let project = Project::new("relay", dockerd.engine(), compose);
    let fresh = project.up_healthy();
    eprintln!(
        "healthy after up -d on fresh volumes: {:.1} s",
        fresh.as_secs_f64()
    );
    // The targets: every daemon passes its first health check (3 s after its start), which
    // leaves room for one missed check on existing volumes and several on fresh ones.
    assert!(
        fresh <= Duration::from_secs(15),
        "{fresh:?} on fresh volumes"
    );
    // Docker shows the dropped set as given.
    project.assert_least_privilege("{{json .HostConfig.CapDrop}}", |caps| caps == r#"["ALL"]"#);
    // The health probes go on every 3 s, and leave no line in the daemons' logs.
    let logs = || {
        let services = [
            "postfix",
            "dovecot",
            "turnserver",
            "doveauth",
            "chatmail-metadata",
        ];
        let mut args = vec!["logs", "--no-color"];
        args.extend(services);
        ok(project.compose(&args)).lines().count()
    };
    let before = logs();
    std::thread::sleep(Duration::from_secs(11));
    assert_eq!(
        logs(),
        before,
        "{}",
        ok(project.compose(&["logs", "--tail", "10"]))
    );
    project.assert_iroh_relay_serves();
    delta_chat_exchange("127.0.0.1", DOMAIN);

    // A message stored now must outlive the containers.
    let mailboxes = format!("/home/vmail/mail/{DOMAIN}");
    let listing = project.exec("dovecot", &["ls", &mailboxes]);
    let user = listing
        .lines()
        .find(|l| l.contains('@'))
        .unwrap()
        .to_owned();
    let save =
        format!("printf 'Subject: kept\\n\\nstored before recreation\\n' | doveadm save -u {user}");
    project.exec("dovecot", &["sh", "-c", &save]);
    let search = [
        "doveadm", "search", "-u", &user, "mailbox", "INBOX", "subject", "kept",
    ];
    let found = project.exec("dovecot", &search);
    assert!(!found.trim().is_empty(), "the saved message is found");
    let secrets = read_secrets(&project);

    // Every container stops on SIGTERM; none is killed when the grace period ends.
    let stopped = project.stop();
    eprintln!("stopped in {:.1} s", stopped.as_secs_f64());
    ok(project.compose(&["down"]));
    let existing = project.up_healthy();
    eprintln!(
        "healthy after up -d on existing volumes: {:.1} s",
        existing.as_secs_f64()
    );
    assert!(
        existing <= Duration::from_secs(8),
        "{existing:?} on existing volumes"
    );
    assert_eq!(read_secrets(&project), secrets, "no secret was made again");
    assert_eq!(project.exec("dovecot", &search), found, "the mail is kept");
    let init_log = ok(project.compose(&["logs", "--no-color", "init"]));
    assert!(!init_log.contains("openssl"), "{init_log}");
    assert!(!init_log.contains("opendkim-genkey"), "{init_log}");
    // Same settings, same image, secrets in place: init's record says it has nothing to do.
    assert!(
        init_log.contains("configured with these settings and this image already"),
        "{init_log}"
    );
    delta_chat_exchange("127.0.0.1", DOMAIN);
}
