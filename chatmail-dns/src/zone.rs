//! The zone file of a relay: required records, then recommended ones, one BIND-style line
//! each; and the parser that reads such lines back for the check.

use anyhow::{Result, bail};
use chatmail_core::config::{Config, TlsMode};
use hickory_proto::rr::RecordType;

use crate::dkim::Dkim;
use crate::relay::RelayData;

/// The TTL every generated record gets.
const TTL: &str = "3600";
/// The comment that starts the recommended records.
pub const RECOMMENDED: &str = "; Recommended";

/// The record types a zone may hold.
const TYPES: [RecordType; 7] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::CAA,
    RecordType::SRV,
    RecordType::MX,
    RecordType::TXT,
];

/// One zone line: name padded to 40, TTL to 6, `IN`, type padded to 5, then the data.
pub fn line(name: &str, rtype: &str, rdata: &str) -> String {
    format!("{name:<40} {TTL:<6} IN  {rtype:<5}  {rdata}")
}

/// The DKIM line with `rdata` (the chunked value, or the unsplit one for web forms).
pub fn dkim_line(domain: &str, rdata: &str) -> String {
    line(&format!("opendkim._domainkey.{domain}."), "TXT", rdata)
}

/// The zone of the relay configured by `config`: its bare domain, MTA-STS records in ACME mode.
pub fn for_relay(config: &Config, data: &RelayData, dkim: &Dkim, sts_id: &str) -> String {
    let acme = config.tls.mode == TlsMode::Acme;
    render(&config.mail_domain_bare, acme, data, dkim, sts_id)
}

/// The zone for `domain`. `acme` adds the MTA-STS records; `sts_id` is used when the
/// relay's data holds none (a new policy id, by convention the local time `YYYYMMDDHHMM`).
pub fn render(domain: &str, acme: bool, data: &RelayData, dkim: &Dkim, sts_id: &str) -> String {
    let d = format!("{domain}.");
    let sts_id = match data.sts_id.is_empty() {
        true => sts_id,
        false => &data.sts_id,
    };
    let mut lines = vec!["; Required DNS entries".to_owned()];
    if !data.a.is_empty() {
        lines.push(line(&d, "A", &data.a));
    }
    if !data.aaaa.is_empty() {
        lines.push(line(&d, "AAAA", &data.aaaa));
    }
    lines.push(line(&d, "MX", &format!("10 {d}")));
    if acme {
        let policy = format!("\"v=STSv1; id={sts_id}\"");
        lines.push(line(&format!("_mta-sts.{d}"), "TXT", &policy));
        lines.push(line(&format!("mta-sts.{d}"), "CNAME", &d));
    }
    lines.push(line(&format!("www.{d}"), "CNAME", &d));
    lines.push(dkim_line(domain, &dkim.chunked()));
    lines.push(String::new());
    lines.push(format!("{RECOMMENDED} DNS entries"));
    lines.push(line(&d, "TXT", "\"v=spf1 a ~all\""));
    lines.push(line(
        &format!("_dmarc.{d}"),
        "TXT",
        "\"v=DMARC1;p=reject;adkim=s;aspf=s\"",
    ));
    if !data.acme_account_url.is_empty() {
        let caa = format!(
            "0 issue \"letsencrypt.org;accounturi={}\"",
            data.acme_account_url
        );
        lines.push(line(&d, "CAA", &caa));
    }
    lines.push(line(
        &format!("_adsp._domainkey.{d}"),
        "TXT",
        "\"dkim=discardable\"",
    ));
    for (service, port) in [
        ("submission", 587),
        ("submissions", 465),
        ("imap", 143),
        ("imaps", 993),
    ] {
        lines.push(line(
            &format!("_{service}._tcp.{d}"),
            "SRV",
            &format!("0 1 {port} {d}"),
        ));
    }
    lines.push(String::new());
    lines.join("\n") + "\n"
}

/// A new MTA-STS policy id: the local time as `YYYYMMDDHHMM`.
pub fn new_sts_id() -> String {
    jiff::ZonedDateTime::now()
        .strftime("%Y%m%d%H%M")
        .to_string()
}

/// One record of a zone file, as the check reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneRecord {
    /// The owner name without its trailing dot.
    pub name: String,
    pub rtype: RecordType,
    /// The record data, surrounding whitespace removed.
    pub rdata: String,
    /// False for records after the `; Recommended` comment.
    pub required: bool,
    /// The line as written.
    pub line: String,
}

/// The records of a zone file: blank and `;` lines skipped; each other line is
/// `name ttl class type data...`. Lines after one containing `; Recommended` are recommended.
pub fn parse(zone: &str) -> Result<Vec<ZoneRecord>> {
    let mut records = Vec::new();
    let mut required = true;
    for (number, text) in zone.lines().enumerate() {
        if text.contains(RECOMMENDED) {
            required = false;
        }
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.starts_with(';') {
            continue;
        }
        let Some([name, _ttl, _class, rtype, rest]) = fields(trimmed) else {
            bail!("bad zone record line {}: {text:?}", number + 1);
        };
        let rtype = rtype
            .to_ascii_uppercase()
            .parse::<RecordType>()
            .ok()
            .filter(|t| TYPES.contains(t));
        let Some(rtype) = rtype else {
            bail!(
                "zone line {}: unsupported record type (expected one of A, AAAA, CNAME, CAA, \
                 SRV, MX, TXT): {text:?}",
                number + 1
            );
        };
        records.push(ZoneRecord {
            name: name.trim_end_matches('.').to_owned(),
            rtype,
            rdata: rest.trim().to_owned(),
            required,
            line: text.to_owned(),
        });
    }
    Ok(records)
}

/// The first four whitespace-separated fields of `text` and the rest, or `None` when there
/// are fewer than five.
fn fields(text: &str) -> Option<[&str; 5]> {
    let mut out = [""; 5];
    let mut rest = text.trim();
    for field in out.iter_mut().take(4) {
        let end = rest.find(char::is_whitespace)?;
        *field = &rest[..end];
        rest = rest[end..].trim_start();
    }
    out[4] = rest;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_padded_like_upstream() {
        assert_eq!(
            line("chat.example.org.", "MX", "10 chat.example.org."),
            format!(
                "chat.example.org.{} 3600   IN  MX     10 chat.example.org.",
                " ".repeat(23)
            )
        );
    }

    #[test]
    fn parse_reads_back_what_render_wrote() {
        let zone = "; Required\nchat.example.org.  3600 IN mx   10 chat.example.org.\n\n\
                    ; Recommended DNS entries\n_dmarc.chat.example.org. 3600 IN TXT  \"a b\"  \n";
        let records = parse(zone).expect("parses");
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].name, "chat.example.org");
        assert_eq!(records[0].rtype, RecordType::MX);
        assert!(records[0].required);
        assert_eq!(records[1].rdata, "\"a b\"");
        assert!(!records[1].required);
    }

    #[test]
    fn parse_names_the_bad_line() {
        let err = parse("; x\nchat.example.org. 3600 IN\n").expect_err("too few fields");
        assert!(err.to_string().contains("line 2"), "{err}");
        let err = parse("chat.example.org. 3600 IN PTR x.\n").expect_err("unsupported");
        assert!(err.to_string().contains("unsupported record type"), "{err}");
    }

    #[test]
    fn new_sts_ids_are_twelve_digits() {
        let id = new_sts_id();
        assert_eq!(id.len(), 12, "{id}");
        assert!(id.chars().all(|c| c.is_ascii_digit()), "{id}");
    }
}
