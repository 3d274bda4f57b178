//! The container path: `cargo xtask image` builds the relay's image (on a Docker engine the test
//! starts itself, base image imported from the cached Debian rootfs), `cmdeploy compose` writes the
//! compose file for the default settings, docker-compose brings it up with host networking, every
//! health check passes (iroh-relay's too: the image always carries it), and
//! two Delta Chat accounts exchange encrypted messages through it. Then `down` and `up` again: same
//! keys and secrets, the stored mail still there. Also: the image holds no deployment value. Slow:
//! needs root, docker.io and docker-compose (`scripts/setup-debian`); ignored unless run with
//! `--include-ignored`. Binds the relay's ports on this machine, and fails first, clearly, when one
//! is taken.

#![allow(clippy::unwrap_used)] // a test fails by panicking

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::*;
use xtask::docker::Dockerd;

const DOMAIN: &str = "_chat.example.org";
const TAG: &str = "chatmail-relay:test";
const BASE: &str = "chatmail-test-base:bookworm";
const PROJECT: &str = "cmdeploy-test";
/// The relay's public ports, bound on this machine by the host-networked containers.
const PORTS: [u16; 9] = [25, 53, 80, 143, 443, 465, 587, 993, 3340];
/// Files made once that must survive recreating the containers.
const SECRETS: [(&str, &str); 3] = [
    ("opendkim", "/etc/dkimkeys/opendkim.private"),
    ("dovecot", "/etc/ssl/private/mailserver.key"),
    ("turnserver", "/etc/chatmail-turn/secret"),
];

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn ok(mut command: Command) -> String {
    let output = command.output().unwrap();
    assert!(output.status.success(), "{command:?}:\n{}", text(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Fails clearly when another program holds one of the relay's ports.
fn assert_ports_free() {
    let listening = ok({
        let mut ss = Command::new("ss");
        ss.args(["-Hltun"]);
        ss
    });
    for line in listening.lines() {
        let Some(local) = line.split_whitespace().nth(4) else {
            continue;
        };
        let port: Option<u16> = local.rsplit(':').next().and_then(|p| p.parse().ok());
        if let Some(port) = port.filter(|p| PORTS.contains(p)) {
            panic!(
                "port {port} is in use on this machine ({line}); the relay's containers need it"
            );
        }
    }
}

struct Project<'d> {
    dockerd: &'d Dockerd,
    dir: tempfile::TempDir,
}

impl Project<'_> {
    fn compose(&self, args: &[&str]) -> Command {
        let mut command = Command::new("docker-compose");
        command
            .args(["--project-name", PROJECT, "--file"])
            .arg(self.dir.path().join("compose.yml"))
            .args(args)
            .env("DOCKER_HOST", &self.dockerd.host);
        command
    }

    /// Runs `argv` in the running container of `service`.
    fn exec(&self, service: &str, argv: &[&str]) -> String {
        let mut args = vec!["exec", "-T", service];
        args.extend(argv);
        ok(self.compose(&args))
    }

    fn containers(&self) -> Vec<String> {
        ok(self.compose(&["ps", "--all", "--quiet"]))
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Waits until init exited 0 and every other container is running and, where it has a
    /// health check, healthy.
    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let states: Vec<String> = self
                .containers()
                .iter()
                .map(|id| {
                    let format = "{{.Name}} {{.State.Status}} {{.State.ExitCode}} \
                                  {{if .State.Health}}{{.State.Health.Status}}{{end}}";
                    ok(self.dockerd.docker(&["inspect", "--format", format, id]))
                        .trim()
                        .to_owned()
                })
                .collect();
            let ready = |state: &String| {
                let words: Vec<&str> = state.split_whitespace().collect();
                match words[..] {
                    [name, "exited", "0"] => name.contains("_init_"),
                    [_, "running", _] => true,
                    [_, "running", _, "healthy"] => true,
                    _ => false,
                }
            };
            if states.len() > 2 && states.iter().all(ready) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not all containers became healthy:\n{}\n{}",
                states.join("\n"),
                text(&self.compose(&["logs", "--tail", "30"]).output().unwrap())
            );
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    fn secrets(&self) -> Vec<String> {
        SECRETS
            .iter()
            .map(|(service, path)| self.exec(service, &["cat", path]))
            .collect()
    }
}

/// The iroh-relay container is healthy and its server answers its captive-portal check on
/// port 3340 (the host's network).
fn assert_iroh_relay_serves(project: &Project<'_>) {
    let id = ok(project.compose(&["ps", "--quiet", "iroh-relay"]));
    let health =
        ok(project
            .dockerd
            .docker(&["inspect", "--format", "{{.State.Health.Status}}", id.trim()]));
    assert_eq!(health.trim(), "healthy");
    let mut stream = std::net::TcpStream::connect("127.0.0.1:3340").unwrap();
    stream
        .write_all(b"GET /generate_204 HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
}

impl Drop for Project<'_> {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "--volumes"]).output();
    }
}

