//! The example binary holds the built-in components plus `blackbox`, in a valid order, and
//! reads the component's own settings; checked the way a third party checks their binary.

#![allow(clippy::unwrap_used)] // a test fails by panicking

mod support;

// A test binary links only what it names, like any binary: name the component's crate.
use blackbox_component as _;

#[test]
fn the_registry_holds_the_built_ins_and_blackbox() {
    cmdeploy::components::expect_registry(&["blackbox"]).unwrap();
}

#[test]
fn list_shows_blackbox_after_the_services_it_probes() {
    let dir = tempfile::tempdir().unwrap();
    let config = support::config_file(dir.path(), "mail_domain = chat.example.org\n");
    let listed = support::run(&["list", "--config", config.to_str().unwrap()], &[]);
    assert!(listed.ok);
    let names: Vec<&str> = listed
        .stdout
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.is_empty())
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    let at = |name: &str| names.iter().position(|n| *n == name).unwrap();
    for probed in ["dovecot", "postfix", "nginx"] {
        assert!(at(probed) < at("blackbox"), "{names:?}");
    }
    assert_eq!(
        names.last(),
        Some(&"version"),
        "the version stamp stays last"
    );
    assert_eq!(names.len(), cmdeploy::components::BUILT_IN.len() + 1);
    let block: String = listed
        .stdout
        .split("\nblackbox\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| l.starts_with(' '))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        block,
        "  after:    dovecot, nginx, postfix\n\
         \x20 packages: prometheus-blackbox-exporter curl\n\
         \x20 file:     /etc/chatmail-blackbox/blackbox.yml\n\
         \x20 file:     /etc/systemd/system/prometheus-blackbox-exporter.service\n\
         \x20 service:  prometheus-blackbox-exporter.service (running)\n"
    );
}

#[test]
fn the_components_settings_are_read_shown_and_not_called_unused() {
    let dir = tempfile::tempdir().unwrap();
    let config = support::config_file(
        dir.path(),
        "mail_domain = chat.example.org\nblackbox_port = 19115\nblackbox_stray = 1\n",
    );
    let shown = support::run(
        &["config", "--config", config.to_str().unwrap()],
        &[("CHATMAIL_BLACKBOX_TIMEOUT", "3")],
    );
    assert!(shown.ok);
    let line = |key: &str| {
        let found = shown.stdout.lines().find(|l| l.starts_with(key)).unwrap();
        found.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    assert!(line("blackbox_port ").starts_with("blackbox_port 19115 "));
    assert!(line("blackbox_port ").ends_with("chatmail.ini:3"));
    assert_eq!(
        line("blackbox_timeout"),
        "blackbox_timeout 3 $CHATMAIL_BLACKBOX_TIMEOUT"
    );
    assert_eq!(
        line("blackbox_listen_address"),
        "blackbox_listen_address 127.0.0.1 default"
    );
    let warnings: Vec<&str> = shown
        .stdout
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].ends_with(":4: blackbox_stray has no effect"));
}

#[test]
fn a_bad_component_setting_is_refused_before_the_target_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let config = support::config_file(
        dir.path(),
        "mail_domain = chat.example.org\nblackbox_listen_address = everywhere\n",
    );
    let target = tempfile::tempdir().unwrap();
    let root = target.path().to_str().unwrap();
    let refused = support::run(
        &[
            "run",
            "--only",
            "blackbox",
            "--root",
            root,
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!refused.ok);
    assert!(
        refused.stderr.contains(
            "chatmail.ini:3: blackbox_listen_address = \"everywhere\": expected an IP address or localhost"
        ),
        "{}",
        refused.stderr
    );
    assert_eq!(std::fs::read_dir(target.path()).unwrap().count(), 0);
}

#[test]
fn compose_runs_blackbox_as_a_service_of_its_own_with_its_health_check() {
    let dir = tempfile::tempdir().unwrap();
    let config = support::config_file(dir.path(), "mail_domain = _chat.example.org\n");
    let compose = support::run(&["compose", "--config", config.to_str().unwrap()], &[]);
    assert!(compose.ok, "{}", compose.stderr);
    let service: Vec<&str> = compose
        .stdout
        .lines()
        .skip_while(|line| *line != "  prometheus-blackbox-exporter:")
        .skip(1)
        .take_while(|line| line.starts_with("    "))
        .collect();
    for expected in [
        r#"    command: ["prometheus-blackbox-exporter"]"#,
        "    network_mode: host",
        r#"      test: ["CMD", "curl", "--fail", "--silent", "--show-error", "http://127.0.0.1:9115/-/healthy"]"#,
        "        condition: service_completed_successfully",
    ] {
        assert!(
            service.contains(&expected),
            "{expected:?} not in {service:#?}"
        );
    }
}
