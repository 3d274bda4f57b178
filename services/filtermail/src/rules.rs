//! The acceptance rules: which messages pass the filter in each direction.
//!
//! Outgoing mail must be OpenPGP/MIME encrypted, a Secure-Join request, or an Autocrypt Setup
//! Message sent to oneself, and its `From:` must be the envelope sender. Incoming mail may also
//! be a mailer-daemon report, or cleartext when every recipient accepts cleartext.

use mail_parser::{Message, MessageParser, MessagePart, MimeHeaders};

use crate::openpgp::{Direction, check_armored};
use crate::smtp::{Envelope, Reply};

/// Why a message was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// An OpenPGP/MIME encrypted message.
    Encrypted,
    /// A Secure-Join `vc-request`/`vg-request`, which is sent before keys are known.
    SecureJoin,
    /// An Autocrypt Setup Message sent by an account to itself.
    SetupMessage,
    /// A delivery report from a mailer daemon.
    MailerDaemon,
    /// Cleartext to recipients who all accept cleartext.
    Cleartext,
}

/// The reply for mail that should have been encrypted.
pub fn encryption_needed() -> Reply {
    Reply::new(523, "Encryption Needed: Invalid Unencrypted Mail")
}

/// A parsed message and its `From:` address.
#[derive(Debug)]
pub struct Parsed<'a> {
    message: Message<'a>,
    /// The lowercased address of the `From:` header.
    pub from: String,
}

impl<'a> Parsed<'a> {
    /// Parses `raw`; fails with a 500 reply when it is no message or has no single `From:`.
    pub fn parse(raw: &'a [u8]) -> Result<Parsed<'a>, Reply> {
        let message = MessageParser::default()
            .parse(raw)
            .filter(|m| !m.headers().is_empty())
            .ok_or_else(|| Reply::new(500, "Failed to parse message: no header found"))?;
        let raw_from = message.header_raw("From").unwrap_or_default().trim();
        let invalid_from = || Reply::new(500, format!("Invalid FROM header: {raw_from}"));
        let from = match message.from().map(|a| a.iter().collect::<Vec<_>>()) {
            Some(addrs) if addrs.len() == 1 => addrs[0].address().unwrap_or_default(),
            _ => return Err(invalid_from()),
        };
        if from.matches('@').count() != 1 || from.chars().any(char::is_whitespace) {
            return Err(invalid_from());
        }
        let from = from.to_ascii_lowercase();
        Ok(Parsed { message, from })
    }

    /// The outgoing rules, after the rate limit.
    pub fn check_outgoing(&self, envelope: &Envelope) -> Result<Accepted, Reply> {
        if !self.from.eq_ignore_ascii_case(&envelope.mail_from) {
            return Err(Reply::new(
                500,
                format!("Invalid FROM <{}> for <{}>", self.from, envelope.mail_from),
            ));
        }
        if self.is_encrypted(Direction::Outgoing) {
            Ok(Accepted::Encrypted)
        } else if self.is_securejoin() {
            Ok(Accepted::SecureJoin)
        } else if self.is_setup_message_to_self(envelope) {
            Ok(Accepted::SetupMessage)
        } else {
            Err(encryption_needed())
        }
    }

    /// The incoming rules; `cleartext_ok` tells whether a recipient accepts cleartext.
    pub fn check_incoming(
        &self,
        envelope: &Envelope,
        cleartext_ok: impl Fn(&str) -> bool,
    ) -> Result<Accepted, Reply> {
        if self.is_encrypted(Direction::Incoming) {
            Ok(Accepted::Encrypted)
        } else if self.is_securejoin() {
            Ok(Accepted::SecureJoin)
        } else if self.is_mailer_daemon_report() {
            Ok(Accepted::MailerDaemon)
        } else if envelope.rcpts.iter().all(|r| cleartext_ok(r)) {
            Ok(Accepted::Cleartext)
        } else {
            Err(encryption_needed())
        }
    }

    /// OpenPGP/MIME (RFC 3156): `multipart/encrypted` with exactly a `Version: 1` control part
    /// and an armored encrypted payload, neither of them multipart.
    ///
    /// Upstream also passed a `multipart/encrypted` holding only the control part; no client
    /// sends that and it carries no encrypted payload, so it is refused here.
    fn is_encrypted(&self, direction: Direction) -> bool {
        let root = self.message.root_part();
        if !is_type(root, "multipart", "encrypted") {
            return false;
        }
        let [control, payload] = self.children(root)[..] else {
            return false;
        };
        !control.is_multipart()
            && !payload.is_multipart()
            && is_type(control, "application", "pgp-encrypted")
            && control.text_contents().map(str::trim) == Some("Version: 1")
            && is_type(payload, "application", "octet-stream")
            && payload
                .text_contents()
                .is_some_and(|armored| check_armored(armored, direction))
    }

    /// A Secure-Join request: the header says `vc-request`/`vg-request` and the only part is a
    /// `text/plain` body saying the same.
    fn is_securejoin(&self) -> bool {
        let header = self.message.header_raw("Secure-Join").map(str::trim);
        if !matches!(header, Some("vc-request" | "vg-request")) {
            return false;
        }
        let root = self.message.root_part();
        let [part] = self.children(root)[..] else {
            return false;
        };
        let body = part.text_contents().map(|t| t.trim().to_lowercase());
        !part.is_multipart()
            && is_type(part, "text", "plain")
            && matches!(
                body.as_deref(),
                Some("secure-join: vc-request" | "secure-join: vg-request")
            )
    }

    /// An Autocrypt Setup Message (a key backup) that the sender sends only to itself.
    fn is_setup_message_to_self(&self, envelope: &Envelope) -> bool {
        envelope.rcpts.len() == 1
            && envelope.rcpts[0] == envelope.mail_from
            && self.message.subject() == Some("Autocrypt Setup Message")
            && is_type(self.message.root_part(), "multipart", "mixed")
    }

    /// A `multipart/report` with `Auto-Submitted:` from a `mailer-daemon@` address.
    fn is_mailer_daemon_report(&self) -> bool {
        let auto_submitted = self.message.header_raw("Auto-Submitted").map(str::trim);
        auto_submitted.is_some_and(|v| !v.is_empty())
            && self.from.starts_with("mailer-daemon@")
            && is_type(self.message.root_part(), "multipart", "report")
    }

    /// The direct sub-parts of a multipart part (empty for a single part).
    fn children(&self, part: &MessagePart<'_>) -> Vec<&MessagePart<'_>> {
        part.sub_parts()
            .unwrap_or_default()
            .iter()
            .filter_map(|id| self.message.part(*id))
            .collect()
    }
}

/// Whether `part`'s Content-Type is `ctype/subtype` (any case); none means `text/plain`.
fn is_type(part: &MessagePart<'_>, ctype: &str, subtype: &str) -> bool {
    match part.content_type() {
        Some(ct) => {
            ct.ctype().eq_ignore_ascii_case(ctype)
                && ct
                    .subtype()
                    .unwrap_or_default()
                    .eq_ignore_ascii_case(subtype)
        }
        None => ctype == "text" && subtype == "plain",
    }
}
