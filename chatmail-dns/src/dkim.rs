//! The DKIM public key record of the relay, derived from opendkim's private key.

use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine as _;
use rsa::RsaPrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};

/// Where opendkim's signing key is on the relay.
pub const PRIVATE_KEY: &str = "/etc/dkimkeys/opendkim.private";

/// The longest character-string a TXT record holds.
const CHUNK: usize = 255;

/// The TXT value published at `opendkim._domainkey.<domain>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dkim {
    /// `v=DKIM1;k=rsa;p=<base64 SubjectPublicKeyInfo>;s=email;t=s`
    pub value: String,
}

impl Dkim {
    /// Reads the private key file (PEM, PKCS#8 as OpenSSL 3 writes it, or PKCS#1).
    pub fn read(path: &Path) -> Result<Dkim> {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the DKIM key {}", path.display()))?;
        Dkim::from_pem(&pem).with_context(|| format!("bad DKIM key {}", path.display()))
    }

    /// The record for the RSA private key in `pem`.
    pub fn from_pem(pem: &str) -> Result<Dkim> {
        let key = RsaPrivateKey::from_pkcs8_pem(pem)
            .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem))
            .context("not an RSA private key in PEM form (PKCS#8 or PKCS#1)")?;
        let public = key
            .to_public_key()
            .to_public_key_der()
            .context("cannot encode the public key")?;
        let p = base64::engine::general_purpose::STANDARD.encode(public.as_bytes());
        Ok(Dkim {
            value: format!("v=DKIM1;k=rsa;p={p};s=email;t=s"),
        })
    }

    /// The value as TXT record data: 255-character quoted strings separated by a space.
    pub fn chunked(&self) -> String {
        let chunks: Vec<String> = self
            .value
            .as_bytes()
            .chunks(CHUNK)
            .map(|chunk| format!("\"{}\"", String::from_utf8_lossy(chunk)))
            .collect();
        chunks.join(" ")
    }

    /// The value as one quoted string, for DNS providers' web forms that split it themselves.
    pub fn unsplit(&self) -> String {
        format!("\"{}\"", self.value)
    }
}
