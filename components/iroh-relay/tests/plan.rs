//! What the iroh-relay component plans: the bundled binary when cmdeploy ships it, and the
//! service state for each `iroh_relay` setting and for a cmdeploy without the binary.

#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::path::Path;

use chatmail_core::config::Config;
use chatmail_core::engine::{self, Planned};
use chatmail_core::plan::{DownloadSource, Service};
use chatmail_core::{Component, Facts, Templates};
use chatmail_iroh_relay::IrohRelay;

fn facts(binaries: &Path) -> Facts {
    Facts {
        arch: "x86_64".into(),
        deb_arch: "amd64".into(),
        systemd: true,
        container: false,
        binaries: binaries.to_owned(),
        installed: Default::default(),
    }
}

fn plan(facts: &Facts, config: Option<&str>) -> Planned {
    let components: [&'static dyn Component; 1] = [&IrohRelay];
    let templates = Templates::new(&components, None).unwrap();
    let config = config.map(|body| {
        Config::parse(
            &format!("[params]\n{body}"),
            Path::new("chatmail.ini"),
            &|_| None,
        )
        .unwrap()
    });
    let mut plans = engine::plan(&components, config.as_ref(), facts, &templates).unwrap();
    plans.remove(0)
}

/// A directory with an `iroh-relay` in it, as `cargo xtask iroh-relay` leaves target/debug.
fn beside() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("iroh-relay"), b"built by cargo install").unwrap();
    dir
}

const OWN: &str = "mail_domain = chat.example.org\n";

#[test]
fn the_binary_is_bundled_from_beside_cmdeploy_and_never_downloaded() {
    let with_binary = beside();
    let planned = plan(&facts(with_binary.path()), None);
    let downloads = &planned.install.downloads;
    assert_eq!(downloads.len(), 1);
    assert_eq!(
        downloads[0].source,
        DownloadSource::Bundled(with_binary.path().join("iroh-relay"))
    );
    assert_eq!(downloads[0].dest, Path::new("/usr/local/bin/iroh-relay"));
    assert_eq!(downloads[0].mode, 0o755);

    let empty = tempfile::tempdir().unwrap();
    let planned = plan(&facts(empty.path()), None);
    assert!(
        planned.install.downloads.is_empty(),
        "nothing to fetch: {:?}",
        planned.install.downloads
    );
    let files: Vec<_> = planned.install.files.iter().map(|f| &f.path).collect();
    assert_eq!(
        files,
        [
            Path::new("/etc/iroh-relay.toml"),
            Path::new("/etc/systemd/system/iroh-relay.service")
        ]
    );
}

#[test]
fn it_runs_only_when_iroh_relay_is_not_set() {
    let with_binary = beside();
    let facts = facts(with_binary.path());
    let own = plan(&facts, Some(OWN));
    assert!(own.configure.unwrap().warnings.is_empty());
    let activate = own.activate.unwrap();
    let running = Service::running("iroh-relay.service")
        .foreground_as(
            "iroh",
            &[
                "/usr/local/bin/iroh-relay",
                "--config-path",
                "/etc/iroh-relay.toml",
            ],
        )
        .health_tcp(3340);
    assert_eq!(
        activate.services,
        [running],
        "in a container too, as the iroh user"
    );
    assert_eq!(activate.ports.len(), 1);
    assert_eq!(activate.ports[0].port, 3340);
    assert_eq!(activate.ports[0].allowed, ["iroh-relay"]);

    for setting in ["https://iroh.example.net", ""] {
        let body = format!("{OWN}iroh_relay = {setting}\n");
        let elsewhere = plan(&facts, Some(&body));
        let activate = elsewhere.activate.unwrap();
        assert_eq!(
            activate.services,
            [Service::stopped("iroh-relay.service")],
            "iroh_relay = {setting:?}: stopped and disabled"
        );
        assert!(activate.ports.is_empty());
    }
}

#[test]
fn without_the_binary_it_is_stopped_and_the_run_says_what_to_do() {
    let empty = tempfile::tempdir().unwrap();
    let facts = facts(empty.path());
    let own = plan(&facts, Some(OWN));
    let warnings = own.configure.unwrap().warnings;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("run `cargo xtask iroh-relay`")
            && warnings[0].contains(&empty.path().display().to_string()),
        "{warnings:?}"
    );
    let activate = own.activate.unwrap();
    assert_eq!(
        activate.services,
        [Service::stopped("iroh-relay.service")],
        "never declared running when it cannot start"
    );
    assert!(activate.ports.is_empty());

    let elsewhere = plan(
        &facts,
        Some(&format!("{OWN}iroh_relay = https://iroh.example.net\n")),
    );
    assert!(
        elsewhere.configure.unwrap().warnings.is_empty(),
        "no warning when another relay serves"
    );
}

#[test]
fn the_image_always_runs_it() {
    // `cmdeploy compose` plans the image's containers with the facts of one, wherever it runs.
    let empty = tempfile::tempdir().unwrap();
    let mut image = facts(empty.path());
    image.container = true;
    image.systemd = false;
    let own = plan(&image, Some(OWN));
    assert!(own.configure.unwrap().warnings.is_empty());
    let services = own.activate.unwrap().services;
    assert!(services[0].running, "{services:?}");
    assert!(services[0].container.is_some(), "{services:?}");
}
