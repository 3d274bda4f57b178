//! SMTP building blocks shared by the server side and the client: replies,
//! bounded line reading and envelope address extraction.

use std::fmt;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// An SMTP reply: a three-digit code and its text (lines separated by `\n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Reply {
    pub fn new(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            text: text.into(),
        }
    }

    /// `250 OK`.
    pub fn ok() -> Reply {
        Reply::new(250, "OK")
    }

    /// A reply from the one-line form [`Display`](fmt::Display) writes (`523 Encryption ...`).
    pub fn parse(line: &str) -> Option<Reply> {
        let (code, text) = line.split_at_checked(3)?;
        let code = code.parse().ok().filter(|c| (200..600).contains(c))?;
        let text = match text.strip_prefix(' ') {
            Some(text) => text,
            None if text.is_empty() => text,
            None => return None,
        };
        Some(Reply::new(code, text))
    }

    /// True for 2xx and 3xx replies.
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// The reply as sent on the wire: one `code-text` line per continuation line, CRLF-terminated.
    pub fn to_wire(&self) -> String {
        let lines: Vec<&str> = self.text.lines().collect();
        let mut out = String::new();
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            out.push_str(&format!("{}{sep}{line}\r\n", self.code));
        }
        if lines.is_empty() {
            out.push_str(&format!("{}\r\n", self.code));
        }
        out
    }
}

/// One line: `code text`, continuation lines joined with a space.
impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.text.replace('\n', " "))
    }
}

/// One mail transaction's envelope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The lowercased `MAIL FROM` address; empty for a bounce (`MAIL FROM:<>`).
    pub mail_from: String,
    /// The lowercased `RCPT TO` addresses, in order.
    pub rcpts: Vec<String>,
    /// The client address Postfix passed with `XFORWARD ADDR=`, if any.
    pub origin_ip: Option<String>,
}

/// How a bounded line read ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// A line ending in `\n` was appended.
    Complete,
    /// `limit` bytes were appended without finding `\n`.
    TooLong,
    /// The peer closed the connection (a partial last line may have been appended).
    Eof,
}

/// Appends bytes up to and including the next `\n` to `buf`, but at most `limit` bytes.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<Line> {
    let limit = u64::try_from(limit).unwrap_or(u64::MAX);
    let n = (&mut *reader).take(limit).read_until(b'\n', buf).await?;
    Ok(if buf.last() == Some(&b'\n') && n > 0 {
        Line::Complete
    } else if n as u64 == limit {
        Line::TooLong
    } else {
        Line::Eof
    })
}

/// The address of a `MAIL FROM:`/`RCPT TO:` argument or a header value, lowercased.
///
/// The first `<...>` wins (`<>` gives the empty address); without brackets the first word is
/// taken. Parameters after the address are ignored. `None` when there is no address at all or
/// it contains characters no address has.
pub fn extract_address(arg: &str) -> Option<String> {
    let addr = match arg.find('<') {
        Some(start) => {
            let rest = &arg[start + 1..];
            &rest[..rest.find('>')?]
        }
        None => arg.split_whitespace().next()?,
    };
    let valid = addr
        .chars()
        .all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '"' | ',' | ';' | '\\'));
    if !valid {
        return None;
    }
    if addr.is_empty() && !arg.contains('<') {
        return None;
    }
    Some(addr.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_addresses_like_postfix_sends_them() {
        let cases = [
            ("<t1@example.org>", Some("t1@example.org")),
            (
                "<T1@Example.ORG> SIZE=1234 BODY=8BITMIME",
                Some("t1@example.org"),
            ),
            (
                "<SRS0=Ab12=CD=example.org=alice@relay.example>",
                Some("srs0=ab12=cd=example.org=alice@relay.example"),
            ),
            ("<a+tag@example.org>", Some("a+tag@example.org")),
            ("Name <a@b>", Some("a@b")),
            ("a@b", Some("a@b")),
            (" a@b SIZE=12", Some("a@b")),
            ("<>", Some("")),
            ("<> SIZE=10", Some("")),
            ("", None),
            ("<a@b", None),
            ("<a b@c>", None),
            ("<a\"@c>", None),
        ];
        for (arg, want) in cases {
            assert_eq!(extract_address(arg).as_deref(), want, "{arg:?}");
        }
    }

    #[test]
    fn replies_render_single_and_multi_line() {
        assert_eq!(Reply::ok().to_wire(), "250 OK\r\n");
        let multi = Reply::new(550, "5.1.1 first\n5.1.1 second");
        assert_eq!(multi.to_wire(), "550-5.1.1 first\r\n550 5.1.1 second\r\n");
        assert_eq!(multi.to_string(), "550 5.1.1 first 5.1.1 second");
        assert!(Reply::new(354, "go").is_positive());
        assert!(!Reply::new(450, "later").is_positive());
        assert_eq!(
            Reply::parse("523 Encryption Needed"),
            Some(Reply::new(523, "Encryption Needed"))
        );
        assert_eq!(Reply::parse("250"), Some(Reply::new(250, "")));
        for bad in ["", "25", "2500 x", "abc def", "<html>", "999 x"] {
            assert_eq!(Reply::parse(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn bounded_line_reads() {
        let mut input: &[u8] = b"short\r\nthis line is long\r\nrest";
        let mut buf = Vec::new();
        assert_eq!(
            read_line(&mut input, &mut buf, 100).await.ok(),
            Some(Line::Complete)
        );
        assert_eq!(buf, b"short\r\n");
        buf.clear();
        assert_eq!(
            read_line(&mut input, &mut buf, 4).await.ok(),
            Some(Line::TooLong)
        );
        assert_eq!(buf, b"this");
        buf.clear();
        assert_eq!(
            read_line(&mut input, &mut buf, 100).await.ok(),
            Some(Line::Complete)
        );
        buf.clear();
        assert_eq!(
            read_line(&mut input, &mut buf, 100).await.ok(),
            Some(Line::Eof)
        );
        assert_eq!(buf, b"rest");
    }
}
