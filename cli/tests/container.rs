//! The container path as the README gives it: `cargo xtask image` builds the relay's image (on a
//! Docker engine the test starts itself; the default base, absent there, comes from the cached
//! Debian rootfs), `cmdeploy init` and `cmdeploy compose` write the settings and the compose file,
//! `docker-compose up -d` brings it up with host networking, every health check passes (the time
//! is printed; iroh-relay's too: the image always carries it), and two Delta Chat accounts
//! exchange encrypted messages through it. Then `down` and `up` again: same keys and secrets, the stored mail still there. Also: the image holds no
//! deployment value and no private key. Slow: needs root, docker.io and docker-compose
//! (`scripts/setup-debian`); ignored unless run with `--include-ignored`. Binds the relay's ports
//! on this machine, and fails first, clearly, when one is taken.

#![allow(clippy::unwrap_used)] // a test fails by panicking

mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::*;
use xtask::docker::Dockerd;

const DOMAIN: &str = "_chat.example.org";
const TAG: &str = xtask::image::DEFAULT_TAG;
/// The relay's public ports, bound on this machine by the host-networked containers.
const PORTS: [u16; 9] = [25, 53, 80, 143, 443, 465, 587, 993, 3340];
/// Files made once that must survive recreating the containers.
const SECRETS: [(&str, &str); 3] = [
    ("opendkim", "/etc/dkimkeys/opendkim.private"),
    ("dovecot", "/etc/ssl/private/mailserver.key"),
    ("turnserver", "/etc/chatmail-turn/secret"),
];

fn ini_path(project: &Project) -> PathBuf {
    project.dir.join("chatmail.ini")
}

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

/// The compose project: a directory holding `chatmail.ini` and `compose.yml`, where the
/// README's `docker-compose` commands run (the project is named after the directory).
struct Project<'d> {
    dockerd: &'d Dockerd,
    dir: PathBuf,
}

