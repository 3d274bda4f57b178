//! The SMTP client side: one connection to an SMTP server, used to reinject mail into Postfix
//! and by the transport to deliver to remote relays on port 25 (with STARTTLS).
//!
//! Hand-written rather than a general mail library because the filter must pass the server's
//! reply code and text through unchanged (Postfix's refusal to the submitting client, a remote
//! relay's refusal to the local Postfix), and needs nothing beyond EHLO, STARTTLS and one
//! transaction.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufStream};
use tokio::time::timeout;

use crate::smtp::{Line, Reply, read_line};

/// How long one reply may take (Postfix's own `smtp_*_timeout` are similar).
const REPLY_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest reply line accepted.
const MAX_REPLY_LINE: usize = 4096;

/// One SMTP connection over `S` (TCP, or TLS after STARTTLS).
#[derive(Debug)]
pub struct Client<S> {
    stream: BufStream<S>,
    /// The server, for error messages.
    server: String,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// A client on a connection whose greeting, if any, has not been read yet.
    pub fn new(stream: S, server: impl Into<String>) -> Client<S> {
        Client {
            stream: BufStream::new(stream),
            server: server.into(),
        }
    }

    /// Sends one command line and reads the reply.
    pub async fn command(&mut self, line: &str) -> Result<Reply> {
        self.stream.write_all(line.as_bytes()).await?;
        self.stream.write_all(b"\r\n").await?;
        self.stream.flush().await?;
        self.reply()
            .await
            .with_context(|| format!("after {:?}", line.split(':').next().unwrap_or(line)))
    }

    /// `MAIL FROM` (empty `sender` for `<>`), one `RCPT TO` per recipient, `DATA` and the
    /// message. `Ok` holds the final reply or the first refusal; `Err` means the conversation
    /// broke down.
    pub async fn transaction(
        &mut self,
        sender: &str,
        rcpts: &[String],
        message: &[u8],
    ) -> Result<Reply> {
        let mut steps = vec![format!("MAIL FROM:<{sender}>")];
        steps.extend(rcpts.iter().map(|r| format!("RCPT TO:<{r}>")));
        steps.push("DATA".to_owned());
        for step in &steps {
            let reply = self.command(step).await?;
            if !reply.is_positive() {
                return Ok(reply);
            }
        }
        self.write_data(message).await?;
        self.reply().await
    }

    /// Ends the session. The message is queued or refused either way, so a failing QUIT
    /// changes nothing and is ignored.
    pub async fn quit(mut self) {
        let _ = self.command("QUIT").await;
    }

    /// The connection, for the TLS handshake after `STARTTLS`.
    pub fn into_inner(self) -> S {
        self.stream.into_inner()
    }

    /// Writes the message dot-stuffed, then the terminating `.`.
    async fn write_data(&mut self, message: &[u8]) -> Result<()> {
        for line in message.split_inclusive(|b| *b == b'\n') {
            if line.first() == Some(&b'.') {
                self.stream.write_all(b".").await?;
            }
            self.stream.write_all(line).await?;
        }
        if !message.is_empty() && !message.ends_with(b"\r\n") {
            self.stream.write_all(b"\r\n").await?;
        }
        self.stream.write_all(b".\r\n").await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Reads one (possibly multi-line) reply.
    pub async fn reply(&mut self) -> Result<Reply> {
        let mut lines = Vec::new();
        loop {
            let mut buf = Vec::new();
            let status = timeout(
                REPLY_TIMEOUT,
                read_line(&mut self.stream, &mut buf, MAX_REPLY_LINE),
            )
            .await
            .with_context(|| format!("timeout waiting for {}", self.server))??;
            if status != Line::Complete {
                bail!(
                    "{} closed the connection or sent an overlong line",
                    self.server
                );
            }
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end_matches(['\r', '\n']);
            let malformed = || format!("malformed reply from {}: {line:?}", self.server);
            let (Some(digits), sep) = (line.get(..3), line.as_bytes().get(3)) else {
                bail!(malformed());
            };
            let code: u16 = digits.parse().with_context(malformed)?;
            lines.push(line.get(4..).unwrap_or_default().to_owned());
            if sep != Some(&b'-') {
                return Ok(Reply::new(code, lines.join("\n")));
            }
        }
    }
}