#[test]
#[ignore = "slow: root, the tests' own dockerd and the relay image"]
fn relay_runs_from_its_image_and_keeps_its_state_across_recreation() {
    assert_ports_free();
    build_relay_programs();
    let dockerd = Dockerd::start().unwrap();
    dockerd.import_base(&tarball(), BASE).unwrap();
    let binaries = Path::new(env!("CARGO_BIN_EXE_cmdeploy")).parent().unwrap();
    let engine = xtask::image::Engine {
        program: "/usr/bin/docker".into(),
        env: vec![("DOCKER_HOST".into(), dockerd.host.clone())],
    };
    xtask::image::build(&xtask::image::Options {
        engine,
        base: BASE.into(),
        tag: TAG.into(),
        binaries: Some(binaries.to_owned()),
    })
    .unwrap();

    // Nothing of a deployment is in the image: no settings, keys, certificates or domain.
    let inspect = ok(dockerd.docker(&["image", "inspect", TAG]));
    for label in ["version", "revision", "source"] {
        assert!(
            inspect.contains(&format!("\"org.opencontainers.image.{label}\"")),
            "{inspect}"
        );
    }
    assert!(!inspect.contains(DOMAIN), "{inspect}");
    let files = ok(dockerd.docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        TAG,
        "-c",
        "ls /etc/dkimkeys /etc/chatmail-turn /var/lib/chatmail-tls /etc/ssl/private \
         /usr/local/lib/chatmaild 2>&1; cat /etc/mailname 2>&1; true",
    ]));
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

    let project = Project {
        dockerd: &dockerd,
        dir: tempfile::tempdir().unwrap(),
    };
    let _ = project.compose(&["down", "--volumes"]).output();
    let ini = config_file(
        project.dir.path(),
        &format!("mail_domain = {DOMAIN}\nmax_load_1m = 1000\n"),
    );
    let compose_file = project.dir.path().join("compose.yml");
    let run = cmdeploy(
        &[
            "compose",
            "--config",
            ini.to_str().unwrap(),
            "--image",
            TAG,
            "--output",
            compose_file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(run.ok);
    ok(project.compose(&["up", "--detach"]));
    project.wait_healthy();
    assert_iroh_relay_serves(&project);
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
    let secrets = project.secrets();

    // Every container stops on SIGTERM; none is killed when the grace period ends.
    ok(project.compose(&["stop", "--timeout", "10"]));
    for id in project.containers() {
        let format = "{{.Name}} {{.State.ExitCode}} {{.State.OOMKilled}}";
        let state = ok(project
            .dockerd
            .docker(&["inspect", "--format", format, &id]));
        assert!(
            !state.contains(" 137 "),
            "killed after the grace period instead of stopping on SIGTERM: {state}"
        );
    }
    ok(project.compose(&["down"]));
    ok(project.compose(&["up", "--detach"]));
    project.wait_healthy();
    assert_eq!(project.secrets(), secrets, "no secret was made again");
    assert_eq!(project.exec("dovecot", &search), found, "the mail is kept");
    let init_log = ok(project.compose(&["logs", "--no-color", "init"]));
    assert!(!init_log.contains("openssl"), "{init_log}");
    assert!(!init_log.contains("opendkim-genkey"), "{init_log}");
    delta_chat_exchange("127.0.0.1", DOMAIN);
}
