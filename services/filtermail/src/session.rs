//! One SMTP connection on the proxy's server side: the dialect Postfix's `smtpd_proxy_filter`
//! speaks (greeting, EHLO with XFORWARD, MAIL/RCPT/DATA, RSET, NOOP, QUIT).
//!
//! Any input is survivable: overlong lines, bare LF in the data, early EOF and timeouts end the
//! connection, never the process.

use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::time::timeout;

use crate::filter::Filter;
use crate::smtp::{Envelope, Line, Reply, extract_address, read_line};

/// How long the client may stay silent (Postfix's `smtpd_timeout` default).
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest command line accepted.
const MAX_COMMAND_LINE: usize = 4096;
/// Chunk size while discarding the rest of an oversized message.
const DISCARD_CHUNK: usize = 64 * 1024;

/// What to do after a command.
enum Next {
    Continue,
    Close,
}

/// How reading the data ended.
enum Data {
    Message(Vec<u8>),
    TooBig,
    Broken,
}

/// Serves one client until it quits, breaks the protocol or goes silent.
pub async fn serve<S: AsyncRead + AsyncWrite>(stream: S, filter: &Filter) -> Result<()> {
    let (read, write) = tokio::io::split(stream);
    let mut session = Session {
        reader: BufReader::new(read),
        writer: write,
        filter,
        envelope: None,
        origin_ip: None,
    };
    session.send(&Reply::new(220, "filtermail SMTP")).await?;
    loop {
        let mut line = Vec::new();
        let status = match timeout(
            IDLE_TIMEOUT,
            read_line(&mut session.reader, &mut line, MAX_COMMAND_LINE),
        )
        .await
        {
            Ok(status) => status?,
            Err(_) => {
                session
                    .send(&Reply::new(421, "4.4.2 Timeout, closing connection"))
                    .await?;
                return Ok(());
            }
        };
        match status {
            Line::Eof => return Ok(()),
            Line::TooLong => {
                session.send(&Reply::new(500, "Line too long")).await?;
                return Ok(());
            }
            Line::Complete => {}
        }
        let line = String::from_utf8_lossy(&line);
        if let Next::Close = session.command(line.trim_end_matches(['\r', '\n'])).await? {
            return Ok(());
        }
    }
}

struct Session<'a, S> {
    reader: BufReader<ReadHalf<S>>,
    writer: WriteHalf<S>,
    filter: &'a Filter,
    /// The transaction in progress, from `MAIL FROM` on.
    envelope: Option<Envelope>,
    /// From `XFORWARD ADDR=`; kept for the whole connection.
    origin_ip: Option<String>,
}

impl<S: AsyncRead + AsyncWrite> Session<'_, S> {
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

    async fn command(&mut self, line: &str) -> Result<Next> {
        let (verb, arg) = line.split_once(' ').unwrap_or((line, ""));
        match verb.to_ascii_uppercase().as_str() {
            "HELO" => self.reply(250, "OK").await,
            "EHLO" => self.reply(250, "filtermail\nXFORWARD ADDR\nOK").await,
            "XFORWARD" => {
                self.xforward(arg);
                self.reply(250, "OK").await
            }
            "MAIL" => self.mail(arg).await,
            "RCPT" => self.rcpt(arg).await,
            "DATA" => self.data().await,
            "RSET" => {
                self.envelope = None;
                self.reply(250, "OK").await
            }
            "NOOP" => self.reply(250, "OK").await,
            "QUIT" => {
                self.send(&Reply::new(221, "OK")).await?;
                Ok(Next::Close)
            }
            _ => self.reply(500, "Command not recognized").await,
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
            return self.reply(500, "Invalid address in MAIL FROM").await;
        };
        if let Err(reply) = self.filter.mail_from(&addr) {
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
            return self.reply(503, "5.5.1 Error: need MAIL command").await;
        };
        match addr {
            Some(addr) => {
                envelope.rcpts.push(addr);
                self.reply(250, "OK").await
            }
            None => self.reply(500, "Invalid address in RCPT TO").await,
        }
    }

    async fn data(&mut self) -> Result<Next> {
        let Some(envelope) = self.envelope.take_if(|e| !e.rcpts.is_empty()) else {
            return self.reply(503, "5.5.1 Error: need RCPT command").await;
        };
        self.send(&Reply::new(354, "End data with <CR><LF>.<CR><LF>"))
            .await?;
        match self.read_data().await? {
            Data::Message(message) => {
                let reply = self.filter.deliver(&envelope, &message).await;
                self.send(&reply).await?;
                Ok(Next::Continue)
            }
            Data::TooBig => {
                self.send(&Reply::new(552, "Message exceeds maximum size"))
                    .await?;
                Ok(Next::Close)
            }
            Data::Broken => Ok(Next::Close),
        }
    }

    /// Reads dot-stuffed data up to `.` on a line of its own. Every line must end in CRLF.
    /// Beyond the size limit the rest is read and dropped, so the client sees the 552 reply.
    async fn read_data(&mut self) -> Result<Data> {
        let max = self.filter.max_message_size();
        let mut message = Vec::new();
        loop {
            let start = message.len();
            // Room for the largest allowed message plus one line terminator, and one byte more
            // to notice that it is too big.
            let room = (max + 3).saturating_sub(start).max(3);
            match self.read_timed(&mut message, room).await? {
                Line::Eof => return Ok(Data::Broken),
                Line::TooLong => return self.discard_data(false).await,
                Line::Complete => {}
            }
            let line = &message[start..];
            if !line.ends_with(b"\r\n") {
                return Ok(Data::Broken);
            }
            if line == b".\r\n" {
                message.truncate(start);
                return Ok(Data::Message(message));
            }
            if line[0] == b'.' {
                message.remove(start);
            }
            if message.len() > max {
                return self.discard_data(true).await;
            }
        }
    }

    /// Drops data until the end marker, then reports the message as too big. `at_line_start`
    /// tells whether the last byte read so far ended a line.
    async fn discard_data(&mut self, mut at_line_start: bool) -> Result<Data> {
        let mut chunk = Vec::with_capacity(DISCARD_CHUNK);
        loop {
            chunk.clear();
            match self.read_timed(&mut chunk, DISCARD_CHUNK).await? {
                Line::Eof => return Ok(Data::Broken),
                Line::TooLong => at_line_start = false,
                Line::Complete => {
                    if at_line_start && chunk == b".\r\n" {
                        return Ok(Data::TooBig);
                    }
                    at_line_start = true;
                }
            }
        }
    }

    async fn read_timed(&mut self, buf: &mut Vec<u8>, limit: usize) -> Result<Line> {
        match timeout(IDLE_TIMEOUT, read_line(&mut self.reader, buf, limit)).await {
            Ok(status) => Ok(status?),
            Err(_) => Ok(Line::Eof),
        }
    }
}

/// `arg` after a case-insensitive `keyword` (`FROM:`, `TO:`), allowing spaces before the address.
fn strip_keyword<'a>(arg: &'a str, keyword: &str) -> Option<&'a str> {
    let head = arg.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| arg[keyword.len()..].trim_start())
}
