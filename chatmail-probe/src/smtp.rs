//! SMTP to the relay with lettre: submission with a login on 465 (implicit TLS), as Delta
//! Chat sends, and delivery without one on 25 (STARTTLS), as another relay would. A refusal
//! keeps the server's reply code, which the checks compare.

use anyhow::Context as _;
use lettre::address::{Address, Envelope};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor};

use crate::connect::TIMEOUT;
use crate::{Account, Relay};

/// Submission over implicit TLS.
pub const SUBMISSION_PORT: u16 = 465;
/// Relay-to-relay delivery.
pub const RELAY_PORT: u16 = 25;

/// Why mail was not taken.
#[derive(Debug)]
pub enum SendError {
    /// The server answered with an error reply: its code and the whole error.
    Refused { code: u16, text: String },
    /// No reply to judge: no connection, no TLS, a broken exchange.
    Failed(anyhow::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Refused { text, .. } => write!(f, "refused: {text}"),
            SendError::Failed(err) => write!(f, "{err:#}"),
        }
    }
}

impl From<lettre::transport::smtp::Error> for SendError {
    fn from(err: lettre::transport::smtp::Error) -> SendError {
        match err.status().and_then(|code| code.to_string().parse().ok()) {
            Some(code) => SendError::Refused {
                code,
                text: err.to_string(),
            },
            None => SendError::Failed(anyhow::Error::new(err).context("SMTP")),
        }
    }
}

/// Where and how to send: port, TLS, and a login for submission.
fn transport(
    relay: &Relay,
    login: Option<&Account>,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, SendError> {
    let tls = TlsParameters::builder(relay.tls_name.clone())
        .dangerous_accept_invalid_certs(relay.self_signed)
        .build_rustls()
        .map_err(|err| SendError::Failed(anyhow::Error::new(err).context("TLS settings")))?;
    let builder =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&relay.host).timeout(Some(TIMEOUT));
    Ok(match login {
        Some(account) => builder
            .port(SUBMISSION_PORT)
            .tls(Tls::Wrapper(tls))
            .credentials(Credentials::new(
                account.addr.clone(),
                account.password.clone(),
            )),
        None => builder.port(RELAY_PORT).tls(Tls::Required(tls)),
    }
    .build())
}

/// Connects to the submission port and logs in as `account`.
pub async fn login(relay: &Relay, account: &Account) -> Result<(), SendError> {
    let connected = transport(relay, Some(account))?.test_connection().await?;
    match connected {
        true => Ok(()),
        false => Err(SendError::Failed(anyhow::anyhow!(
            "the submission server did not answer NOOP after the login"
        ))),
    }
}

/// Submits `message` as `account` with the envelope `from` → `to`.
pub async fn submit(
    relay: &Relay,
    account: &Account,
    from: &str,
    to: &str,
    message: &[u8],
) -> Result<(), SendError> {
    let transport = transport(relay, Some(account))?;
    transport.send_raw(&envelope(from, to)?, message).await?;
    Ok(())
}

/// Delivers `message` on port 25 without a login, as another relay would.
pub async fn deliver(relay: &Relay, from: &str, to: &str, message: &[u8]) -> Result<(), SendError> {
    let transport = transport(relay, None)?;
    transport.send_raw(&envelope(from, to)?, message).await?;
    Ok(())
}

fn envelope(from: &str, to: &str) -> Result<Envelope, SendError> {
    let address = |text: &str| {
        text.parse::<Address>()
            .with_context(|| format!("{text:?} is not an address"))
    };
    (|| Ok(Envelope::new(Some(address(from)?), vec![address(to)?])?))().map_err(SendError::Failed)
}
