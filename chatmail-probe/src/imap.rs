//! IMAP as a Delta Chat client speaks it to the relay (async-imap, the client library Delta
//! Chat itself uses): login over implicit TLS on 993, capabilities, METADATA, and waiting
//! with IDLE for a message to arrive.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use async_imap::extensions::idle::IdleResponse;
use futures_util::TryStreamExt as _;
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::connect::{self, TIMEOUT};
use crate::{Account, Relay};

/// IMAP over implicit TLS.
pub const PORT: u16 = 993;

type Stream = TlsStream<TcpStream>;

/// A logged-in IMAP session.
#[derive(Debug)]
pub struct Imap {
    /// `None` only while IDLE holds the session, or after an IDLE failed.
    session: Option<async_imap::Session<Stream>>,
}

/// Why a login did not succeed: the server said no, or the connection failed.
#[derive(Debug)]
pub enum LoginError {
    /// The server refused the credentials (`NO`/`BAD`), with its text.
    Refused(String),
    /// Anything else: no connection, no TLS, a broken exchange.
    Failed(anyhow::Error),
}

impl std::fmt::Display for LoginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoginError::Refused(text) => write!(f, "login refused: {text}"),
            LoginError::Failed(err) => write!(f, "{err:#}"),
        }
    }
}

impl Imap {
    /// Connects and logs in as `account` (the relay creates an unknown account on its first
    /// login).
    pub async fn login(
        relay: &Relay,
        tls: &Arc<ClientConfig>,
        account: &Account,
    ) -> Result<Imap, LoginError> {
        let stream = connect::tls(relay, tls, PORT)
            .await
            .map_err(LoginError::Failed)?;
        let mut client = async_imap::Client::new(stream);
        let greeting = timed(client.read_response())
            .await
            .and_then(|r| r.context("reading the IMAP greeting"))
            .map_err(LoginError::Failed)?;
        if greeting.is_none() {
            return Err(LoginError::Failed(anyhow::anyhow!(
                "the IMAP server closed the connection before its greeting"
            )));
        }
        match tokio::time::timeout(TIMEOUT, client.login(&account.addr, &account.password)).await {
            Err(_) => Err(LoginError::Failed(anyhow::anyhow!("IMAP LOGIN timed out"))),
            Ok(Ok(session)) => Ok(Imap {
                session: Some(session),
            }),
            Ok(Err((
                async_imap::error::Error::No(text) | async_imap::error::Error::Bad(text),
                _,
            ))) => Err(LoginError::Refused(text)),
            Ok(Err((err, _))) => Err(LoginError::Failed(
                anyhow::Error::new(err).context("IMAP LOGIN"),
            )),
        }
    }

    /// Whether the server announces `capability` (after login).
    pub async fn has_capability(&mut self, capability: &str) -> Result<bool> {
        let capabilities = timed(self.session()?.capabilities())
            .await?
            .context("IMAP CAPABILITY")?;
        Ok(capabilities.has_str(capability))
    }

    /// `SETMETADATA INBOX (<entry> "<value>")`.
    pub async fn set_metadata(&mut self, entry: &str, value: &str) -> Result<()> {
        let command = format!("SETMETADATA INBOX ({entry} {})", quoted(value)?);
        timed(self.session()?.run_command_and_check_ok(&command))
            .await?
            .with_context(|| format!("IMAP SETMETADATA {entry}"))
    }

    /// `GETMETADATA "" <entry>`, a server entry: its value, `None` for NIL.
    pub async fn get_server_metadata(&mut self, entry: &str) -> Result<Option<String>> {
        let found = timed(self.session()?.get_metadata("", "", entry))
            .await?
            .with_context(|| format!("IMAP GETMETADATA \"\" {entry}"))?;
        Ok(found
            .into_iter()
            .find(|metadata| metadata.entry == entry)
            .and_then(|metadata| metadata.value))
    }

    /// `GETMETADATA INBOX <entry>`: its value, `None` for NIL. Exchanged by hand on the
    /// session's connection: async-imap's parser (imap-proto 0.17) takes the mailbox of a
    /// METADATA response only as a quoted string, and Dovecot sends `INBOX` as an atom.
    pub async fn get_inbox_metadata(&mut self, entry: &str) -> Result<Option<String>> {
        let stream = self.session()?.get_mut();
        let exchange = async {
            stream
                .write_all(format!("{RAW_TAG} GETMETADATA INBOX {entry}\r\n").as_bytes())
                .await?;
            stream.flush().await?;
            let mut received = Vec::new();
            let mut buffer = [0; 4096];
            loop {
                if let Some(end) = tagged_end(&received) {
                    received.truncate(end);
                    return anyhow::Ok(received);
                }
                let n = stream.read(&mut buffer).await?;
                if n == 0 {
                    bail!("the connection closed");
                }
                received.extend_from_slice(&buffer[..n]);
                if received.len() > MAX_RAW {
                    bail!("the answer is longer than {MAX_RAW} bytes");
                }
            }
        };
        let received = timed(exchange)
            .await?
            .with_context(|| format!("IMAP GETMETADATA INBOX {entry}"))?;
        metadata_value(&received, entry).with_context(|| format!("IMAP GETMETADATA INBOX {entry}"))
    }

