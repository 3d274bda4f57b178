//! What the iroh-relay component plans: the binary's source for each architecture and
//! override, and the service state for each `iroh_relay` setting.

#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::path::{Path, PathBuf};

use chatmail_core::config::Config;
use chatmail_core::engine::{self, Planned};
use chatmail_core::plan::{Download, DownloadSource, Service};
use chatmail_core::{Component, Facts, Templates};
use chatmail_iroh_relay::{IrohRelay, TARBALL_ENV};

fn facts(arch: &str, binaries: &Path) -> Facts {
    Facts {
        arch: arch.into(),
        deb_arch: chatmail_core::deb_arch(arch).into(),
        systemd: true,
        container: false,
        binaries: binaries.to_owned(),
        installed: Default::default(),
    }
}

fn plan(facts: &Facts, config: Option<&str>) -> anyhow::Result<Planned> {
    let components: [&'static dyn Component; 1] = [&IrohRelay];
    let templates = Templates::new(&components, None)?;
    let config = config.map(|body| {
        Config::parse(
            &format!("[params]\n{body}"),
            Path::new("chatmail.ini"),
            &|_| None,
        )
        .unwrap()
    });
    let mut plans = engine::plan(&components, config.as_ref(), facts, &templates)?;
    Ok(plans.remove(0))
}

fn the_download(planned: &Planned) -> Download {
    assert_eq!(planned.install.downloads.len(), 1);
    planned.install.downloads[0].clone()
}

const X86_64_SHA256: &str = "45c81199dbd70f8c4c30fef7f3b9727ca6e3cea8f2831333eeaf8aa71bf0fac1";

// One test: the tarball override is an environment variable, which all of these read.
#[test]
fn the_binary_comes_from_beside_cmdeploy_else_a_local_tarball_else_github_optionally() {
    let empty = tempfile::tempdir().unwrap();

    let download = the_download(&plan(&facts("x86_64", empty.path()), None).unwrap());
    assert_eq!(
        download.source,
        DownloadSource::Url(
            "https://github.com/n0-computer/iroh/releases/download/v0.35.0/iroh-relay-v0.35.0-x86_64-unknown-linux-musl.tar.gz"
                .into()
        )
    );
    assert_eq!(download.sha256, X86_64_SHA256);
    assert_eq!(download.extract.as_deref(), Some("./iroh-relay"));
    assert_eq!(download.dest, PathBuf::from("/usr/local/bin/iroh-relay"));
    assert!(download.optional, "an offline install goes on without it");

    let download = the_download(&plan(&facts("aarch64", empty.path()), None).unwrap());
    assert_eq!(
        download.source,
        DownloadSource::Url(
            "https://github.com/n0-computer/iroh/releases/download/v0.35.0/iroh-relay-v0.35.0-aarch64-unknown-linux-musl.tar.gz"
                .into()
        )
    );
    assert_eq!(
        download.sha256,
        "f8ef27631fac213b3ef668d02acd5b3e215292746a3fc71d90c63115446008b1"
    );

    let err = plan(&facts("riscv64", empty.path()), None).unwrap_err();
    assert!(
        format!("{err:#}")
            .contains("no release of /usr/local/bin/iroh-relay is pinned for architecture riscv64"),
        "{err:#}"
    );

    // Setting a variable in this process is unsafe (edition 2024) and the workspace denies
    // unsafe code: the override is checked by a child process of this test binary.
    let tarball = empty.path().join("iroh-relay.tar.gz");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "local_tarball_child", "--nocapture"])
        .env(TARBALL_ENV, &tarball)
        .env("IROH_RELAY_TEST_CHILD", "1")
        .status()
        .unwrap();
    assert!(status.success(), "the local tarball override");

    let with_binary = tempfile::tempdir().unwrap();
    std::fs::write(with_binary.path().join("iroh-relay"), b"built locally").unwrap();
    let download = the_download(&plan(&facts("x86_64", with_binary.path()), None).unwrap());
    assert_eq!(
        download.source,
        DownloadSource::Bundled(with_binary.path().join("iroh-relay"))
    );
    assert!(!download.optional);
}

/// Run by the test above with the tarball override set.
#[test]
fn local_tarball_child() {
    let Some(tarball) = std::env::var_os(TARBALL_ENV) else {
        return;
    };
    if std::env::var_os("IROH_RELAY_TEST_CHILD").is_none() {
        return;
    }
    let empty = tempfile::tempdir().unwrap();
    let download = the_download(&plan(&facts("x86_64", empty.path()), None).unwrap());
    assert_eq!(
        download.source,
        DownloadSource::Local(PathBuf::from(tarball))
    );
    assert_eq!(download.sha256, X86_64_SHA256, "checked like the release");
    assert_eq!(download.extract.as_deref(), Some("./iroh-relay"));
    assert!(
        !download.optional,
        "a tarball the operator named must install"
    );
}

#[test]
fn it_runs_only_when_iroh_relay_is_not_set() {
    let empty = tempfile::tempdir().unwrap();
    let facts = facts("x86_64", empty.path());
    let own = plan(&facts, Some("mail_domain = chat.example.org\n")).unwrap();
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
        let body = format!("mail_domain = chat.example.org\niroh_relay = {setting}\n");
        let elsewhere = plan(&facts, Some(&body)).unwrap();
        let activate = elsewhere.activate.unwrap();
        assert_eq!(
            activate.services,
            [Service::stopped("iroh-relay.service")],
            "iroh_relay = {setting:?}: stopped and disabled"
        );
        assert!(activate.ports.is_empty());
    }
}
