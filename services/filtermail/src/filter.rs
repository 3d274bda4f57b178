//! The mail handler behind both front doors (SMTP and HTTP `/mxdeliv`): rate limit at
//! `MAIL FROM`, then after the data the acceptance rules, DKIM, and reinjection into Postfix.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

use chatmail_config::Config;

use crate::dkim::DkimVerifier;
use crate::ratelimit::RateLimiter;
use crate::reinject::Reinjector;
use crate::rules::{Accepted, Parsed};
use crate::session::{Handler, Protocol};
use crate::smtp::{Envelope, Reply};

/// Which side of the relay this filter guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Mail submitted by the relay's users (Postfix submission, reinjected on 10025).
    Outgoing,
    /// Mail arriving from other servers (Postfix port 25 and HTTP `/mxdeliv`, reinjected on 10026).
    Incoming,
}

impl Mode {
    /// The prefix of the log lines that mtail counts.
    fn log_name(self) -> &'static str {
        match self {
            Mode::Outgoing => "Outgoing",
            Mode::Incoming => "Incoming",
        }
    }
}

/// The file whose presence in an account's folder refuses incoming cleartext.
pub const ENFORCE_E2EE_FILE: &str = "enforceE2EEincoming";

/// Checks and forwards mail for one mode.
#[derive(Debug)]
pub struct Filter {
    mode: Mode,
    config: Config,
    limiter: RateLimiter,
    dkim: Option<DkimVerifier>,
    reinjector: Reinjector,
}

impl Filter {
    /// A filter for `mode` that reinjects into Postfix at `reinject` and verifies DKIM on
    /// incoming mail when `dkim` is given.
    pub fn new(
        mode: Mode,
        config: Config,
        dkim: Option<DkimVerifier>,
        reinject: SocketAddr,
    ) -> Filter {
        Filter {
            mode,
            limiter: RateLimiter::new(
                config.max_user_send_per_minute,
                config.max_user_send_burst_size,
            ),
            config,
            dkim,
            reinjector: Reinjector::new(reinject),
        }
    }

    /// Checks a complete message and, when it passes, hands it to Postfix. The reply is
    /// Postfix's rejection if it refuses the message, else `250 OK` or the filter's refusal.
    pub async fn handle(&self, envelope: &Envelope, raw: &[u8]) -> Reply {
        if let Err(reply) = self.check(envelope, raw).await {
            return reply;
        }
        // Incoming mail is reinjected as a bounce: Postfix must never send a non-delivery
        // notice to a sender address that other servers chose.
        let sender = match self.mode {
            Mode::Outgoing => envelope.mail_from.as_str(),
            Mode::Incoming => "",
        };
        match self.reinjector.send(sender, &envelope.rcpts, raw).await {
            Ok(reply) if reply.is_positive() => Reply::ok(),
            Ok(reply) => {
                log::warn!("Postfix refused reinjected mail: {reply}");
                reply
            }
            Err(err) => {
                log::error!("Reinjection failed: {err:#}");
                Reply::new(451, format!("4.3.0 Reinjection failed: {err:#}"))
            }
        }
    }

    async fn check(&self, envelope: &Envelope, raw: &[u8]) -> Result<(), Reply> {
        let direction = self.mode.log_name();
        let parsed = Parsed::parse(raw).inspect_err(|reply| log::warn!("Rejected: {reply}"))?;
        let verdict = match self.mode {
            Mode::Outgoing => parsed.check_outgoing(envelope),
            Mode::Incoming => parsed.check_incoming(envelope, |rcpt| self.cleartext_ok(rcpt)),
        };
        match &verdict {
            Ok(Accepted::Encrypted) => log::info!("{direction}: Filtering encrypted mail."),
            Ok(_) => log::info!("{direction}: Filtering unencrypted mail."),
            Err(reply) if reply.code == 523 => {
                log::info!("{direction}: Filtering unencrypted mail.");
                log::info!("Rejected unencrypted mail.");
            }
            Err(reply) => log::warn!("Rejected: {reply}"),
        }
        if verdict? == Accepted::MailerDaemon {
            log::info!(
                "Incoming: Filtering mailer-daemon message from {}",
                parsed.from
            );
        }
        if let Some(dkim) = &self.dkim {
            self.check_origin(dkim, &parsed.from, envelope, raw).await?;
        }
        Ok(())
    }

    /// Incoming mail from a named domain must carry that domain's DKIM signature. Mail from an
    /// address literal (`user@[1.2.3.4]`) has no DNS to check and passes.
    async fn check_origin(
        &self,
        dkim: &DkimVerifier,
        from: &str,
        envelope: &Envelope,
        raw: &[u8],
    ) -> Result<(), Reply> {
        let domain = from.rsplit_once('@').map_or("", |(_, d)| d);
        if domain.starts_with('[') {
            return Ok(());
        }
        dkim.verify(raw, domain).await.inspect_err(|reply| {
            let client = envelope.origin_ip.as_deref().unwrap_or("unknown");
            log::warn!("Rejected mail from {from} (client {client}): {reply}");
        })
    }

    /// Whether `rcpt` accepts cleartext: its account folder has no `enforceE2EEincoming`.
    /// An invalid address or an unreadable folder counts as "no".
    fn cleartext_ok(&self, rcpt: &str) -> bool {
        self.config
            .mailbox_dir(rcpt)
            .is_ok_and(|dir| flag_absent(&dir.join(ENFORCE_E2EE_FILE)))
    }
}

impl Handler for Filter {
    const PROTOCOL: Protocol = Protocol::Smtp;

    /// The largest message accepted, in bytes.
    fn max_message_size(&self) -> usize {
        usize::try_from(self.config.max_message_size).unwrap_or(usize::MAX)
    }

    /// Checks the sender at `MAIL FROM`; on `Err` the reply is sent and the connection closed.
    fn mail_from(&self, addr: &str) -> Result<(), Reply> {
        if self.mode == Mode::Incoming {
            return Ok(());
        }
        if addr.matches('@').count() != 1 {
            return Err(Reply::new(500, format!("Invalid from address <{addr}>")));
        }
        self.limiter.check(addr, Instant::now()).map_err(|wait| {
            log::warn!("Rate limit reached for {addr}");
            Reply::new(
                450,
                format!(
                    "4.7.1: Too much mail from {addr}, try again in {:.1} s",
                    wait.as_secs_f64()
                ),
            )
        })
    }

    async fn deliver(&self, envelope: &Envelope, message: Vec<u8>) -> Vec<Reply> {
        vec![self.handle(envelope, &message).await]
    }
}

fn flag_absent(path: &Path) -> bool {
    matches!(path.try_exists(), Ok(false))
}
