//! Every file the components render, for a few fixture configs, compared with the reviewed
//! copies under `tests/snapshots/<fixture>/`. After an intended change, regenerate them with
//! `UPDATE_SNAPSHOTS=1 cargo test -p cmdeploy --test snapshots` and review the diff.

#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chatmail_core::config::Config;
use chatmail_core::{Facts, Registry, Templates, engine};

const FIXTURES: &[(&str, &str)] = &[
    (
        "acme-domain",
        "mail_domain = chat.example.org\nprivacy_mail = privacy@chat.example.org\n",
    ),
    (
        "underscore-domain",
        "mail_domain = _chat.example.org\nmtail_address = 127.0.0.1\n",
    ),
    (
        "ipv4-relay",
        "mail_domain = 10.77.0.2\ndisable_ipv6 = true\nimap_compress = true\nimap_rawlog = true\n",
    ),
    (
        "ipv6-disabled",
        "mail_domain = chat.example.org\ndisable_ipv6 = true\n",
    ),
    (
        "metrics-and-iroh-elsewhere",
        "mail_domain = chat.example.org\nmtail_address = 10.8.0.1\niroh_relay = https://iroh.example.net\n",
    ),
    (
        "external-tls",
        "mail_domain = chat.example.org\ntls_external_cert_and_key = /etc/certs/fullchain.pem /etc/certs/key.pem\n",
    ),
];

fn rendered(body: &str) -> BTreeMap<PathBuf, Vec<u8>> {
    let config = Config::parse(
        &format!("[params]\n{body}"),
        Path::new("chatmail.ini"),
        &|_| None,
    )
    .unwrap();
    let registry = Registry::linked().unwrap();
    // Naming the CLI's list links the built-in components into this test binary.
    assert_eq!(registry.names().len(), cmdeploy::components::BUILT_IN.len());
    let components = registry.select(&[], &[]).unwrap();
    let templates = Templates::new(&components, None).unwrap();
    let facts = Facts {
        arch: "x86_64".into(),
        deb_arch: "amd64".into(),
        // A directory target, like an image build: no running kernel of its own to tune.
        systemd: false,
        container: false,
        binaries: "/nonexistent".into(),
        installed: Default::default(),
    };
    let plans = engine::plan(&components, Some(&config), &facts, &templates).unwrap();
    let mut files = BTreeMap::new();
    for planned in &plans {
        let configured = planned.configure.iter().flat_map(|c| &c.files);
        for file in planned.install.files.iter().chain(configured) {
            // Images are left out: their compressed bytes depend on the features the build
            // unifies (the QR code's unit test decodes it instead).
            if file.path.extension().is_some_and(|ext| ext == "png") {
                continue;
            }
            // The revision changes with every commit: the snapshot holds a placeholder.
            let content = match file.path.to_str() {
                Some("/etc/chatmail-version") => String::from_utf8(file.content.clone())
                    .unwrap()
                    .replace(chatmail_version::SOURCE_REVISION, "<revision>")
                    .into_bytes(),
                _ => file.content.clone(),
            };
            let name = file
                .path
                .to_string_lossy()
                .trim_start_matches('/')
                .replace('/', "__");
            assert!(
                files.insert(PathBuf::from(name), content).is_none(),
                "{} declared twice",
                file.path.display()
            );
        }
    }
    files
}

#[test]
fn rendered_files_match_the_reviewed_snapshots() {
    let update = std::env::var("UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1");
    let mut problems = Vec::new();
    for (fixture, body) in FIXTURES {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/snapshots")
            .join(fixture);
        let files = rendered(body);
        assert!(
            files.len() > 10,
            "{fixture}: only {} files rendered",
            files.len()
        );
        if update {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            for (name, content) in &files {
                std::fs::write(dir.join(name), content).unwrap();
            }
            continue;
        }
        for (name, content) in &files {
            match std::fs::read(dir.join(name)) {
                Ok(expected) if expected == *content => {}
                Ok(_) => problems.push(format!("{fixture}/{}: differs", name.display())),
                Err(_) => problems.push(format!("{fixture}/{}: no snapshot", name.display())),
            }
        }
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if !files.contains_key(&PathBuf::from(entry.file_name())) {
                problems.push(format!(
                    "{fixture}/{}: no longer rendered",
                    entry.file_name().to_string_lossy()
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{}\nrun UPDATE_SNAPSHOTS=1 cargo test -p cmdeploy --test snapshots and review the diff",
        problems.join("\n")
    );
}
