//! SMTP to the relay with lettre's connection: submission with a login on 465 (implicit TLS),
//! as Delta Chat sends, and delivery without one on 25 (STARTTLS), as another relay would. The
//! envelope is written as given: lettre's address type refuses the `_`-domains of relays
//! without a public certificate. A refusal keeps the server's reply code, which the checks
//! compare.

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::Data;
use lettre::transport::smtp::extension::ClientId;

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

/// A connection past EHLO: logged in on the submission port as `login`, or after STARTTLS
/// on port 25 without one.
async fn connect(relay: &Relay, login: Option<&Account>) -> Result<AsyncSmtpConnection, SendError> {
    let tls = || {
        TlsParameters::builder(relay.tls_name.clone())
            .dangerous_accept_invalid_certs(relay.self_signed)
            .build_rustls()
            .map_err(|err| SendError::Failed(anyhow::Error::new(err).context("TLS settings")))
    };
    let hello = ClientId::default();
    let host = relay.host.as_str();
    Ok(match login {
        Some(account) => {
            let mut connection = AsyncSmtpConnection::connect_tokio1(
                (host, SUBMISSION_PORT),
                Some(TIMEOUT),
                &hello,
                Some(tls()?),
                None,
            )
            .await?;
            let credentials = Credentials::new(account.addr.clone(), account.password.clone());
            connection
                .auth(&[Mechanism::Plain, Mechanism::Login], &credentials)
                .await?;
            connection
        }
        None => {
            let mut connection = AsyncSmtpConnection::connect_tokio1(
                (host, RELAY_PORT),
                Some(TIMEOUT),
                &hello,
                None,
                None,
            )
            .await?;
            connection.starttls(tls()?, &hello).await?;
            connection
        }
    })
}

/// MAIL, RCPT and DATA for `message` from `from` to `to`, then QUIT.
async fn send(
    mut connection: AsyncSmtpConnection,
    from: &str,
    to: &str,
    message: &[u8],
) -> Result<(), SendError> {
    for address in [from, to] {
        if address.contains(['<', '>', '\r', '\n']) {
            return Err(SendError::Failed(anyhow::anyhow!(
                "{address:?} cannot stand in an envelope"
            )));
        }
    }
    connection
        .command(format!("MAIL FROM:<{from}>\r\n"))
        .await?;
    connection.command(format!("RCPT TO:<{to}>\r\n")).await?;
    connection.command(Data).await?;
    connection.message(message).await?;
    connection.quit().await?;
    Ok(())
}

/// Connects to the submission port and logs in as `account`.
pub async fn login(relay: &Relay, account: &Account) -> Result<(), SendError> {
    let mut connection = connect(relay, Some(account)).await?;
    connection.quit().await?;
    Ok(())
}

/// Submits `message` as `account` with the envelope `from` → `to`.
pub async fn submit(
    relay: &Relay,
    account: &Account,
    from: &str,
    to: &str,
    message: &[u8],
) -> Result<(), SendError> {
    send(connect(relay, Some(account)).await?, from, to, message).await
}

/// Delivers `message` on port 25 without a login, as another relay would.
pub async fn deliver(relay: &Relay, from: &str, to: &str, message: &[u8]) -> Result<(), SendError> {
    send(connect(relay, None).await?, from, to, message).await
}
