//! The container tests' shared steps, whatever the engine (docker with docker-compose, podman
//! with podman-compose): the README's `cmdeploy init` and `cmdeploy compose` in a project
//! directory, `up -d` until every container is running and healthy, the engine's view of the
//! project's containers (by the `com.docker.compose.*` labels both compose programs set), the
//! iroh relay's answer, a stop that kills nothing.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use xtask::image::Engine;

use super::cmdeploy;

/// The relay's domain in the container tests.
pub const DOMAIN: &str = "_chat.example.org";
/// The relay's public ports, bound on this machine by the host-networked containers.
pub const PORTS: [u16; 9] = [25, 53, 80, 143, 443, 465, 587, 993, 3340];

/// A command's standard output and error.
pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `command`, fails the test unless it succeeds, returns its standard output.
pub fn ok(mut command: Command) -> String {
    let output = command.output().unwrap();
    assert!(output.status.success(), "{command:?}:\n{}", text(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Fails clearly when another program holds one of the relay's ports.
pub fn assert_ports_free() {
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

/// `cargo xtask image` with the README's defaults but this test build's programs (instead of
/// a release build), with `engine_args` (e.g. `--engine podman`) and `env` (e.g. the tests'
/// `DOCKER_HOST`); returns its output, which says the image was built.
pub fn build_image(engine_args: &[&str], env: &[(&str, &str)]) -> String {
    super::build_relay_programs();
    let binaries = Path::new(env!("CARGO_BIN_EXE_cmdeploy")).parent().unwrap();
    let built = ok({
        let mut image = xtask::cargo();
        image
            .args(["xtask", "image"])
            .args(engine_args)
            .arg("--binaries")
            .arg(binaries)
            .envs(env.iter().copied());
        image
    });
    let tag = xtask::image::DEFAULT_TAG;
    assert!(built.contains(&format!("built {tag}")), "{built}");
    built
}

/// The compose project: a directory holding `chatmail.ini` and `compose.yml`, where the
/// README's compose commands run (the project is named after the directory), with the engine
/// that runs its containers and the compose program that drives it.
pub struct Project {
    pub engine: Engine,
    compose: Engine,
    pub dir: PathBuf,
    /// Whether the test runs the health checks itself (`healthcheck run`), as the scheduler
    /// the engine lacks here would: podman starts them from systemd timers.
    pub run_health_checks: bool,
}

impl Project {
    /// The project `target/container-test/<name>`, with what a previous run left taken down,
    /// `chatmail.ini` from `cmdeploy init` (plus accounts at any load of this shared machine)
    /// and `compose.yml` from `cmdeploy compose`, as the README has them.
    pub fn new(name: &str, engine: Engine, compose: Engine) -> Project {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/container-test")
            .join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let project = Project {
            engine,
            compose,
            dir,
            run_health_checks: false,
        };
        let _ = project.compose(&["down", "--volumes"]).output();
        let ini = project.ini();
        let _ = std::fs::remove_file(&ini);
        let ini = ini.to_str().unwrap();
        assert!(cmdeploy(&["init", DOMAIN, "--config", ini], &[]).ok);
        let mut settings = std::fs::read_to_string(ini).unwrap();
        settings.push_str("max_load_1m = 1000\n");
        std::fs::write(ini, settings).unwrap();
        let compose_file = project.dir.join("compose.yml");
        let compose_file = compose_file.to_str().unwrap();
        assert!(cmdeploy(&["compose", "--config", ini, "-o", compose_file], &[]).ok);
        project
    }

    pub fn ini(&self) -> PathBuf {
        self.dir.join("chatmail.ini")
    }

    /// The compose program with `args`, in the project's directory.
    pub fn compose(&self, args: &[&str]) -> Command {
        let mut command = self.compose.command(args);
        command.current_dir(&self.dir);
        command
    }

    /// Runs `argv` in the running container of `service`.
    pub fn exec(&self, service: &str, argv: &[&str]) -> String {
        let mut args = vec!["exec", "-T", service];
        args.extend(argv);
        ok(self.compose(&args))
    }

    fn label(&self) -> String {
        let name = self.dir.file_name().unwrap().to_string_lossy();
        format!("label=com.docker.compose.project={name}")
    }

    /// The ids of the project's containers, running or not.
    pub fn containers(&self) -> Vec<String> {
        let ps = self
            .engine
            .command(&["ps", "--all", "--quiet", "--filter", &self.label()]);
        ok(ps).lines().map(str::to_owned).collect()
    }

    /// The id of the container of `service`.
    pub fn container(&self, service: &str) -> String {
        let service = format!("label=com.docker.compose.service={service}");
        let args = [
            "ps",
            "--all",
            "--quiet",
            "--filter",
            &self.label(),
            "--filter",
        ];
        let mut ps = self.engine.command(&args);
        ps.arg(&service);
        let id = ok(ps);
        assert_eq!(id.lines().count(), 1, "{service}: {id}");
        id.trim().to_owned()
    }

    /// `container inspect --format FORMAT` of every container, one line each.
    pub fn inspect(&self, format: &str) -> Vec<String> {
        let ids = self.containers();
        let mut args = vec!["container", "inspect", "--format", format];
        args.extend(ids.iter().map(String::as_str));
        ok(self.engine.command(&args))
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// `up -d`, then waits until init exited 0 and every other container is running and,
    /// where it has a health check, healthy; returns the time that took.
    pub fn up_healthy(&self) -> Duration {
        let start = Instant::now();
        let wall = seconds_of_day(std::time::SystemTime::now());
        ok(self.compose(&["up", "-d"]));
        let deadline = start + Duration::from_secs(180);
        loop {
            let format = "{{.Name}} {{.State.Status}} {{.State.ExitCode}} \
                          {{if .State.Health}}{{.State.Health.Status}}{{end}}";
            let states = self.inspect(format);
            let mut ready = true;
            let mut checks = Vec::new();
            for state in &states {
                let words: Vec<&str> = state.split_whitespace().collect();
                match words[..] {
                    [name, "exited", "0"] if name.contains("_init_") => {}
                    [_, "running", _] | [_, "running", _, "healthy"] => {}
                    [name, "running", _, _] if self.run_health_checks => {
                        let name = name.trim_start_matches('/');
                        checks.push(self.engine.command(&["healthcheck", "run", name]).spawn());
                        ready = false;
                    }
                    _ => ready = false,
                }
            }
            for check in checks {
                let _ = check.unwrap().wait();
            }
            if states.len() > 2 && ready {
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
        let format = "{{.Name}} {{json .State.StartedAt}} {{json .State.FinishedAt}} \
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

    /// Every container drops all capabilities but those it declares (what the engine shows
    /// with the template `caps`, which `dropped_all` judges), gains no privileges, runs on a
    /// read-only root, and mounts only its component's volumes and those of the components it
    /// uses, the secrets only where they are used.
    pub fn assert_least_privilege(&self, caps: &str, dropped_all: impl Fn(&str) -> bool) {
        let rest = "{{json .HostConfig.SecurityOpt}} {{.HostConfig.ReadonlyRootfs}} \
                    {{range .Mounts}}{{.Name}},{{end}}";
        let format = ["{{.Name}}", caps, rest].join(" ");
        let containers = self.inspect(&format);
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
            let [name, caps, security, read_only, mounts] = words[..] else {
                panic!("unexpected inspect line {line:?}");
            };
            // `relay_opendkim_1` (docker: `/relay_opendkim_1`): the service between the project
            // and the number.
            let service = name.split_once('_').unwrap().1.rsplit_once('_').unwrap().0;
            seen.push(service.to_owned());
            assert!(dropped_all(caps), "{line}");
            // docker: `no-new-privileges:true`; podman: `no-new-privileges`.
            assert!(security.contains("no-new-privileges"), "{line}");
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

    /// `stop`: every container stops on SIGTERM, none is killed when the grace period ends;
    /// returns the time it took.
    pub fn stop(&self) -> Duration {
        let stopping = Instant::now();
        let wall = seconds_of_day(std::time::SystemTime::now());
        ok(self.compose(&["stop", "--timeout", "10"]));
        let took = stopping.elapsed();
        let format = "{{.Name}} {{.State.Status}} {{.State.ExitCode}} {{json .State.FinishedAt}}";
        for state in self.inspect(format) {
            assert!(
                state.contains(" exited "),
                "still running after stop: {state}"
            );
            let (state, finished) = state.rsplit_once(' ').unwrap();
            assert!(
                !state.ends_with(" 137"),
                "killed after the grace period instead of stopping on SIGTERM: {state}"
            );
            // Where the time went: when each container exited, after `stop` began.
            if let Some(at) = stamp_seconds(finished) {
                eprintln!("  {state:48} exited {:5.1}", at - wall);
            }
        }
        took
    }

    /// The iroh-relay container is healthy and its server answers its captive-portal check on
    /// port 3340 (the host's network).
    pub fn assert_iroh_relay_serves(&self) {
        let id = self.container("iroh-relay");
        let health =
            ok(self
                .engine
                .command(&["inspect", "--format", "{{.State.Health.Status}}", &id]));
        assert_eq!(health.trim(), "healthy");
        let mut stream = std::net::TcpStream::connect("127.0.0.1:3340").unwrap();
        stream
            .write_all(b"GET /generate_204 HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "--volumes"]).output();
    }
}

/// Seconds since midnight UTC of `time`.
fn seconds_of_day(time: std::time::SystemTime) -> f64 {
    let since = time.duration_since(std::time::UNIX_EPOCH).unwrap();
    since.as_secs_f64() % 86_400.0
}

/// Seconds since midnight of an engine's `2026-12-04T08:06:07.123456789Z` (quoted or not);
/// `None` for the zero time of a container that has not exited.
fn stamp_seconds(stamp: &str) -> Option<f64> {
    let stamp = stamp.trim_matches('"');
    if stamp.starts_with("0001-") {
        return None;
    }
    let time = stamp.split_once('T')?.1.trim_end_matches('Z');
    let mut parts = time.split(':');
    let (hours, minutes, seconds) = (parts.next()?, parts.next()?, parts.next()?);
    let hours: f64 = hours.parse().ok()?;
    let minutes: f64 = minutes.parse().ok()?;
    let seconds: f64 = seconds.parse().ok()?;
    Some(hours * 3600.0 + minutes * 60.0 + seconds)
}
