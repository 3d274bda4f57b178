//! The container path under podman, as the README gives it for podman users: `cargo xtask image
//! --engine podman` (the default base, absent there, comes from the cached Debian rootfs),
//! `cmdeploy init` and `cmdeploy compose` with the default settings, then `podman-compose up -d`
//! with the same compose file docker-compose runs: init once, every daemon running and healthy
//! (the time is printed) with only declared capabilities, no new privileges, a read-only root
//! and only its scope's volumes, two Delta Chat accounts registering by login and exchanging
//! encrypted messages, then `stop` with no container killed and `down` leaving none behind
//! (both timed). Podman starts health checks from systemd timers; where systemd does not run
//! (as on this machine) the test runs each check as the timer would, `podman healthcheck run`.
//! Slow: needs root, podman, runc, catatonit, podman's settings for this host and
//! podman-compose (`scripts/setup-debian`); ignored unless run with `--include-ignored`. Binds
//! the relay's ports on this machine, and fails first, clearly, when one is taken. Removes the
//! dangling images earlier builds left in podman's storage.

#![allow(clippy::unwrap_used)] // a test fails by panicking

mod support;

use std::path::Path;

use support::containers::{DOMAIN, Project, assert_ports_free, build_image, ok};
use support::delta_chat_exchange;
use xtask::image::Engine;

#[test]
#[ignore = "slow: root, podman, podman-compose and the relay image"]
fn relay_runs_under_podman_compose() {
    assert_ports_free();
    let podman = Engine::find(Some("podman")).unwrap();
    build_image(&["--engine", "podman"], &[]);
    ok(podman.command(&["image", "prune", "--force"]));
    let compose = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/venv/bin/podman-compose");
    assert!(compose.exists(), "run scripts/setup-debian first");
    let compose = Engine {
        program: compose,
        env: Vec::new(),
    };
    let mut project = Project::new("podman/relay", podman, compose);
    project.run_health_checks = !Path::new("/run/systemd/system").exists();

    let fresh = project.up_healthy();
    eprintln!(
        "healthy after podman-compose up -d on fresh volumes: {:.1} s",
        fresh.as_secs_f64()
    );
    // Podman shows the capabilities a container has: only ones that some service declares,
    // none of podman's defaults beyond them (NET_RAW, MKNOD, AUDIT_WRITE, SETFCAP, SETPCAP).
    let declared = [
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "NET_BIND_SERVICE",
        "SETGID",
        "SETUID",
        "SYS_CHROOT",
    ];
    project.assert_least_privilege("{{json .EffectiveCaps}}", |caps| {
        let caps = caps.trim_matches(['[', ']']).split(',');
        caps.map(|c| c.trim_matches('"').trim_start_matches("CAP_"))
            .all(|c| declared.contains(&c))
    });
    // init configured once: podman starts it again with each daemon (`--requires`), and
    // each of those starts found its record and did nothing.
    let init = ok(project
        .engine
        .command(&["logs", &project.container("init")]));
    let configured = init.lines().filter(|l| l.starts_with("  version ")).count();
    let skipped = init
        .matches("configured with these settings and this image already")
        .count();
    eprintln!("init: configured {configured} time(s), started again {skipped} time(s)");
    assert_eq!(configured, 1, "{init}");
    project.assert_iroh_relay_serves();
    delta_chat_exchange("127.0.0.1", DOMAIN);

    let stopped = project.stop();
    eprintln!("podman-compose stop: {:.1} s", stopped.as_secs_f64());
    let down = std::time::Instant::now();
    ok(project.compose(&["down"]));
    eprintln!("podman-compose down: {:.1} s", down.elapsed().as_secs_f64());
    assert_eq!(
        project.containers(),
        Vec::<String>::new(),
        "down leaves none"
    );

    let existing = project.up_healthy();
    eprintln!(
        "healthy after podman-compose up -d on existing volumes: {:.1} s",
        existing.as_secs_f64()
    );
    delta_chat_exchange("127.0.0.1", DOMAIN);
    let down = std::time::Instant::now();
    ok(project.compose(&["down"]));
    eprintln!(
        "podman-compose down of running containers: {:.1} s",
        down.elapsed().as_secs_f64()
    );
}
