//! One SMTP or LMTP connection on the server side: the dialect Postfix's `smtpd_proxy_filter`
//! speaks (greeting, EHLO with XFORWARD, MAIL/RCPT/DATA, RSET, NOOP, QUIT), or its `lmtp`
//! client (LHLO instead of HELO/EHLO, one reply per recipient after the data).
//!
//! Any input is survivable and answered: overlong lines, bare LF in the data, unknown commands
//! and timeouts get an SMTP error reply and a log line naming the client; only a client that
//! vanishes is left without a reply. None of it ends the process.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::time::timeout;

use crate::smtp::{Envelope, Line, Reply, extract_address, read_line};

/// How long the client may stay silent (Postfix's `smtpd_timeout` default).
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest command line accepted.
const MAX_COMMAND_LINE: usize = 4096;
/// Chunk size while discarding the rest of a refused message.
const DISCARD_CHUNK: usize = 64 * 1024;
/// Errors after which the client is disconnected (Postfix's `smtpd_hard_error_limit`).
const MAX_ERRORS: u32 = 20;

/// The two dialects: they differ in the greeting command and the replies after the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `HELO`/`EHLO`; one reply after the data.
    Smtp,
    /// `LHLO` (RFC 2033); one reply per accepted recipient after the data, in RCPT order.
    Lmtp,
}

/// What a session hands the mail to.
pub trait Handler: Sync {
    /// The dialect spoken to clients.
    const PROTOCOL: Protocol;

    /// Checks the sender at `MAIL FROM`; on `Err` the reply is sent and the connection closed.
    fn mail_from(&self, addr: &str) -> Result<(), Reply>;

    /// The largest message accepted, in bytes.
    fn max_message_size(&self) -> usize;

    /// Handles a complete message. The replies to send: one for SMTP, one per recipient
    /// (in RCPT order) for LMTP.
    fn deliver(
        &self,
        envelope: &Envelope,
        message: Vec<u8>,
    ) -> impl Future<Output = Vec<Reply>> + Send;
}

/// What to do after a command.
enum Next {
    Continue,
    Close,
}

/// How reading the data ended.
enum Data {
    Message(Vec<u8>),
    /// Refused: the reply to send before closing the connection.
    Refused(Reply),
    /// The client closed the connection mid-data.
    Vanished,
    /// The client went silent mid-data.
    Silent,
}

/// How a timed read ended: a [`Line`] status, or silence past [`IDLE_TIMEOUT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    Line(Line),
    Timeout,
}

/// The reply to a client that stayed silent too long.
fn timeout_reply() -> Reply {
    Reply::new(421, "4.4.2 Timeout, closing connection")
}

/// Serves one client from `peer` until it quits, breaks the protocol or goes silent.
pub async fn serve<S: AsyncRead + AsyncWrite, H: Handler>(
    stream: S,
    peer: SocketAddr,
    handler: &H,
) -> Result<()> {
    let (read, write) = tokio::io::split(stream);
    let mut session = Session {
        reader: BufReader::new(read),
        writer: write,
        peer,
        handler,
        envelope: None,
        origin_ip: None,
        errors: 0,
    };
    let greeting = match H::PROTOCOL {
        Protocol::Smtp => "filtermail SMTP",
        Protocol::Lmtp => "filtermail LMTP",
    };
    session.send(&Reply::new(220, greeting)).await?;
    loop {
        let mut line = Vec::new();
        match session.read_timed(&mut line, MAX_COMMAND_LINE).await? {
            Read::Timeout => return session.refuse(timeout_reply(), "idle timeout").await,
            Read::Line(Line::Eof) => return Ok(()),
            Read::Line(Line::TooLong) => {
                // The rest of an endless line may never come: answer now and hang up.
                let reason = format!("command line longer than {MAX_COMMAND_LINE} bytes");
                return session
                    .refuse(Reply::new(500, "5.5.2 Line too long"), &reason)
                    .await;
            }
            Read::Line(Line::Complete) => {}
        }
        let line = String::from_utf8_lossy(&line);
        if let Next::Close = session.command(line.trim_end_matches(['\r', '\n'])).await? {
            return Ok(());
        }
    }
}

struct Session<'a, S, H> {
    reader: BufReader<ReadHalf<S>>,
    writer: WriteHalf<S>,
    peer: SocketAddr,
    handler: &'a H,
    /// The transaction in progress, from `MAIL FROM` on.
    envelope: Option<Envelope>,
    /// From `XFORWARD ADDR=`; kept for the whole connection.
    origin_ip: Option<String>,
    /// Error replies so far in this connection.
    errors: u32,
}

