//! The slow rung for mtail, turn and iroh-relay: `cmdeploy run` into Debian 12 rootfs copies,
//! checked with the real `mtail --compile_only`, `systemd-analyze verify` and the installed
//! chatmail-turn and iroh-relay. Needs root, the cached rootfs and the iroh relay server beside
//! cmdeploy (`cargo xtask iroh-relay`, which `scripts/setup-debian` runs); ignored unless run
//! with `--include-ignored`.

#![allow(clippy::unwrap_used)] // a test fails by panicking

mod support;

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use support::*;

const METRICS: &str = "mail_domain = _chat.example.org\nmtail_address = 127.0.0.1\n";

fn ok(output: &std::process::Output, what: &str) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{what}: {text}");
    text
}

#[test]
#[ignore = "slow: root, a Debian 12 rootfs"]
fn mtail_turn_and_iroh_relay_deploy_validate_and_rerun_as_no_ops() {
    let root = installed_root("extras");
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), METRICS);
    let first = root_deploy(&root, &config, &[]);
    assert!(first.ok);
    assert!(
        first
            .stdout
            .contains("mtail: update /etc/systemd/system/mtail.service")
            || first
                .stdout
                .contains("mtail: create /etc/systemd/system/mtail.service"),
        "{}",
        first.stdout
    );

    // mtail: Debian's, with a program the real mtail compiles.
    assert!(root.path.join("usr/bin/mtail").exists());
    ok(
        &root.chroot(
            &[
                &chatmail_mtail::COMPILE_CHECK[..],
                &[chatmail_mtail::PROGRAMS],
            ]
            .concat(),
        ),
        "mtail --compile_only",
    );
    let unit = String::from_utf8(root.read("/etc/systemd/system/mtail.service")).unwrap();
    assert!(unit.contains("--address=127.0.0.1 --port=3903"), "{unit}");

    // turn: the bundled server runs on Debian 12, with a secret made once for vmail.
    let bundled =
        std::path::Path::new(env!("CARGO_BIN_EXE_cmdeploy")).with_file_name("chatmail-turn");
    assert_eq!(
        root.read("/usr/local/bin/chatmail-turn"),
        std::fs::read(&bundled).unwrap()
    );
    ok(
        &root.chroot(&["/usr/local/bin/chatmail-turn", "--version"]),
        "chatmail-turn --version",
    );
    let secret = root.read("/etc/chatmail-turn/secret");
    let secret_text = String::from_utf8(secret.clone()).unwrap();
    assert_eq!(secret_text.trim().len(), 64, "{secret_text:?}");
    let vmail = ok(&root.chroot(&["id", "-u", "vmail"]), "id vmail");
    let meta = std::fs::metadata(root.path.join("etc/chatmail-turn/secret")).unwrap();
    assert_eq!(meta.uid().to_string(), vmail.trim());
    let dir_meta = std::fs::metadata(root.path.join("etc/chatmail-turn")).unwrap();
    assert_eq!(dir_meta.mode() & 0o777, 0o700);

    // iroh-relay: the server built from crates.io, installed from beside cmdeploy like our own
    // programs, runs on Debian 12 (host.rs has it serve on a booted host).
    let bundled = bundled.with_file_name("iroh-relay");
    let built = std::fs::read(&bundled).unwrap_or_else(|err| {
        panic!(
            "{}: {err}; run `cargo xtask iroh-relay` (scripts/setup-debian does)",
            bundled.display()
        )
    });
    assert_eq!(root.read("/usr/local/bin/iroh-relay"), built);
    let help = ok(
        &root.chroot(&["/usr/local/bin/iroh-relay", "--help"]),
        "iroh-relay --help",
    );
    assert!(help.contains("--config-path"), "{help}");
    let toml = String::from_utf8(root.read("/etc/iroh-relay.toml")).unwrap();
    assert!(toml.contains("http_bind_addr = \"[::]:3340\""), "{toml}");

    let again = root_deploy(&root, &config, &[]);
    assert!(again.ok);
    assert!(
        again.stdout.contains("nothing to change"),
        "{}",
        again.stdout
    );
    assert_eq!(root.read("/etc/chatmail-turn/secret"), secret, "kept");

    // The units are valid to systemd, checked in a root that has systemd (stand-ins for the
    // binaries).
    let units = ["mtail.service", "turnserver.service", "iroh-relay.service"];
    let bootable = fresh_root_from(&xtask::rootfs::ensure_bootable().unwrap(), "extras-units");
    for unit in units {
        let path = format!("etc/systemd/system/{unit}");
        std::fs::copy(root.path.join(&path), bootable.path.join(&path)).unwrap();
    }
    for binary in ["chatmail-turn", "iroh-relay"] {
        let dest = bootable.path.join("usr/local/bin").join(binary);
        std::fs::copy(bootable.path.join("bin/true"), dest).unwrap();
    }
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no", "--root"])
        .arg(&bootable.path)
        .args(units.map(|unit| format!("/etc/systemd/system/{unit}")))
        .output()
        .unwrap();
    ok(&verify, "systemd-analyze verify");
}
