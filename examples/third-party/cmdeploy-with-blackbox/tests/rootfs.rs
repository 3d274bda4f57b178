//! Slow (ignored unless run with `--include-ignored`): the blackbox component deployed alone into a
//! Debian 12 rootfs by the example binary, its settings file checked by the prober itself
//! (`--config.check`), and its declared container command run until its health check passes.

#![allow(clippy::unwrap_used)] // a test fails by panicking

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chatmail_core::config::Config;
use chatmail_core::plan::Probe;
use chatmail_core::{Component, Facts, Target, Templates, engine};

const PORT: &str = "19115";

/// The container command and health check the component declares for `config`.
fn container_commands(config: &Config, root: &Path) -> (Vec<String>, Vec<String>) {
    let components: Vec<&'static dyn Component> = vec![&blackbox_component::Blackbox];
    let target = Target::new(root, false).unwrap();
    let facts = Facts::detect(&target, root.to_owned());
    let templates = Templates::new(&components, None).unwrap();
    let plans = engine::plan(&components, Some(config), &facts, &templates).unwrap();
    let service = &plans[0].activate.as_ref().unwrap().services[0];
    let foreground = service.container.clone().unwrap();
    match foreground.health {
        Some(Probe::Command(health)) => (foreground.argv, health),
        other => panic!("the health check is a command: {other:?}"),
    }
}

fn chroot(root: &Path, argv: &[String]) -> Command {
    let mut command = Command::new("chroot");
    command.arg(root).args(argv);
    command
}

#[test]
#[ignore = "slow: root, a Debian 12 rootfs"]
fn blackbox_deploys_validates_and_its_container_command_becomes_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = support::config_file(
        dir.path(),
        &format!("mail_domain = 10.0.0.7\nblackbox_port = {PORT}\n"),
    );
    let config_arg = config_path.to_str().unwrap();
    let root = support::fresh_root();
    let root_arg = root.path().to_str().unwrap();
    let deploy = |phase: &str, extra: &[&str]| {
        let mut args = vec!["run", "--only", "blackbox", "--phase", phase];
        args.extend(["--root", root_arg, "--config", config_arg]);
        args.extend(extra);
        support::run(&args, &[])
    };

    let installed = deploy("install", &[]);
    assert!(installed.ok, "{}", installed.stderr);
    let dry = deploy("configure", &["--dry-run"]);
    assert!(dry.ok, "{}", dry.stderr);
    assert!(
        dry.stdout
            .contains("blackbox: would create /etc/chatmail-blackbox/blackbox.yml")
    );
    assert!(
        dry.stdout.contains("+        insecure_skip_verify: true"),
        "the diff is shown"
    );
    assert!(
        !root.path().join("etc/chatmail-blackbox").exists(),
        "a dry run changes nothing"
    );

    let first = deploy("configure", &[]);
    assert!(first.ok, "{}", first.stderr);
    let yml =
        std::fs::read_to_string(root.path().join("etc/chatmail-blackbox/blackbox.yml")).unwrap();
    assert!(yml.contains("server_name: \"10.0.0.7\""), "{yml}");
    let unit = root
        .path()
        .join("etc/systemd/system/prometheus-blackbox-exporter.service");
    let unit = std::fs::read_to_string(unit).unwrap();
    assert!(
        unit.contains(&format!("--web.listen-address=127.0.0.1:{PORT}\n")),
        "{unit}"
    );
    let again = deploy("configure", &[]);
    assert!(
        again.ok && again.stdout.contains("nothing to change"),
        "{}",
        again.stdout
    );

    // The prober's own check refuses an override it cannot load (an unknown field) and the
    // previous file comes back.
    let overrides = dir.path().join("templates/blackbox");
    std::fs::create_dir_all(&overrides).unwrap();
    std::fs::write(
        overrides.join("blackbox.yml.j2"),
        "modules:\n  x:\n    prober: tcp\n    carrier_pigeon: true\n",
    )
    .unwrap();
    let templates = dir.path().join("templates");
    let broken = deploy("configure", &["--templates", templates.to_str().unwrap()]);
    assert!(!broken.ok);
    assert!(
        broken.stderr.contains("field carrier_pigeon not found"),
        "{}",
        broken.stderr
    );
    let after =
        std::fs::read_to_string(root.path().join("etc/chatmail-blackbox/blackbox.yml")).unwrap();
    assert_eq!(after, yml, "rolled back");

    // The container path: the declared foreground command serves, the health check says so.
    let config = Config::load_extended(
        &config_path,
        &|_| None,
        &blackbox_component::SETTINGS.iter().collect::<Vec<_>>(),
    )
    .unwrap();
    let (foreground, health) = container_commands(&config, root.path());
    let mut daemon = chroot(root.path(), &foreground)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let healthy = loop {
        let probe = chroot(root.path(), &health).output().unwrap();
        if probe.status.success() {
            break true;
        }
        if start.elapsed() > Duration::from_secs(20) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    assert!(healthy, "{health:?} never passed while {foreground:?} ran");
}