impl<S: AsyncRead + AsyncWrite, H: Handler> Session<'_, S, H> {
    async fn send(&mut self, reply: &Reply) -> Result<()> {
        self.writer
            .write_all(reply.to_wire().as_bytes())
            .await
            .context("cannot write to the SMTP client")?;
        self.writer.flush().await?;
        Ok(())
    }

    async fn reply(&mut self, code: u16, text: &str) -> Result<Next> {
        self.send(&Reply::new(code, text)).await?;
        Ok(Next::Continue)
    }

    /// Answers a protocol error, logs it with `what` the client sent, and keeps the connection
    /// unless the client has made too many errors.
    async fn error(&mut self, reply: Reply, what: &str) -> Result<Next> {
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            let reason = format!("{what}; {MAX_ERRORS} errors in one connection");
            self.refuse(Reply::new(421, "4.7.0 Too many errors"), &reason)
                .await?;
            return Ok(Next::Close);
        }
        log::warn!("SMTP client {}: {what}: {reply}", self.peer);
        self.send(&reply).await?;
        Ok(Next::Continue)
    }

    /// Sends a final error `reply`, logs it with the `reason`, and ends the connection.
    async fn refuse(&mut self, reply: Reply, reason: &str) -> Result<()> {
        log::warn!(
            "SMTP client {}: {reason}: {reply}, closing the connection",
            self.peer
        );
        self.send(&reply).await
    }

    async fn command(&mut self, line: &str) -> Result<Next> {
        let (verb, arg) = line.split_once(' ').unwrap_or((line, ""));
        match (H::PROTOCOL, verb.to_ascii_uppercase().as_str()) {
            (Protocol::Smtp, "HELO") => self.reply(250, "OK").await,
            (Protocol::Smtp, "EHLO") => self.reply(250, "filtermail\nXFORWARD ADDR\nOK").await,
            (Protocol::Lmtp, "LHLO") => self.reply(250, "filtermail\nOK").await,
            (_, "XFORWARD") => {
                self.xforward(arg);
                self.reply(250, "OK").await
            }
            (_, "MAIL") => self.mail(arg).await,
            (_, "RCPT") => self.rcpt(arg).await,
            (_, "DATA") => self.data().await,
            (_, "RSET") => {
                self.envelope = None;
                self.reply(250, "OK").await
            }
            (_, "NOOP") => self.reply(250, "OK").await,
            (_, "QUIT") => {
                self.send(&Reply::new(221, "OK")).await?;
                Ok(Next::Close)
            }
            _ => {
                let what = format!("unknown command {:?}", truncate(line, 64));
                self.error(Reply::new(500, "Command not recognized"), &what)
                    .await
            }
        }
    }

    /// `XFORWARD NAME=... ADDR=... ...`: only `ADDR` is kept.
    fn xforward(&mut self, arg: &str) {
        for attr in arg.split_whitespace() {
            if let Some((name, value)) = attr.split_once('=')
                && name.eq_ignore_ascii_case("ADDR")
            {
                let value = value.strip_prefix("IPv6:").unwrap_or(value);
                self.origin_ip = Some(value.to_ascii_lowercase());
            }
        }
    }

    async fn mail(&mut self, arg: &str) -> Result<Next> {
        let Some(addr) = strip_keyword(arg, "FROM:").and_then(extract_address) else {
            let what = format!("MAIL {:?}", truncate(arg, 64));
            return self
                .error(Reply::new(500, "Invalid address in MAIL FROM"), &what)
                .await;
        };
        if let Err(reply) = self.handler.mail_from(&addr) {
            self.send(&reply).await?;
            return Ok(Next::Close);
        }
        self.envelope = Some(Envelope {
            mail_from: addr,
            rcpts: Vec::new(),
            origin_ip: self.origin_ip.clone(),
        });
        self.reply(250, "OK").await
    }

    async fn rcpt(&mut self, arg: &str) -> Result<Next> {
        let addr = strip_keyword(arg, "TO:")
            .and_then(extract_address)
            .filter(|a| !a.is_empty());
        let Some(envelope) = &mut self.envelope else {
            let reply = Reply::new(503, "5.5.1 Error: need MAIL command");
            return self.error(reply, "RCPT before MAIL").await;
        };
        match addr {
            Some(addr) => {
                envelope.rcpts.push(addr);
                self.reply(250, "OK").await
            }
            None => {
                let what = format!("RCPT {:?}", truncate(arg, 64));
                self.error(Reply::new(500, "Invalid address in RCPT TO"), &what)
                    .await
            }
        }
    }

    async fn data(&mut self) -> Result<Next> {
        let Some(envelope) = self.envelope.take_if(|e| !e.rcpts.is_empty()) else {
            let reply = Reply::new(503, "5.5.1 Error: need RCPT command");
            return self.error(reply, "DATA before RCPT").await;
        };
        self.send(&Reply::new(354, "End data with <CR><LF>.<CR><LF>"))
            .await?;
        match self.read_data().await? {
            Data::Message(message) => {
                for reply in self.handler.deliver(&envelope, message).await {
                    self.send(&reply).await?;
                }
                Ok(Next::Continue)
            }
            Data::Refused(reply) => {
                // An LMTP client waits for one reply per recipient.
                let copies = match H::PROTOCOL {
                    Protocol::Smtp => 1,
                    Protocol::Lmtp => envelope.rcpts.len(),
                };
                for _ in 1..copies {
                    self.send(&reply).await?;
                }
                self.refuse(reply, "message data refused").await?;
                Ok(Next::Close)
            }
            Data::Vanished => {
                log::info!("SMTP client {} vanished during DATA", self.peer);
                Ok(Next::Close)
            }
            Data::Silent => {
                self.refuse(timeout_reply(), "silent during DATA").await?;
                Ok(Next::Close)
            }
        }
    }

    /// Reads dot-stuffed data up to `.` on a line of its own. Every line must end in CRLF.
    /// Beyond the size limit or after a bare LF the rest is read and dropped, so the client sees
    /// the refusal (a reply sent while it is still writing may be lost in a connection reset).
    async fn read_data(&mut self) -> Result<Data> {
        let max = self.handler.max_message_size();
        let mut message = Vec::new();
        loop {
            let start = message.len();
            // Room for the largest allowed message plus one line terminator, and one byte more
            // to notice that it is too big.
            let room = (max + 3).saturating_sub(start).max(3);
            match self.read_timed(&mut message, room).await? {
                Read::Line(Line::TooLong) => return self.discard_data(false, too_big()).await,
                Read::Line(Line::Complete) => {}
                Read::Line(Line::Eof) => return Ok(Data::Vanished),
                Read::Timeout => return Ok(Data::Silent),
            }
            let line = &message[start..];
            if !line.ends_with(b"\r\n") {
                let reply =
                    Reply::new(500, "5.5.2 Bare LF in message data, lines must end in CRLF");
                return self.discard_data(true, reply).await;
            }
            if line == b".\r\n" {
                message.truncate(start);
                return Ok(Data::Message(message));
            }
            if line[0] == b'.' {
                message.remove(start);
            }
            if message.len() > max {
                return self.discard_data(true, too_big()).await;
            }
        }
    }

    /// Drops data until the end marker (`.` alone on a line, ended by CRLF or a bare LF), then
    /// gives the refusal `reply`. `at_line_start` tells whether the last byte read ended a line.
    async fn discard_data(&mut self, mut at_line_start: bool, reply: Reply) -> Result<Data> {
        let mut chunk = Vec::with_capacity(DISCARD_CHUNK);
        loop {
            chunk.clear();
            match self.read_timed(&mut chunk, DISCARD_CHUNK).await? {
                Read::Line(Line::TooLong) => at_line_start = false,
                Read::Line(Line::Complete) => {
                    if at_line_start && matches!(chunk.as_slice(), b".\r\n" | b".\n") {
                        return Ok(Data::Refused(reply));
                    }
                    at_line_start = true;
                }
                Read::Line(Line::Eof) => return Ok(Data::Vanished),
                Read::Timeout => return Ok(Data::Silent),
            }
        }
    }

    async fn read_timed(&mut self, buf: &mut Vec<u8>, limit: usize) -> Result<Read> {
        match timeout(IDLE_TIMEOUT, read_line(&mut self.reader, buf, limit)).await {
            Ok(status) => Ok(Read::Line(status?)),
            Err(_) => Ok(Read::Timeout),
        }
    }
}

fn too_big() -> Reply {
    Reply::new(552, "Message exceeds maximum size")
}

/// At most `max` characters of `text`, for log lines.
fn truncate(text: &str, max: usize) -> &str {
    text.char_indices()
        .nth(max)
        .map_or(text, |(i, _)| &text[..i])
}

/// `arg` after a case-insensitive `keyword` (`FROM:`, `TO:`), allowing spaces before the address.
fn strip_keyword<'a>(arg: &'a str, keyword: &str) -> Option<&'a str> {
    let head = arg.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| arg[keyword.len()..].trim_start())
}
