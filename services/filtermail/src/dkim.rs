//! DKIM verification of incoming mail: a valid signature by the `From:` domain is required.
//!
//! Uses `mail-auth` and its hickory resolver, set up by [`crate::dns`]. The resolver caches keys.

use std::net::SocketAddr;

use anyhow::{Context as _, Result, anyhow};
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator};

use crate::dns;
use crate::smtp::Reply;

/// Checks DKIM signatures against DNS.
pub struct DkimVerifier {
    authenticator: MessageAuthenticator,
}

impl std::fmt::Debug for DkimVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkimVerifier").finish_non_exhaustive()
    }
}

impl DkimVerifier {
    /// A verifier asking `dns_server`, or the system's resolvers when `None`.
    pub fn new(dns_server: Option<SocketAddr>) -> Result<DkimVerifier> {
        let (config, options) = dns::resolver_config(dns_server)?;
        let authenticator = MessageAuthenticator::new(config, options)
            .map_err(|err| anyhow!("{err}"))
            .context("cannot set up the DNS resolver for DKIM")?;
        Ok(DkimVerifier { authenticator })
    }

    /// `Ok` when `raw` carries a valid DKIM signature whose `d=` is `from_domain`.
    ///
    /// No signature at all gives `554 5.7.1 No DKIM signature found`, no valid one by that
    /// domain `554 5.7.1 No valid DKIM signature found`. A DNS failure while no signature
    /// passed gives a temporary `451`, so that the sender retries instead of bouncing.
    pub async fn verify(&self, raw: &[u8], from_domain: &str) -> Result<(), Reply> {
        let Some(message) = AuthenticatedMessage::parse(raw) else {
            return Err(Reply::new(554, "5.7.1 No DKIM signature found"));
        };
        if message.dkim_headers.is_empty() && !message.has_dkim_errors {
            return Err(Reply::new(554, "5.7.1 No DKIM signature found"));
        }
        let outputs = self.authenticator.verify_dkim(&message).await;
        let passed = outputs.iter().any(|output| {
            *output.result() == DkimResult::Pass
                && output
                    .signature()
                    .is_some_and(|sig| sig.d.eq_ignore_ascii_case(from_domain))
        });
        if passed {
            return Ok(());
        }
        for output in &outputs {
            let domain = output.signature().map_or("?", |sig| sig.d.as_str());
            log::info!("DKIM signature by {domain}: {:?}", output.result());
        }
        if outputs
            .iter()
            .any(|o| matches!(o.result(), DkimResult::TempError(_)))
        {
            return Err(Reply::new(
                451,
                "4.7.1 DKIM key lookup failed temporarily, try again later",
            ));
        }
        Err(Reply::new(554, "5.7.1 No valid DKIM signature found"))
    }
}