    /// Waits (with IDLE) until the INBOX holds more than `known` messages, at most `wait`,
    /// and returns the newest one's bytes and when it was seen.
    pub async fn wait_for_message(
        &mut self,
        wait: Duration,
        known: u32,
    ) -> Result<(Vec<u8>, Instant)> {
        let deadline = Instant::now() + wait;
        loop {
            let mailbox = timed(self.session()?.select("INBOX"))
                .await?
                .context("IMAP SELECT INBOX")?;
            if mailbox.exists > known {
                let seen = Instant::now();
                return Ok((self.fetch(mailbox.exists).await?, seen));
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                bail!("no message arrived within {} s", wait.as_secs());
            };
            self.idle(left).await?;
        }
    }

    /// IDLE until the server tells of a change or `wait` passes.
    async fn idle(&mut self, wait: Duration) -> Result<()> {
        // The session moves into the IDLE handle and comes back with DONE.
        let session = self.session.take().context("the IMAP session was lost")?;
        let mut idle = session.idle();
        timed(idle.init()).await?.context("IMAP IDLE")?;
        let (waiting, _stop) = idle.wait_with_timeout(wait);
        let response = waiting.await.context("IMAP IDLE")?;
        self.session = Some(timed(idle.done()).await?.context("IMAP DONE")?);
        match response {
            IdleResponse::NewData(_) | IdleResponse::Timeout | IdleResponse::ManualInterrupt => {
                Ok(())
            }
        }
    }

    /// The message with sequence number `seq`.
    async fn fetch(&mut self, seq: u32) -> Result<Vec<u8>> {
        let session = self.session()?;
        let fetches: Vec<_> = timed(async {
            session
                .fetch(seq.to_string(), "BODY.PEEK[]")
                .await?
                .try_collect()
                .await
        })
        .await?
        .context("IMAP FETCH")?;
        fetches
            .iter()
            .find_map(|fetch| fetch.body().map(<[u8]>::to_vec))
            .with_context(|| format!("IMAP FETCH {seq} returned no body"))
    }

    fn session(&mut self) -> Result<&mut async_imap::Session<Stream>> {
        self.session.as_mut().context("the IMAP session was lost")
    }

    /// Logs out, politely.
    pub async fn logout(mut self) -> Result<()> {
        timed(self.session()?.logout())
            .await?
            .context("IMAP LOGOUT")
    }
}

/// The tag of the commands exchanged by hand (async-imap's own are `A<number>`).
const RAW_TAG: &str = "PROBE";
/// The longest answer to such a command.
const MAX_RAW: usize = 64 * 1024;

/// Where the tagged completion line of [`RAW_TAG`] ends in `received`, once it is complete.
fn tagged_end(received: &[u8]) -> Option<usize> {
    let mut start = 0;
    while let Some(offset) = received[start..].windows(2).position(|w| w == b"\r\n") {
        let end = start + offset + 2;
        if received[start..].starts_with(format!("{RAW_TAG} ").as_bytes()) {
            return Some(end);
        }
        start = end;
    }
    None
}

/// The value of `entry` in the answer to `GETMETADATA`: `NIL`, a quoted string or a literal;
/// an error unless the command completed with OK.
fn metadata_value(received: &[u8], entry: &str) -> Result<Option<String>> {
    let text = String::from_utf8_lossy(received);
    let last = text.trim_end().rsplit("\r\n").next().unwrap_or_default();
    if !last.starts_with(&format!("{RAW_TAG} OK")) {
        bail!("the server answered {last:?}");
    }
    let marker = format!("({entry} ");
    let Some(at) = text.find(&marker) else {
        bail!("no value in {text:?}");
    };
    let rest = &text[at + marker.len()..];
    if rest.starts_with("NIL") {
        return Ok(None);
    }
    if let Some(quoted) = rest.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = quoted.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Ok(Some(value)),
                '\\' => value.extend(chars.next()),
                c => value.push(c),
            }
        }
        bail!("unterminated string in {text:?}");
    }
    let literal = rest
        .strip_prefix('{')
        .and_then(|r| r.split_once("}\r\n"))
        .and_then(|(size, data)| Some((size.parse::<usize>().ok()?, data)));
    match literal {
        Some((size, data)) if data.len() >= size => Ok(Some(data[..size].to_owned())),
        _ => bail!("cannot read the value in {text:?}"),
    }
}

/// `future` with the exchange timeout.
async fn timed<T>(future: impl Future<Output = T>) -> Result<T> {
    tokio::time::timeout(TIMEOUT, future)
        .await
        .context("the IMAP server did not answer in time")
}

/// `value` as an IMAP quoted string (no CR, LF or NUL allowed).
fn quoted(value: &str) -> Result<String> {
    if value.contains(['\r', '\n', '\0']) {
        bail!("{value:?} cannot be sent as an IMAP string");
    }
    Ok(format!(
        "\"{}\"",
        value.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_values_are_read_as_nil_quoted_or_literal() {
        let entry = "/private/devicetoken";
        let answer = |value: &str| {
            format!("* METADATA INBOX ({entry} {value})\r\nPROBE OK Getmetadata completed.\r\n")
        };
        let literal = answer("{9}\r\n1111 2222");
        assert_eq!(tagged_end(literal.as_bytes()), Some(literal.len()));
        assert_eq!(tagged_end(&literal.as_bytes()[..literal.len() - 1]), None);
        let value = |text: &str| metadata_value(text.as_bytes(), entry).unwrap();
        assert_eq!(value(&literal).as_deref(), Some("1111 2222"));
        assert_eq!(
            value(&answer("\"a \\\"b\\\"\"")).as_deref(),
            Some("a \"b\"")
        );
        assert_eq!(value(&answer("NIL")), None);
        let refused = "PROBE NO [NOPERM] Permission denied\r\n";
        assert!(metadata_value(refused.as_bytes(), entry).is_err());
    }
}
