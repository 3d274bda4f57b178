//! The SMTP client that hands accepted mail back to Postfix's reinjection `smtpd`.
//!
//! Hand-written rather than a general mail library because the filter must pass Postfix's
//! reply code and text through unchanged, and talks only to a local Postfix without TLS/AUTH.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::timeout;

use crate::smtp::{Line, Reply, read_line};

/// How long one reply from Postfix may take (Postfix's own `smtp_*_timeout` are similar).
const REPLY_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest reply line accepted from Postfix.
const MAX_REPLY_LINE: usize = 4096;

/// Sends messages to one Postfix `smtpd`, one connection per message.
#[derive(Debug, Clone)]
pub struct Reinjector {
    addr: SocketAddr,
}

impl Reinjector {
    pub fn new(addr: SocketAddr) -> Reinjector {
        Reinjector { addr }
    }

    /// Sends `message` from `sender` (empty for `<>`) to `rcpts`. `Ok` holds Postfix's final
    /// reply, or its first refusal; `Err` means Postfix could not be talked to.
    pub async fn send(&self, sender: &str, rcpts: &[String], message: &[u8]) -> Result<Reply> {
        let stream = timeout(REPLY_TIMEOUT, TcpStream::connect(self.addr))
            .await
            .with_context(|| format!("timeout connecting to {}", self.addr))?
            .with_context(|| format!("cannot connect to {}", self.addr))?;
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        let mut conn = Connection {
            reader: BufReader::new(read),
            writer: BufWriter::new(write),
        };
        let reply = conn.transaction(sender, rcpts, message).await?;
        // The message is queued or refused either way; a failing QUIT changes nothing.
        let _ = conn.command("QUIT").await;
        Ok(reply)
    }
}

struct Connection {
    reader: BufReader<OwnedReadHalf>,
    writer: BufWriter<OwnedWriteHalf>,
}

impl Connection {
    async fn transaction(
        &mut self,
        sender: &str,
        rcpts: &[String],
        message: &[u8],
    ) -> Result<Reply> {
        let greeting = self.reply().await?;
        if !greeting.is_positive() {
            return Ok(greeting);
        }
        let mut steps = vec![
            "EHLO filtermail".to_owned(),
            format!("MAIL FROM:<{sender}>"),
        ];
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

    async fn command(&mut self, line: &str) -> Result<Reply> {
        self.writer.write_all(line.as_bytes()).await?;
        self.writer.write_all(b"\r\n").await?;
        self.writer.flush().await?;
        self.reply()
            .await
            .with_context(|| format!("after {:?}", line.split(':').next().unwrap_or(line)))
    }

    /// Writes the message dot-stuffed, then the terminating `.`.
    async fn write_data(&mut self, message: &[u8]) -> Result<()> {
        for line in message.split_inclusive(|b| *b == b'\n') {
            if line.first() == Some(&b'.') {
                self.writer.write_all(b".").await?;
            }
            self.writer.write_all(line).await?;
        }
        if !message.is_empty() && !message.ends_with(b"\r\n") {
            self.writer.write_all(b"\r\n").await?;
        }
        self.writer.write_all(b".\r\n").await?;
        self.writer.flush().await?;
        Ok(())
    }

    /// Reads one (possibly multi-line) reply.
    async fn reply(&mut self) -> Result<Reply> {
        let mut lines = Vec::new();
        loop {
            let mut buf = Vec::new();
            let status = timeout(
                REPLY_TIMEOUT,
                read_line(&mut self.reader, &mut buf, MAX_REPLY_LINE),
            )
            .await
            .context("timeout waiting for Postfix")??;
            if status != Line::Complete {
                bail!("Postfix closed the connection or sent an overlong line");
            }
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end_matches(['\r', '\n']);
            let (Some(digits), sep) = (line.get(..3), line.as_bytes().get(3)) else {
                bail!("malformed reply from Postfix: {line:?}");
            };
            let code: u16 = digits
                .parse()
                .with_context(|| format!("malformed reply from Postfix: {line:?}"))?;
            lines.push(line.get(4..).unwrap_or_default().to_owned());
            if sep != Some(&b'-') {
                return Ok(Reply::new(code, lines.join("\n")));
            }
        }
    }
}
