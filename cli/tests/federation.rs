//! Mail between two relays on the two-relay testbed (`xtask::testbed`: `_alpha.chat.test`
//! self-signed, `beta.chat.test` with a certificate from a test CA both trust, DNS from nsd
//! through each relay's own unbound): real Delta Chat accounts on each relay exchange
//! encrypted messages both ways through filtermail's transport (HTTPS `/mxdeliv`, SMTP when
//! the receiver's port 443 is closed); cleartext is refused at the sender's relay, unsigned
//! mail at the receiver's (port 25 and `/mxdeliv`); a message waits in the sender's queue
//! while the receiver is down and arrives afterwards; mail to a domain that does not exist
//! bounces; a second `cmdeploy run` on both relays changes nothing. One testbed boot serves
//! every check. Slow: needs root, systemd-nspawn, nsd and the Delta Chat client
//! (`scripts/setup-debian`).

#![allow(clippy::unwrap_used)] // a test fails by panicking

mod support;

use std::io::{BufRead, BufReader, Lines, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use xtask::testbed::{Options, Relay, Testbed};

/// The tests' testbed: names and network apart from `cargo xtask demo --relays 2`'s.
fn options() -> Options {
    Options {
        prefix: "cmfed".into(),
        net: 71,
        dir: xtask::workspace().join("target/federation"),
        cmdeploy: env!("CARGO_BIN_EXE_cmdeploy").into(),
    }
}

/// The Delta Chat client with alice on relay alpha and bob on relay beta, driven one command
/// at a time (`deltachat_exchange.py --federation`).
struct Chat {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    /// Alice's and bob's addresses.
    alice: String,
    bob: String,
    _accounts: tempfile::TempDir,
}

impl Chat {
    fn start(testbed: &Testbed) -> Chat {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let venv = manifest.join("../target/venv/bin");
        assert!(
            venv.join("deltachat-rpc-server").exists(),
            "run scripts/setup-debian first"
        );
        let accounts = tempfile::tempdir().unwrap();
        let path = format!(
            "{}:{}",
            venv.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut child = Command::new(venv.join("python"))
            .arg(manifest.join("tests/e2e/deltachat_exchange.py"))
            .arg("--federation")
            .args(
                [&testbed.alpha, &testbed.beta]
                    .iter()
                    .flat_map(|relay| [relay.host.address.to_string(), relay.domain.clone()]),
            )
            .arg(accounts.path().join("accounts"))
            .env("PATH", path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = next_answer(&mut lines, &mut child);
        Chat {
            alice: first["alice"].as_str().unwrap().to_owned(),
            bob: first["bob"].as_str().unwrap().to_owned(),
            child,
            stdin,
            lines,
            _accounts: accounts,
        }
    }

    /// Sends one command and returns its JSON answer.
    fn ask(&mut self, command: &str) -> Value {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        let answer = next_answer(&mut self.lines, &mut self.child);
        eprintln!("delta chat: {command} -> {answer}");
        answer
    }
}

impl Drop for Chat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn next_answer(lines: &mut Lines<BufReader<ChildStdout>>, child: &mut Child) -> Value {
    match lines.next() {
        Some(line) => serde_json::from_str(&line.unwrap()).unwrap(),
        None => panic!(
            "the Delta Chat client ended ({:?}); its traceback is above",
            child.wait()
        ),
    }
}

/// Polls `what` on `relay` until `done` holds for its output (60 s at most); returns it.
fn wait_for(relay: &Relay, argv: &[&str], done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let output = relay.host.exec(argv).unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        if done(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{argv:?} on {}:\n{text}",
            relay.domain
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The log of filtermail's transport (remote delivery) on a relay.
const TRANSPORT_LOG: &[&str] = &[
    "journalctl",
    "--no-pager",
    "-o",
    "cat",
    "-u",
    "filtermail-transport.service",
];

/// Postfix's log on `relay` (through journald).
const MAIL_LOG: &[&str] = &["journalctl", "--no-pager", "-o", "cat", "SYSLOG_FACILITY=2"];

#[test]
#[ignore = "slow: root, two booted systemd-nspawn hosts, nsd, the Delta Chat client"]
fn two_relays_exchange_mail_and_lose_nothing() {
    support::build_relay_programs();
    let testbed = Testbed::start(&options()).unwrap();
    let (alpha, beta) = (&testbed.alpha, &testbed.beta);
    let mut chat = Chat::start(&testbed);
    assert!(chat.alice.ends_with("@_alpha.chat.test"), "{}", chat.alice);
    assert!(chat.bob.ends_with("@beta.chat.test"), "{}", chat.bob);

    // Encrypted messages both ways (the Secure-Join before crossed the relays too).
    let exchange = chat.ask("exchange");
    assert!(exchange["round_trip_seconds"].is_number(), "{exchange}");
    // Each relay's transport delivered to the other over HTTPS (/mxdeliv), with the TLS policy
    // of the destination: beta's certificate verified against the test CA, alpha's accepted.
    for (from, to) in [(alpha, beta), (beta, alpha)] {
        let line = format!(
            "delivery to {} via {} over HTTPS: 250 OK (HTTPS)",
            to.domain, to.domain
        );
        wait_for(from, TRANSPORT_LOG, |log| log.contains(&line));
    }

    // Cleartext from alpha to beta is refused at alpha's submission.
    let cleartext = chat.ask("cleartext");
    let refused = cleartext["refused"].as_str().unwrap();
    assert!(refused.starts_with("523 "), "{refused}");

    // Beta refuses mail from alpha's domain without alpha's DKIM signature, on port 25 and on
    // /mxdeliv alike.
    let unsigned = chat.ask("unsigned smtp");
    let refused = unsigned["refused"].as_str().unwrap();
    assert!(
        refused.starts_with("554 ") && refused.contains("DKIM"),
        "{refused}"
    );
    let unsigned = chat.ask("unsigned https");
    assert_eq!(unsigned["status"], 400, "{unsigned}");
    let refused = unsigned["reply"].as_str().unwrap();
    assert!(
        refused.starts_with("554 ") && refused.contains("DKIM"),
        "{refused}"
    );

    // A second run on both relays changes nothing.
    for relay in [alpha, beta] {
        let again = relay.deploy(&[]).unwrap();
        assert!(
            again.contains("nothing to change"),
            "{}: {again}",
            relay.domain
        );
    }

    // Beta's Postfix down: the message waits in alpha's queue, and arrives once beta is back.
    beta.host
        .exec_ok(&["systemctl", "stop", "postfix.service"])
        .unwrap();
    chat.ask("send sent while beta was down");
    let queue = wait_for(alpha, &["postqueue", "-j"], |queue| {
        queue.contains(&chat.bob) && queue.contains("\"queue_name\": \"deferred\"")
    });
    eprintln!("alpha's queue while beta is down: {queue}");
    beta.host
        .exec_ok(&["systemctl", "start", "postfix.service"])
        .unwrap();
    alpha.host.exec_ok(&["postqueue", "-f"]).unwrap();
    let arrived = chat.ask("receive sent while beta was down");
    assert_eq!(arrived["encrypted"], true, "{arrived}");
    wait_for(alpha, &["postqueue", "-j"], |queue| {
        !queue.contains(&chat.bob)
    });

    // Port 443 closed on beta (nginx stopped): alpha's transport falls back to SMTP.
    beta.host
        .exec_ok(&["systemctl", "stop", "nginx.service"])
        .unwrap();
    chat.ask("send sent while beta had no https");
    let arrived = chat.ask("receive sent while beta had no https");
    assert_eq!(arrived["encrypted"], true, "{arrived}");
    let fallback = format!(
        "delivery to {0} via {0} over SMTP: 250 OK (SMTP)",
        beta.domain
    );
    let log = wait_for(alpha, TRANSPORT_LOG, |log| log.contains(&fallback));
    assert!(
        log.contains(&format!(
            "HTTPS delivery to {} failed, trying SMTP",
            beta.domain
        )),
        "{log}"
    );
    beta.host
        .exec_ok(&["systemctl", "start", "nginx.service"])
        .unwrap();

    // Mail to a domain that does not exist bounces at once.
    let nowhere = "nobody@nowhere.chat.test";
    chat.ask(&format!("request {nowhere}"));
    let bounced =
        |line: &&str| line.contains(&format!("to=<{nowhere}>")) && line.contains("status=bounced");
    let log = wait_for(alpha, MAIL_LOG, |log| {
        log.lines().any(|line| bounced(&line))
    });
    let bounce = log.lines().find(bounced).unwrap();
    eprintln!("alpha's log: {bounce}");
    // The transport's reply for a domain that does not exist (NXDOMAIN).
    assert!(
        bounce.contains("512 ") && bounce.contains("does not exist"),
        "{bounce}"
    );
}
