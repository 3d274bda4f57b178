//! The facts collected on the relay before a zone can be made: what DNS says about the
//! domain now, acmetool's account URL and the DKIM key; and the pre-check that the records a
//! deploy needs (addresses, and the CNAMEs certificates are requested for) are there.

use anyhow::Result;
use chatmail_core::Target;
use hickory_proto::rr::RecordType;

use crate::dkim::{self, Dkim};
use crate::query::Lookup;

/// What the zone is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayData {
    /// The first A record of the domain, empty when none.
    pub a: String,
    /// The first AAAA record of the domain, empty when none.
    pub aaaa: String,
    /// The CNAME of `mta-sts.<domain>`, empty when none.
    pub mta_sts: String,
    /// The CNAME of `www.<domain>`, empty when none.
    pub www: String,
    /// The `id=` of the published MTA-STS policy record, empty when none.
    pub sts_id: String,
    /// acmetool's Let's Encrypt account URL, empty when unknown.
    pub acme_account_url: String,
    /// The DKIM record, or why it could not be made.
    pub dkim: Result<Dkim, String>,
}

impl RelayData {
    /// Collects the facts for `domain`: DNS through `dns`, files and acmetool on `target`.
    pub fn collect(domain: &str, dns: &dyn Lookup, target: &Target) -> Result<RelayData> {
        let a = dns.lookup(RecordType::A, domain)?;
        let aaaa = dns.lookup(RecordType::AAAA, domain)?;
        let mta_sts = dns.lookup(RecordType::CNAME, &format!("mta-sts.{domain}"))?;
        let www = dns.lookup(RecordType::CNAME, &format!("www.{domain}"))?;
        // The policy id matters only once the names a certificate covers are in place.
        let ready = !mta_sts.is_empty() && !www.is_empty() && (!a.is_empty() || !aaaa.is_empty());
        let sts_id = match ready {
            true => sts_id(&dns.lookup(RecordType::TXT, &format!("_mta-sts.{domain}"))?),
            false => String::new(),
        };
        let dkim = Dkim::read(&target.path(dkim::PRIVATE_KEY)).map_err(|err| format!("{err:#}"));
        Ok(RelayData {
            a,
            aaaa,
            mta_sts,
            www,
            sts_id,
            acme_account_url: acme_account_url(target),
            dkim,
        })
    }

    /// The pre-check before a deploy or a zone: addresses always, and in ACME mode
    /// (`strict_tls`) the CNAMEs that the certificate also covers. The first failing rule's
    /// message, or `None` when all pass.
    pub fn precheck(&self, domain: &str, strict_tls: bool) -> Option<String> {
        let target = format!("{domain}.");
        if self.a.is_empty() && self.aaaa.is_empty() {
            return Some(format!("Missing A and/or AAAA DNS records for {domain}!"));
        }
        if strict_tls && self.mta_sts != target {
            return Some(format!(
                "Missing MTA-STS CNAME record:\nmta-sts.{domain}.   CNAME  {domain}."
            ));
        }
        if strict_tls && self.www != target {
            return Some(format!(
                "Missing www CNAME record:\nwww.{domain}.   CNAME  {domain}."
            ));
        }
        None
    }
}

/// The policy id of an MTA-STS record `"v=STSv1; id=<id>"`: the text after the only `id=`,
/// trailing quotes removed; empty unless there is exactly one `id=`.
fn sts_id(txt: &str) -> String {
    match txt.split("id=").collect::<Vec<_>>()[..] {
        [_, id] => id.trim_end_matches('"').to_owned(),
        _ => String::new(),
    }
}

/// acmetool's account URL (`acmetool account-url`, which asks the ACME server for the account
/// of its stored key); empty when acmetool is missing or fails.
fn acme_account_url(target: &Target) -> String {
    let argv = ["acmetool", "--batch", "account-url"].map(String::from);
    match target.run_unchecked(&argv, &[]) {
        Ok(output) if output.status.success() => {
            String::from_utf8_lossy(&output.stdout).trim().to_owned()
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(a: &str, mta_sts: &str, www: &str) -> RelayData {
        RelayData {
            a: a.into(),
            aaaa: String::new(),
            mta_sts: mta_sts.into(),
            www: www.into(),
            sts_id: String::new(),
            acme_account_url: String::new(),
            dkim: Err("none".into()),
        }
    }

    #[test]
    fn sts_id_is_the_text_after_the_only_id() {
        assert_eq!(sts_id("\"v=STSv1; id=202401021530\""), "202401021530");
        assert_eq!(sts_id(""), "");
        assert_eq!(sts_id("\"id=1 id=2\""), "");
    }

    #[test]
    fn precheck_rules_in_order() {
        let d = "chat.example.org";
        assert_eq!(
            data("", "", "").precheck(d, false).as_deref(),
            Some("Missing A and/or AAAA DNS records for chat.example.org!")
        );
        assert_eq!(data("1.2.3.4", "", "").precheck(d, false), None);
        assert_eq!(
            data("1.2.3.4", "", "").precheck(d, true).as_deref(),
            Some(
                "Missing MTA-STS CNAME record:\nmta-sts.chat.example.org.   CNAME  chat.example.org."
            )
        );
        assert_eq!(
            data("1.2.3.4", "chat.example.org.", "other.")
                .precheck(d, true)
                .as_deref(),
            Some("Missing www CNAME record:\nwww.chat.example.org.   CNAME  chat.example.org.")
        );
        let good = data("1.2.3.4", "chat.example.org.", "chat.example.org.");
        assert_eq!(good.precheck(d, true), None);
    }
}
