//! The messages the checks send, shaped by what filtermail accepts (an OpenPGP/MIME
//! `multipart/encrypted` message whose payload is PKESK packets then one SEIPD packet) and
//! what it refuses (cleartext), and the decryption of an encrypted message that arrived.

use anyhow::{Context, Result, bail};
use mail_parser::MimeHeaders as _;
use pgp::composed::{
    ArmorOptions, EncryptionCaps, KeyType, Message, MessageBuilder, SecretKeyParamsBuilder,
    SignedSecretKey, SubkeyParamsBuilder,
};
use pgp::crypto::ecc_curve::ECCCurve;
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::types::Password;

use crate::random_text;

/// A fresh OpenPGP key for `addr` as Delta Chat makes them: Ed25519 for signing, a
/// Curve25519 subkey for encryption.
pub fn key(addr: &str) -> Result<SignedSecretKey> {
    let mut encryption = SubkeyParamsBuilder::default();
    encryption
        .key_type(KeyType::ECDH(ECCCurve::Curve25519Legacy))
        .can_encrypt(EncryptionCaps::All);
    let mut params = SecretKeyParamsBuilder::default();
    params
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(true)
        .primary_user_id(format!("<{addr}>"))
        .subkeys(vec![
            encryption.build().context("OpenPGP subkey parameters")?,
        ]);
    params
        .build()
        .context("OpenPGP key parameters")?
        .generate(rand::thread_rng())
        .context("generating an OpenPGP key")
}

/// A random text to recognise a message by.
pub fn token() -> String {
    random_text(24, b"abcdefghijklmnopqrstuvwxyz0123456789")
}

/// An OpenPGP/MIME message from `from` to `to` whose encrypted part, readable with `key`,
/// holds `text`.
pub fn encrypted(from: &str, to: &str, key: &SignedSecretKey, text: &str) -> Result<Vec<u8>> {
    let mut rng = rand::thread_rng();
    let inner = format!("Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n");
    let mut builder = MessageBuilder::from_bytes("", inner.into_bytes())
        .seipd_v1(&mut rng, SymmetricKeyAlgorithm::AES128);
    let subkey = key
        .secret_subkeys
        .first()
        .context("the key has no encryption subkey")?
        .public_key();
    builder
        .encrypt_to_key(&mut rng, &subkey)
        .context("encrypting")?;
    let armored = builder
        .to_armored_string(&mut rng, ArmorOptions::default())
        .context("armoring")?;
    let boundary = token();
    let mut out = headers(from, to);
    out += &format!(
        "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; \
         boundary=\"{boundary}\"\r\n\r\n\
         --{boundary}\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\
         --{boundary}\r\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\
         Content-Disposition: inline; filename=\"encrypted.asc\"\r\n\r\n{}\r\n\
         --{boundary}--\r\n",
        crlf(&armored)
    );
    Ok(out.into_bytes())
}

/// A cleartext `text/plain` message from `from` to `to`.
pub fn cleartext(from: &str, to: &str) -> Vec<u8> {
    format!(
        "{}Content-Type: text/plain; charset=utf-8\r\n\r\nThis is cleartext.\r\n",
        headers(from, to)
    )
    .into_bytes()
}

/// The text inside an encrypted message that arrived, decrypted with `key`.
pub fn decrypt(raw: &[u8], key: &SignedSecretKey) -> Result<String> {
    let parsed = mail_parser::MessageParser::default()
        .parse(raw)
        .context("the message that arrived does not parse")?;
    let payload = parsed
        .parts
        .iter()
        .filter(|part| part.is_content_type("application", "octet-stream"))
        .find_map(|part| std::str::from_utf8(part.contents()).ok())
        .context("the message that arrived has no encrypted part")?;
    let (message, _) = Message::from_armor(std::io::Cursor::new(payload.as_bytes().to_vec()))
        .context("the encrypted part is not an armored OpenPGP message")?;
    let mut decrypted = message
        .decrypt(&Password::empty(), key)
        .context("decrypting the message that arrived")?;
    let data = decrypted
        .as_data_string()
        .context("reading the decrypted message")?;
    match data.split_once("\r\n\r\n") {
        Some((_, body)) => Ok(body.trim_end().to_owned()),
        None => bail!("the decrypted message has no body: {data:?}"),
    }
}

fn headers(from: &str, to: &str) -> String {
    let domain = from.rsplit('@').next().unwrap_or("probe.invalid");
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: [...]\r\nDate: {}\r\n\
         Message-ID: <{}@{domain}>\r\nMIME-Version: 1.0\r\n",
        date(),
        token()
    )
}

/// Now in RFC 5322 form.
fn date() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    mail_parser::DateTime::from_timestamp(now).to_rfc822()
}

fn crlf(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\n', "\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encrypted_message_decrypts_with_its_key_only() {
        let key = key("bob@example.org").unwrap();
        let raw = encrypted("alice@example.org", "bob@example.org", &key, "hello 42").unwrap();
        let text = String::from_utf8(raw.clone()).unwrap();
        assert!(text.contains("multipart/encrypted"), "{text}");
        assert!(text.contains("-----BEGIN PGP MESSAGE-----\r\n"), "{text}");
        assert!(!text.contains("hello 42"));
        assert_eq!(decrypt(&raw, &key).unwrap(), "hello 42");
        let other = super::key("eve@example.org").unwrap();
        assert!(decrypt(&raw, &other).is_err());
    }

    /// filtermail's own rules judge the messages as the relay will.
    #[test]
    fn filtermail_accepts_the_encrypted_message_and_refuses_cleartext() {
        use filtermail::rules::{Accepted, Parsed};
        use filtermail::smtp::Envelope;
        let (from, to) = ("alice@example.org", "bob@example.org");
        let envelope = Envelope {
            mail_from: from.into(),
            rcpts: vec![to.into()],
            origin_ip: None,
        };
        let key = key(to).unwrap();
        let raw = encrypted(from, to, &key, &token()).unwrap();
        let judged = Parsed::parse(&raw).unwrap().check_outgoing(&envelope);
        assert_eq!(judged, Ok(Accepted::Encrypted));
        let plain = cleartext(from, to);
        let refused = Parsed::parse(&plain).unwrap().check_outgoing(&envelope);
        assert_eq!(refused.unwrap_err().code, 523);
    }
}