impl Project<'_> {
    fn compose(&self, args: &[&str]) -> Command {
        let mut command = Command::new("docker-compose");
        command
            .args(args)
            .current_dir(&self.dir)
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

    /// `docker inspect --format FORMAT` of every container, one line each.
    fn inspect(&self, format: &str) -> Vec<String> {
        let ids = self.containers();
        let mut args = vec!["inspect", "--format", format];
        args.extend(ids.iter().map(String::as_str));
        ok(self.dockerd.docker(&args))
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// `docker-compose up -d`, then waits until init exited 0 and every other container is
    /// running and, where it has a health check, healthy; returns the time that took.
    fn up_healthy(&self) -> Duration {
        let start = Instant::now();
        let wall = seconds_of_day(std::time::SystemTime::now());
        ok(self.compose(&["up", "-d"]));
        let deadline = start + Duration::from_secs(180);
        loop {
            let format = "{{.Name}} {{.State.Status}} {{.State.ExitCode}} \
                          {{if .State.Health}}{{.State.Health.Status}}{{end}}";
            let states = self.inspect(format);
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
                let elapsed = start.elapsed();
                self.print_timeline(wall);
                return elapsed;
            }
            assert!(
                Instant::now() < deadline,
                "not all containers became healthy:\n{}\n{}",
                states.join("\n"),
                text(&self.compose(&["logs", "--tail", "30"]).output().unwrap())
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Where the time went: for each container, seconds after `up -d` (`wall`, seconds of the
    /// day) at which it started, exited (init) and first passed its health check.
    fn print_timeline(&self, wall: f64) {
        let format = "{{.Name}} {{.State.StartedAt}} {{.State.FinishedAt}} \
                      {{if .State.Health}}{{range .State.Health.Log}}{{.ExitCode}}@{{json .Start}} {{end}}{{end}}";
        let at = |stamp: &str| stamp_seconds(stamp).map(|s| format!("{:5.1}", s - wall));
        for line in self.inspect(format) {
            let words: Vec<&str> = line.split_whitespace().collect();
            let [name, started, finished, checks @ ..] = &words[..] else {
                continue;
            };
            let passed = checks.iter().find_map(|c| c.strip_prefix("0@"));
            eprintln!(
                "  {name:40} started {} exited {} healthy {}",
                at(started).unwrap_or_default(),
                at(finished).unwrap_or("    -".into()),
                passed.and_then(at).unwrap_or("    -".into()),
            );
        }
    }

    fn secrets(&self) -> Vec<String> {
        SECRETS
            .iter()
            .map(|(service, path)| self.exec(service, &["cat", path]))
            .collect()
    }
}

/// Seconds since midnight UTC of `time`.
fn seconds_of_day(time: std::time::SystemTime) -> f64 {
    let since = time.duration_since(std::time::UNIX_EPOCH).unwrap();
    since.as_secs_f64() % 86_400.0
}

/// Seconds since midnight of Docker's `2026-12-04T08:06:07.123456789Z` (quoted or not);
/// `None` for the zero time of a container that has not exited.
fn stamp_seconds(stamp: &str) -> Option<f64> {
    if stamp.starts_with("0001-") {
        return None;
    }
    let time = stamp
        .trim_matches('"')
        .split_once('T')?
        .1
        .trim_end_matches('Z');
    let mut parts = time.split(':');
    let (hours, minutes, seconds) = (parts.next()?, parts.next()?, parts.next()?);
    let hours: f64 = hours.parse().ok()?;
    let minutes: f64 = minutes.parse().ok()?;
    let seconds: f64 = seconds.parse().ok()?;
    Some(hours * 3600.0 + minutes * 60.0 + seconds)
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

/// Every container drops all capabilities but those it declares, gains no privileges, runs on
/// a read-only root, and mounts only its component's volumes and those of the components it
/// uses, the secrets only where they are used.
fn assert_least_privilege(project: &Project) {
    let format = "{{.Name}} {{json .HostConfig.CapDrop}} {{json .HostConfig.SecurityOpt}} \
                  {{.HostConfig.ReadonlyRootfs}} {{range .Mounts}}{{.Name}},{{end}}";
    let containers = project.inspect(format);
    // Volume name (after the project's prefix; the mailboxes' is followed by the domain) and
    // the services allowed to mount it.
    let chatmaild: &[&str] = &[
        "init",
        "dovecot",
        "doveauth",
        "lastlogin",
        "chatmail-metadata",
        "cron",
    ];
    let allowed: [(&str, &[&str]); 7] = [
        ("etc-dkimkeys", &["init", "opendkim"]),
        ("etc-chatmail-turn", &["init", "turnserver"]),
        ("home-vmail-mail-", chatmaild),
        ("run-doveauth", chatmaild),
        ("run-chatmail-metadata", chatmaild),
        ("var-spool-postfix", &["init", "postfix", "dovecot"]),
        (
            "var-spool-postfix-opendkim",
            &["init", "postfix", "opendkim"],
        ),
    ];
    let mut seen = Vec::new();
    for line in &containers {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [name, cap_drop, security, read_only, mounts] = words[..] else {
            panic!("unexpected inspect line {line:?}");
        };
        // `relay_opendkim_1`: the service between the project and the number.
        let service = name.split_once('_').unwrap().1.rsplit_once('_').unwrap().0;
        seen.push(service.to_owned());
        assert_eq!(cap_drop, r#"["ALL"]"#, "{line}");
        assert!(security.contains("no-new-privileges:true"), "{line}");
        assert_eq!(read_only, "true", "{line}");
        let volumes = mounts
            .split(',')
            .filter_map(|m| m.split_once('_').map(|(_, v)| v));
        for volume in volumes {
            let rule = allowed
                .iter()
                .find(|(v, _)| volume == *v || (v.ends_with('-') && volume.starts_with(v)));
            if let Some((_, services)) = rule {
                assert!(services.contains(&service), "{service} mounts {volume}");
            }
        }
    }
    for service in [
        "opendkim",
        "filtermail",
        "filtermail-incoming",
        "fcgiwrap",
        "nginx",
    ] {
        assert!(
            seen.iter().any(|s| s == service),
            "no {service} in {seen:?}"
        );
    }
    let nginx = containers.iter().find(|l| l.contains("_nginx_")).unwrap();
    assert!(nginx.contains("var-lib-chatmail-tls"), "{nginx}");
}

#[test]
#[ignore = "slow: root, the tests' own dockerd and the relay image"]
fn relay_runs_from_its_image_and_keeps_its_state_across_recreation() {
    assert_ports_free();
    build_relay_programs();
    let dockerd = Dockerd::start().unwrap();
    // The README's commands, with its defaults (engine found on PATH, base debian:bookworm,
    // imported from the cached rootfs when absent, tag chatmail-relay:latest); only the
    // binaries are this test build's instead of a release build.
    let binaries = Path::new(env!("CARGO_BIN_EXE_cmdeploy")).parent().unwrap();
    let built = ok({
        let mut image = xtask::cargo();
        image
            .args(["xtask", "image", "--binaries"])
            .arg(binaries)
            .env("DOCKER_HOST", &dockerd.host);
        image
    });
    assert!(built.contains(&format!("built {TAG}")), "{built}");

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

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/container-test/relay");
    std::fs::create_dir_all(&dir).unwrap();
    let project = Project {
        dockerd: &dockerd,
        dir,
    };
    let _ = project.compose(&["down", "--volumes"]).output();
    let _ = std::fs::remove_file(ini_path(&project));
    let init = cmdeploy(
        &[
            "init",
            DOMAIN,
            "--config",
            ini_path(&project).to_str().unwrap(),
        ],
        &[],
    );
    assert!(init.ok);
    // This machine is shared with builds: accounts are made at any load.
    let mut ini = std::fs::read_to_string(ini_path(&project)).unwrap();
    ini.push_str("max_load_1m = 1000\n");
    std::fs::write(ini_path(&project), ini).unwrap();
    let compose_file = project.dir.join("compose.yml");
    let compose = cmdeploy(
        &[
            "compose",
            "--config",
            ini_path(&project).to_str().unwrap(),
            "-o",
            compose_file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(compose.ok);
    let fresh = project.up_healthy();
    eprintln!(
        "healthy after up -d on fresh volumes: {:.1} s",
        fresh.as_secs_f64()
    );
    assert_least_privilege(&project);
    // The health probes go on every 2 s, and leave no line in the daemons' logs.
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
    let stopping = Instant::now();
    ok(project.compose(&["stop", "--timeout", "10"]));
    eprintln!("stopped in {:.1} s", stopping.elapsed().as_secs_f64());
    for state in project.inspect("{{.Name}} {{.State.ExitCode}} {{.State.OOMKilled}}") {
        assert!(
            !state.contains(" 137 "),
            "killed after the grace period instead of stopping on SIGTERM: {state}"
        );
    }
    ok(project.compose(&["down"]));
    let existing = project.up_healthy();
    eprintln!(
        "healthy after up -d on existing volumes: {:.1} s",
        existing.as_secs_f64()
    );
    assert_eq!(project.secrets(), secrets, "no secret was made again");
    assert_eq!(project.exec("dovecot", &search), found, "the mail is kept");
    let init_log = ok(project.compose(&["logs", "--no-color", "init"]));
    assert!(!init_log.contains("openssl"), "{init_log}");
    assert!(!init_log.contains("opendkim-genkey"), "{init_log}");
    delta_chat_exchange("127.0.0.1", DOMAIN);
}
