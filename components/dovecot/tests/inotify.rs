//! Dovecot's inotify limits follow the running kernel: raised on a host where they are low
//! (never lowered), a warning in a container, nothing for a directory target.

#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::path::Path;

use chatmail_core::config::Config;
use chatmail_core::engine::{self, Planned};
use chatmail_core::{Component, Facts, Templates, kernel_setting};
use chatmail_dovecot::Dovecot;

const SYSCTL: &str = "/etc/sysctl.d/90-chatmail-inotify.conf";
const KEYS: [&str; 2] = [
    "fs.inotify.max_user_instances",
    "fs.inotify.max_user_watches",
];

fn plan(systemd: bool, container: bool) -> Planned {
    let components: [&'static dyn Component; 1] = [&Dovecot];
    let templates = Templates::new(&components, None).unwrap();
    let ini = "[params]\nmail_domain = chat.example.org\n";
    let config = Config::parse(ini, Path::new("chatmail.ini"), &|_| None).unwrap();
    let facts = Facts {
        arch: "x86_64".into(),
        deb_arch: "amd64".into(),
        systemd,
        container,
        binaries: "/nonexistent".into(),
        installed: Default::default(),
    };
    engine::plan(&components, Some(&config), &facts, &templates)
        .unwrap()
        .remove(0)
}

#[test]
fn a_host_raises_exactly_the_limits_this_kernel_has_too_low() {
    let configure = plan(true, false).configure.unwrap();
    let low: Vec<&str> = KEYS
        .into_iter()
        .filter(|key| kernel_setting(key) <= 65535)
        .collect();
    let file = configure
        .files
        .iter()
        .find(|file| file.path == Path::new(SYSCTL));
    match low.is_empty() {
        true => assert!(file.is_none(), "nothing to raise, nothing written"),
        false => {
            let text = String::from_utf8(file.unwrap().content.clone()).unwrap();
            for key in KEYS {
                assert_eq!(
                    text.contains(&format!("{key} = 65535\n")),
                    low.contains(&key),
                    "{key} is {}: {text}",
                    kernel_setting(key)
                );
            }
            let load = &configure.on_change[0];
            assert_eq!(load.argv, ["sysctl", "--load", SYSCTL]);
        }
    }
    assert!(configure.warnings.is_empty());
}

#[test]
fn a_container_warns_and_a_directory_target_does_nothing() {
    let configure = plan(false, true).configure.unwrap();
    assert!(!configure.files.iter().any(|f| f.path == Path::new(SYSCTL)));
    let too_low = KEYS
        .iter()
        .filter(|key| kernel_setting(key) < 65535)
        .count();
    assert_eq!(
        configure.warnings.len(),
        too_low,
        "{:?}",
        configure.warnings
    );
    for warning in &configure.warnings {
        assert!(warning.contains("raise it on the host"), "{warning}");
    }

    let configure = plan(false, false).configure.unwrap();
    assert!(!configure.files.iter().any(|f| f.path == Path::new(SYSCTL)));
    assert!(configure.warnings.is_empty() && configure.on_change.is_empty());
}
