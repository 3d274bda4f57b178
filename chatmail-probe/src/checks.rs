//! The checks of `cmdeploy test`: each a named function that judges one thing a relay's users
//! (or other relays) rely on, and says pass, fail or skip, with why. Every check makes the
//! fresh accounts it needs by logging in with random credentials.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rustls::ClientConfig;

use crate::imap::{Imap, LoginError};
use crate::smtp::{self, SendError};
use crate::{Account, Relay, connect, message, stun, web};

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// As it should be; a short note of what was seen.
    Pass(String),
    /// Not as it should be: what is wrong.
    Fail(String),
    /// Not judged here: why.
    Skip(String),
}

/// One check's verdict and how long it took.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: &'static str,
    pub verdict: Verdict,
    pub took: Duration,
}

impl Outcome {
    /// The line printed for it: verdict, name (padded to `width`), time, note.
    pub fn line(&self, width: usize) -> String {
        let (word, note) = match &self.verdict {
            Verdict::Pass(note) => ("ok  ", note),
            Verdict::Fail(note) => ("FAIL", note),
            Verdict::Skip(note) => ("skip", note),
        };
        format!(
            "{word}  {:width$}  {:>6.2}s  {note}",
            self.name,
            self.took.as_secs_f64()
        )
    }
}

/// The closing line: counts, and the names of the failed checks.
pub fn summary(outcomes: &[Outcome]) -> String {
    let count = |f: fn(&Verdict) -> bool| outcomes.iter().filter(|o| f(&o.verdict)).count();
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| matches!(o.verdict, Verdict::Fail(_)))
        .map(|o| o.name)
        .collect();
    let mut line = format!(
        "{} checks: {} ok, {} failed, {} skipped",
        outcomes.len(),
        count(|v| matches!(v, Verdict::Pass(_))),
        failed.len(),
        count(|v| matches!(v, Verdict::Skip(_))),
    );
    if !failed.is_empty() {
        line += &format!(" (failed: {})", failed.join(", "));
    }
    line
}

/// What the checks share: the relay and the TLS settings for it.
#[derive(Debug)]
pub struct Probe {
    pub relay: Relay,
    pub tls: Arc<ClientConfig>,
}

impl Probe {
    pub fn new(relay: Relay) -> Result<Probe> {
        let tls = connect::client_config(&relay)?;
        Ok(Probe { relay, tls })
    }

    /// A new account, created by its first IMAP login.
    pub async fn account(&self) -> Result<(Account, Imap)> {
        let account = self.relay.new_account();
        let imap = self
            .login(&account)
            .await
            .with_context(|| format!("creating {} by logging in", account.addr))?;
        Ok((account, imap))
    }

    /// An IMAP login that must succeed.
    pub async fn login(&self, account: &Account) -> Result<Imap> {
        Imap::login(&self.relay, &self.tls, account)
            .await
            .map_err(|err| anyhow::anyhow!("IMAP login as {}: {err}", account.addr))
    }
}

type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<Verdict>> + 'a>>;

/// A named check.
#[derive(Debug, Clone, Copy)]
pub struct Check {
    /// How it is named in the output and in `--skip`.
    pub name: &'static str,
    /// What it checks, in a few words.
    pub about: &'static str,
    run: fn(&Probe) -> CheckFuture<'_>,
}

/// Every check, in the order they run.
pub const CHECKS: &[Check] = &[
    Check {
        name: "login",
        about: "a first login creates an account; it logs in again over IMAP and SMTP",
        run: |p| Box::pin(login(p)),
    },
    Check {
        name: "wrong-password",
        about: "a wrong password is refused for an existing account",
        run: |p| Box::pin(wrong_password(p)),
    },
    Check {
        name: "short-password",
        about: "no account is created with a password shorter than password_min_length",
        run: |p| Box::pin(short_password(p)),
    },
    Check {
        name: "capabilities",
        about: "IMAP announces XCHATMAIL and XDELTAPUSH",
        run: |p| Box::pin(capabilities(p)),
    },
    Check {
        name: "encrypted-message",
        about: "an encrypted message between two fresh accounts arrives and decrypts",
        run: |p| Box::pin(encrypted_message(p)),
    },
    Check {
        name: "cleartext-refused",
        about: "cleartext is refused on submission (523)",
        run: |p| Box::pin(cleartext_refused(p)),
    },
    Check {
        name: "forged-from-refused",
        about: "a From header other than the login is refused (500)",
        run: |p| Box::pin(forged_from_refused(p)),
    },
    Check {
        name: "envelope-from-refused",
        about: "an envelope sender other than the login is refused (553)",
        run: |p| Box::pin(envelope_from_refused(p)),
    },
    Check {
        name: "unsigned-mail-refused",
        about: "mail on port 25 without a DKIM signature is refused",
        run: |p| Box::pin(unsigned_mail_refused(p)),
    },
    Check {
        name: "push-token",
        about: "METADATA /private/devicetoken keeps the tokens set",
        run: |p| Box::pin(push_token(p)),
    },
    Check {
        name: "appversions",
        about: "METADATA /shared/vendor/deltachat/appversions names the clients",
        run: |p| Box::pin(appversions(p)),
    },
    Check {
        name: "turn",
        about: "METADATA /shared/vendor/deltachat/turn gives TURN credentials; STUN answers",
        run: |p| Box::pin(turn(p)),
    },
    Check {
        name: "iroh-relay",
        about: "METADATA /shared/vendor/deltachat/irohrelay is the configured iroh relay",
        run: |p| Box::pin(iroh_relay(p)),
    },
    Check {
        name: "new-account",
        about: "POST /new suggests an account that can log in",
        run: |p| Box::pin(new_account(p)),
    },
    Check {
        name: "tls-certificate",
        about: "the certificate on 993, 465 and 443 is valid for the domain",
        run: |p| Box::pin(tls_certificate(p)),
    },
];

