//! A fleet from one command, on the two-relay testbed (`xtask::testbed`) reached over SSH
//! from this machine: an inventory with both relays and one that cannot be reached; a settings
//! change deployed to both in one run, the second run a no-op on both; the unreachable relay
//! failing alone (and stopping a rolling deploy); `status` and `dns` over the inventory; a dry
//! run changing nothing anywhere. Slow: needs root, systemd-nspawn, nsd, ssh; ignored unless
//! run with `--include-ignored`.

#![allow(clippy::unwrap_used)] // a test fails by panicking

mod support;

use support::*;
use xtask::testbed::{Options, Relay, Testbed};

/// Names and network apart from the demo's and the federation test's testbeds.
fn options() -> Options {
    Options {
        prefix: "cmflt".into(),
        net: 73,
        dir: xtask::workspace().join("target/fleet"),
        cmdeploy: env!("CARGO_BIN_EXE_cmdeploy").into(),
    }
}

/// The row of `relay` in the closing table: result, changes, restarts.
fn row<'a>(run: &'a Run, relay: &str) -> Vec<&'a str> {
    let line = run
        .stdout
        .lines()
        .find(|line| line.split_whitespace().next() == Some(relay))
        .unwrap_or_else(|| panic!("no row for {relay}:\n{}", run.stdout));
    line.split_whitespace().skip(1).take(3).collect()
}

/// Postfix's message size limit on a relay, as deployed.
fn size_limit(relay: &Relay) -> String {
    relay
        .host
        .exec_ok(&["postconf", "-h", "message_size_limit"])
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
#[ignore = "slow: root, two booted systemd-nspawn hosts reached over SSH, nsd"]
fn a_fleet_deploys_in_one_command_and_one_unreachable_relay_fails_alone() {
    let options = options();
    let testbed = Testbed::start(&options).unwrap();
    // Kept after a failure (the next run starts afresh): the per-relay logs tell what happened.
    let dir = options.dir.join("inventory");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.as_path();
    let ssh =
        xtask::host::authorize_ssh(dir, &[testbed.alpha.root(), testbed.beta.root()]).unwrap();
    let env = [("CMDEPLOY_SSH", ssh.as_str())];

    // Each relay's settings as the testbed deployed them, plus a change.
    let settings = |relay: &Relay, extra: &str| {
        let base = std::fs::read_to_string(
            relay
                .root()
                .join(xtask::bundle::HOST_CONFIG.trim_start_matches('/')),
        )
        .unwrap();
        format!("{base}{extra}")
    };
    let write_configs = |extra: &str| {
        for (name, relay) in [("alpha", &testbed.alpha), ("beta", &testbed.beta)] {
            std::fs::write(dir.join(format!("{name}.ini")), settings(relay, extra)).unwrap();
        }
    };
    write_configs("max_message_size = 2000000\n");
    let unreachable = options.address(9);
    let inventory = dir.join("fleet.toml");
    std::fs::write(
        &inventory,
        format!(
            "# The unreachable one first: a rolling deploy stops there.\n\
             [[relay]]\nname = \"gamma\"\nconfig = \"alpha.ini\"\nssh_host = \"{unreachable}\"\n\n\
             [[relay]]\nname = \"alpha\"\nconfig = \"alpha.ini\"\nssh_host = \"{}\"\n\n\
             [[relay]]\nname = \"beta\"\nconfig = \"beta.ini\"\nssh_host = \"{}\"\n",
            testbed.alpha.host.address, testbed.beta.host.address
        ),
    )
    .unwrap();
    let inventory = inventory.to_str().unwrap();
    let fleet = |args: &[&str]| {
        let mut argv = args.to_vec();
        argv.extend(["--inventory", inventory]);
        cmdeploy(&argv, &env)
    };

    // Both relays in one command; the unreachable one fails alone.
    let first = fleet(&["run"]);
    assert_eq!(first.code, Some(1), "one relay failed:\n{}", first.all());
    assert_eq!(row(&first, "gamma")[0], "FAILED");
    for relay in ["alpha", "beta"] {
        let row = row(&first, relay);
        assert_eq!(row[0], "ok", "{relay}:\n{}", first.all());
        assert!(
            row[1].parse::<usize>().unwrap() > 0,
            "{relay} changed nothing"
        );
    }
    assert!(first.stdout.contains("gamma failed:"), "{}", first.stdout);
    for relay in [&testbed.alpha, &testbed.beta] {
        assert_eq!(size_limit(relay), "2000000", "{}", relay.domain);
    }
    let log = std::fs::read_to_string(dir.join("logs/alpha.log")).unwrap();
    assert!(
        log.contains("postfix: update /etc/postfix/main.cf"),
        "{log}"
    );

    // The second run changes nothing on either.
    let again = fleet(&["run", "--limit", "alpha,beta"]);
    assert_eq!(again.code, Some(0), "{}", again.all());
    for relay in ["alpha", "beta"] {
        assert_eq!(row(&again, relay), ["ok", "0", "0"], "{}", again.stdout);
    }
    assert!(!again.stdout.contains("gamma"), "--limit leaves gamma out");

    // A rolling deploy stops at the first failure: nothing after it is touched.
    let rolling = fleet(&["run", "--serial", "1"]);
    assert_eq!(rolling.code, Some(1));
    assert_eq!(row(&rolling, "gamma")[0], "FAILED");
    assert_eq!(row(&rolling, "alpha")[0], "skipped");
    assert_eq!(row(&rolling, "beta")[0], "skipped");

    // A dry run over the fleet plans the change everywhere and makes it nowhere.
    write_configs("max_message_size = 3000000\n");
    let dry = fleet(&["run", "--dry-run", "--limit", "alpha,beta"]);
    assert_eq!(dry.code, Some(0), "{}", dry.all());
    for relay in ["alpha", "beta"] {
        let row = row(&dry, relay);
        assert_eq!(row[0], "ok");
        assert!(
            row[1].parse::<usize>().unwrap() > 0,
            "{relay}: nothing planned"
        );
    }
    for relay in [&testbed.alpha, &testbed.beta] {
        assert_eq!(
            size_limit(relay),
            "2000000",
            "a dry run changed {}",
            relay.domain
        );
    }

    // Status and DNS over the inventory.
    write_configs("max_message_size = 2000000\n");
    let status = fleet(&["status", "--limit", "alpha,beta"]);
    assert_eq!(status.code, Some(0), "{}", status.all());
    let status_log = std::fs::read_to_string(dir.join("logs/beta.log")).unwrap();
    assert!(status_log.contains("beta.chat.test"), "{status_log}");
    let down = fleet(&["status"]);
    assert_eq!(down.code, Some(1));
    assert_eq!(row(&down, "gamma")[0], "FAILED");
    let dns = fleet(&["dns", "--limit", "alpha,beta"]);
    assert_eq!(dns.code, Some(0), "{}", dns.all());
}
