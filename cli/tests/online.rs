//! `cmdeploy test` and `cmdeploy bench` run from this machine against the two-relay testbed
//! (`xtask::testbed`): every check passes on `beta.chat.test` (its certificate verified
//! through the test CA) and on `_alpha.chat.test` (self-signed, accepted), the DNS check
//! through `cmdeploy dns` over SSH; `test --inventory` covers both relays; `bench` times both
//! logins, sending and receiving; and with filtermail stopped on alpha `cmdeploy test` fails,
//! naming the checks that broke. Slow: needs root, systemd-nspawn, nsd, ssh; ignored unless
//! run with `--include-ignored`.

#![allow(clippy::unwrap_used)] // a test fails by panicking

mod support;

use support::*;
use xtask::testbed::{Options, Relay, Testbed};

/// Names and network apart from the other testbeds'.
fn options() -> Options {
    Options {
        prefix: "cmprb".into(),
        net: 75,
        dir: xtask::workspace().join("target/probe"),
        cmdeploy: env!("CARGO_BIN_EXE_cmdeploy").into(),
    }
}

/// The verdict word printed for `check`, failing when the check is not in the output.
fn verdict<'a>(run: &'a Run, check: &str) -> &'a str {
    run.stdout
        .lines()
        .find(|line| line.split_whitespace().nth(1) == Some(check))
        .and_then(|line| line.split_whitespace().next())
        .unwrap_or_else(|| panic!("no line for {check}:\n{}", run.all()))
}

#[test]
#[ignore = "slow: root, two booted systemd-nspawn hosts reached over SSH, nsd"]
fn cmdeploy_test_passes_on_deployed_relays_and_names_what_broke() {
    let options = options();
    let testbed = Testbed::start(&options).unwrap();
    let dir = options.dir.join("probe");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ssh =
        xtask::host::authorize_ssh(&dir, &[testbed.alpha.root(), testbed.beta.root()]).unwrap();
    let ca = testbed.ca.to_str().unwrap();
    // The test CA is this machine's only trusted root: beta's certificate must verify.
    let env = [("CMDEPLOY_SSH", ssh.as_str()), ("SSL_CERT_FILE", ca)];
    let config = |name: &str, relay: &Relay| {
        let path = dir.join(format!("{name}.ini"));
        let settings = relay
            .root()
            .join(xtask::bundle::HOST_CONFIG.trim_start_matches('/'));
        std::fs::copy(settings, &path).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (alpha_ini, beta_ini) = (
        config("alpha", &testbed.alpha),
        config("beta", &testbed.beta),
    );
    let (alpha_ip, beta_ip) = (
        testbed.alpha.host.address.to_string(),
        testbed.beta.host.address.to_string(),
    );
    let test = |ini: &str, ip: &str| {
        cmdeploy(
            &["test", "--config", ini, "--address", ip, "--ssh-host", ip],
            &env,
        )
    };

    let beta = test(&beta_ini, &beta_ip);
    assert_eq!(beta.code, Some(0), "{}", beta.all());
    let checks = [
        "login",
        "wrong-password",
        "short-password",
        "capabilities",
        "encrypted-message",
        "cleartext-refused",
        "forged-from-refused",
        "envelope-from-refused",
        "unsigned-mail-refused",
        "push-token",
        "appversions",
        "turn",
        "iroh-relay",
        "new-account",
        "tls-certificate",
        "dns",
    ];
    for check in checks {
        assert_eq!(
            verdict(&beta, check),
            "ok",
            "{check} on beta:\n{}",
            beta.all()
        );
    }
    assert!(
        beta.stdout
            .contains("16 checks: 16 ok, 0 failed, 0 skipped"),
        "{}",
        beta.stdout
    );

    let alpha = test(&alpha_ini, &alpha_ip);
    assert_eq!(alpha.code, Some(0), "{}", alpha.all());
    assert_eq!(verdict(&alpha, "tls-certificate"), "skip", "self-signed");
    assert_eq!(verdict(&alpha, "encrypted-message"), "ok");
    assert_eq!(verdict(&alpha, "dns"), "ok");

    // With this machine's own roots, without the test CA, beta's certificate does not verify.
    let untrusted = cmdeploy(
        &[
            "test",
            "--config",
            &beta_ini,
            "--address",
            &beta_ip,
            "--skip",
            "dns",
        ],
        &[],
    );
    assert_eq!(untrusted.code, Some(1), "{}", untrusted.all());
    assert_eq!(verdict(&untrusted, "tls-certificate"), "FAIL");

    let bench = cmdeploy(
        &[
            "bench",
            "--config",
            &beta_ini,
            "--address",
            &beta_ip,
            "--rounds",
            "3",
        ],
        &env,
    );
    assert_eq!(bench.code, Some(0), "{}", bench.all());
    for row in ["imap login", "smtp login", "send", "receive"] {
        assert!(
            bench
                .stdout
                .lines()
                .any(|line| line.starts_with(row) && line.contains(" 3 ")),
            "{row}:\n{}",
            bench.stdout
        );
    }

    // Both relays in one command.
    let inventory = dir.join("fleet.toml");
    std::fs::write(
        &inventory,
        format!(
            "[[relay]]\nname = \"alpha\"\nconfig = \"alpha.ini\"\nssh_host = \"{alpha_ip}\"\n\
             address = \"{alpha_ip}\"\n\n\
             [[relay]]\nname = \"beta\"\nconfig = \"beta.ini\"\nssh_host = \"{beta_ip}\"\n\
             address = \"{beta_ip}\"\n"
        ),
    )
    .unwrap();
    let fleet = cmdeploy(&["test", "--inventory", inventory.to_str().unwrap()], &env);
    assert_eq!(fleet.code, Some(0), "{}", fleet.all());
    let log = std::fs::read_to_string(dir.join("logs/beta.log")).unwrap();
    assert!(log.contains("16 checks: 16 ok"), "{log}");

    // A broken relay: filtermail, the filter all submitted mail goes through, stopped.
    testbed
        .alpha
        .host
        .exec_ok(&["systemctl", "stop", "filtermail.service"])
        .unwrap();
    let broken = test(&alpha_ini, &alpha_ip);
    assert_eq!(broken.code, Some(1), "{}", broken.all());
    assert_eq!(verdict(&broken, "encrypted-message"), "FAIL");
    assert_eq!(verdict(&broken, "login"), "ok", "logins still work");
    assert!(
        broken.stdout.contains("failed: ") && broken.stdout.contains("encrypted-message"),
        "the summary names the failed check:\n{}",
        broken.stdout
    );
}