impl Check {
    /// Runs the check; an error is a failure, with the error's chain as the reason.
    pub async fn run(&self, probe: &Probe) -> Outcome {
        let start = Instant::now();
        let verdict = match (self.run)(probe).await {
            Ok(verdict) => verdict,
            Err(err) => Verdict::Fail(format!("{err:#}")),
        };
        Outcome {
            name: self.name,
            verdict,
            took: start.elapsed(),
        }
    }
}

/// Runs every check not in `skip` (those are reported as skipped), one after the other,
/// telling `report` each outcome as it comes.
pub fn run_all(
    relay: Relay,
    skip: &[String],
    mut report: impl FnMut(&Outcome),
) -> Result<Vec<Outcome>> {
    let probe = Probe::new(relay)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut outcomes = Vec::new();
    for check in CHECKS {
        let outcome = match skip.iter().any(|name| name == check.name) {
            true => Outcome {
                name: check.name,
                verdict: Verdict::Skip("--skip".into()),
                took: Duration::ZERO,
            },
            false => runtime.block_on(check.run(&probe)),
        };
        report(&outcome);
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// The verdict on a refusal expected with `code`.
fn expect_refusal(result: Result<(), SendError>, code: u16, what: &str) -> Verdict {
    match result {
        Ok(()) => Verdict::Fail(format!("{what} was accepted")),
        Err(SendError::Refused { code: got, text }) if got == code => Verdict::Pass(text),
        Err(SendError::Refused { text, .. }) => {
            Verdict::Fail(format!("{what} was refused, but not with {code}: {text}"))
        }
        Err(SendError::Failed(err)) => Verdict::Fail(format!("sending {what}: {err:#}")),
    }
}

async fn login(probe: &Probe) -> Result<Verdict> {
    let (account, imap) = probe.account().await?;
    imap.logout().await?;
    probe
        .login(&account)
        .await
        .context("the second IMAP login")?
        .logout()
        .await?;
    smtp::login(&probe.relay, &account)
        .await
        .map_err(|err| anyhow::anyhow!("SMTP login as {}: {err}", account.addr))?;
    Ok(Verdict::Pass(format!("created {}", account.addr)))
}

async fn wrong_password(probe: &Probe) -> Result<Verdict> {
    let (account, imap) = probe.account().await?;
    imap.logout().await?;
    let wrong = Account {
        password: format!("{}x", account.password),
        ..account
    };
    Ok(match Imap::login(&probe.relay, &probe.tls, &wrong).await {
        Ok(_) => Verdict::Fail(format!(
            "IMAP login as {} with a wrong password worked",
            wrong.addr
        )),
        Err(LoginError::Failed(err)) => Verdict::Fail(format!("{err:#}")),
        Err(LoginError::Refused(_)) => match smtp::login(&probe.relay, &wrong).await {
            Ok(()) => Verdict::Fail(format!(
                "SMTP login as {} with a wrong password worked",
                wrong.addr
            )),
            Err(SendError::Refused { code, .. }) => {
                Verdict::Pass(format!("refused over IMAP and SMTP ({code})"))
            }
            Err(SendError::Failed(err)) => Verdict::Fail(format!("SMTP: {err:#}")),
        },
    })
}

async fn short_password(probe: &Probe) -> Result<Verdict> {
    let Some(length) = probe.relay.password_min_length.checked_sub(1) else {
        return Ok(Verdict::Skip("password_min_length is 0".into()));
    };
    let mut account = probe.relay.new_account();
    account.password.truncate(length);
    Ok(
        match Imap::login(&probe.relay, &probe.tls, &account).await {
            Ok(_) => Verdict::Fail(format!(
                "{} was created with a {length}-character password",
                account.addr
            )),
            Err(LoginError::Refused(_)) => {
                Verdict::Pass(format!("a {length}-character password was refused"))
            }
            Err(LoginError::Failed(err)) => Verdict::Fail(format!("{err:#}")),
        },
    )
}

async fn capabilities(probe: &Probe) -> Result<Verdict> {
    let (_, mut imap) = probe.account().await?;
    let mut missing = Vec::new();
    for capability in ["XCHATMAIL", "XDELTAPUSH"] {
        if !imap.has_capability(capability).await? {
            missing.push(capability);
        }
    }
    imap.logout().await?;
    Ok(match missing.is_empty() {
        true => Verdict::Pass("XCHATMAIL XDELTAPUSH".into()),
        false => Verdict::Fail(format!("not announced: {}", missing.join(" "))),
    })
}

/// How long an encrypted message may take to arrive.
pub const DELIVERY_WAIT: Duration = Duration::from_secs(30);

async fn encrypted_message(probe: &Probe) -> Result<Verdict> {
    let (alice, alice_imap) = probe.account().await?;
    alice_imap.logout().await?;
    let (bob, mut bob_imap) = probe.account().await?;
    let key = message::key(&bob.addr)?;
    let text = message::token();
    let raw = message::encrypted(&alice.addr, &bob.addr, &key, &text)?;
    let sent = Instant::now();
    if let Err(err) = smtp::submit(&probe.relay, &alice, &alice.addr, &bob.addr, &raw).await {
        return Ok(Verdict::Fail(format!("submitting it: {err}")));
    }
    let (arrived, seen) = bob_imap.wait_for_message(DELIVERY_WAIT, 0).await?;
    bob_imap.logout().await?;
    let decrypted = message::decrypt(&arrived, &key)?;
    Ok(match decrypted == text {
        true => Verdict::Pass(format!(
            "arrived {:.2} s after submission",
            seen.duration_since(sent).as_secs_f64()
        )),
        false => Verdict::Fail(format!("it decrypts to {decrypted:?}, not {text:?}")),
    })
}

async fn cleartext_refused(probe: &Probe) -> Result<Verdict> {
    let (alice, _) = probe.account().await?;
    let bob = probe.relay.new_account();
    let raw = message::cleartext(&alice.addr, &bob.addr);
    let sent = smtp::submit(&probe.relay, &alice, &alice.addr, &bob.addr, &raw).await;
    Ok(expect_refusal(sent, 523, "cleartext"))
}

async fn forged_from_refused(probe: &Probe) -> Result<Verdict> {
    let sent = submit_forged(probe, false).await?;
    Ok(expect_refusal(sent, 500, "a forged From header"))
}

async fn envelope_from_refused(probe: &Probe) -> Result<Verdict> {
    let sent = submit_forged(probe, true).await?;
    Ok(expect_refusal(sent, 553, "a foreign envelope sender"))
}

/// A fresh account submits an encrypted message to another whose `From:` is an address not
/// its own; with `envelope`, the envelope sender is that address too.
async fn submit_forged(probe: &Probe, envelope: bool) -> Result<Result<(), SendError>> {
    let (alice, _) = probe.account().await?;
    let (bob, _) = probe.account().await?;
    let forged = probe.relay.new_account();
    let key = message::key(&bob.addr)?;
    let raw = message::encrypted(&forged.addr, &bob.addr, &key, &message::token())?;
    let sender = if envelope { &forged.addr } else { &alice.addr };
    Ok(smtp::submit(&probe.relay, &alice, sender, &bob.addr, &raw).await)
}

async fn unsigned_mail_refused(probe: &Probe) -> Result<Verdict> {
    if probe.relay.ipv4 {
        return Ok(Verdict::Skip(
            "IPv4 relays have no DKIM: mail from them is not signed".into(),
        ));
    }
    if let Err(err) = connect::tcp(&probe.relay, smtp::RELAY_PORT).await {
        return Ok(Verdict::Skip(format!(
            "port 25 cannot be reached from here ({err:#})"
        )));
    }
    let (bob, _) = probe.account().await?;
    let sender = probe.relay.new_account();
    let key = message::key(&bob.addr)?;
    let raw = message::encrypted(&sender.addr, &bob.addr, &key, &message::token())?;
    let sent = smtp::deliver(&probe.relay, &sender.addr, &bob.addr, &raw).await;
    Ok(match expect_refusal(sent, 554, "unsigned mail") {
        Verdict::Pass(text) if !text.contains("DKIM") => Verdict::Fail(format!(
            "refused, but not for its missing DKIM signature: {text}"
        )),
        verdict => verdict,
    })
}

const DEVICE_TOKEN: &str = "/private/devicetoken";
const VENDOR: &str = "/shared/vendor/deltachat";

async fn push_token(probe: &Probe) -> Result<Verdict> {
    let (_, mut imap) = probe.account().await?;
    let (first, second) = (message::token(), message::token());
    imap.set_metadata(DEVICE_TOKEN, &first).await?;
    let one = imap.get_inbox_metadata(DEVICE_TOKEN).await?;
    imap.set_metadata(DEVICE_TOKEN, &second).await?;
    let both = imap.get_inbox_metadata(DEVICE_TOKEN).await?;
    imap.logout().await?;
    let expected = format!("{first} {second}");
    Ok(
        match (
            one.as_deref() == Some(&first),
            both.as_deref() == Some(&expected),
        ) {
            (true, true) => Verdict::Pass("two tokens set, both read back".into()),
            _ => Verdict::Fail(format!(
                "after setting {first:?} it read {one:?}; after adding {second:?} it read {both:?}"
            )),
        },
    )
}

/// The value of a server entry `/shared/vendor/deltachat/<name>`.
async fn vendor_entry(probe: &Probe, name: &str) -> Result<Option<String>> {
    let (_, mut imap) = probe.account().await?;
    let value = imap
        .get_server_metadata(&format!("{VENDOR}/{name}"))
        .await?;
    imap.logout().await?;
    Ok(value)
}

async fn appversions(probe: &Probe) -> Result<Verdict> {
    let Some(value) = vendor_entry(probe, "appversions").await? else {
        return Ok(Verdict::Fail("the relay answers NIL".into()));
    };
    let json: serde_json::Value =
        serde_json::from_str(&value).with_context(|| format!("not JSON: {value:?}"))?;
    let clients: Vec<&str> = json
        .get("clients")
        .and_then(serde_json::Value::as_array)
        .map(|clients| {
            clients
                .iter()
                .filter_map(|c| c.get("clientId").and_then(serde_json::Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    Ok(match clients.is_empty() {
        true => Verdict::Fail(format!("no clients in {value}")),
        false => Verdict::Pass(format!("clients: {}", clients.join(", "))),
    })
}

async fn turn(probe: &Probe) -> Result<Verdict> {
    let Some(value) = vendor_entry(probe, "turn").await? else {
        return Ok(Verdict::Fail(
            "the relay answers NIL (is chatmail-turn running?)".into(),
        ));
    };
    Ok(match value.split(':').collect::<Vec<_>>()[..] {
        [host, "3478", user, password]
            if !host.is_empty() && !user.is_empty() && !password.is_empty() =>
        {
            match stun::binding(&probe.relay).await {
                Ok(()) => Verdict::Pass(format!(
                    "{host}:3478 with credentials; the server answers STUN"
                )),
                Err(err) => Verdict::Fail(format!("credentials given, but {err:#}")),
            }
        }
        _ => Verdict::Fail(format!("expected HOST:3478:USER:PASSWORD, got {value:?}")),
    })
}

async fn iroh_relay(probe: &Probe) -> Result<Verdict> {
    let value = vendor_entry(probe, "irohrelay").await?;
    let expected = &probe.relay.iroh_relay;
    Ok(match (value, expected.is_empty()) {
        (None, true) => Verdict::Pass("none announced (iroh_relay is empty)".into()),
        (Some(value), false) if value == *expected => Verdict::Pass(value),
        (value, _) => Verdict::Fail(format!(
            "announces {value:?}, the settings say {expected:?}"
        )),
    })
}

async fn new_account(probe: &Probe) -> Result<Verdict> {
    let account = web::new_account(&probe.relay, &probe.tls).await?;
    let suffix = format!("@{}", probe.relay.mail_domain);
    if !account.addr.ends_with(&suffix) {
        return Ok(Verdict::Fail(format!(
            "suggested {}, not an address {suffix}",
            account.addr
        )));
    }
    if account.password.len() < probe.relay.password_min_length {
        return Ok(Verdict::Fail(format!(
            "suggested a {}-character password, shorter than password_min_length",
            account.password.len()
        )));
    }
    probe.login(&account).await?.logout().await?;
    Ok(Verdict::Pass(format!("{} logs in", account.addr)))
}

async fn tls_certificate(probe: &Probe) -> Result<Verdict> {
    if probe.relay.self_signed {
        return Ok(Verdict::Skip(
            "the relay signs its own certificate (tls mode self)".into(),
        ));
    }
    let mut problems = Vec::new();
    for port in [crate::imap::PORT, smtp::SUBMISSION_PORT, web::PORT] {
        if let Err(err) = connect::tls(&probe.relay, &probe.tls, port).await {
            problems.push(format!("{port}: {err:#}"));
        }
    }
    Ok(match problems.is_empty() {
        true => Verdict::Pass(format!(
            "valid for {} on 993, 465, 443",
            probe.relay.tls_name
        )),
        false => Verdict::Fail(problems.join("; ")),
    })
}
