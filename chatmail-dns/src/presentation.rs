//! Record data in zone-file (presentation) form, the way `dig +short` prints it, so a
//! record of the generated zone compares equal to the answer as a plain string.

use hickory_proto::rr::RData;
use hickory_proto::rr::domain::Name;

/// The presentation form of `rdata`: addresses as text, names with their trailing dot,
/// character-strings quoted and escaped.
pub fn rdata(rdata: &RData) -> String {
    match rdata {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(aaaa) => aaaa.0.to_string(),
        RData::CNAME(cname) => name(&cname.0),
        RData::NS(ns) => name(&ns.0),
        RData::MX(mx) => format!("{} {}", mx.preference, name(&mx.exchange)),
        RData::SRV(srv) => format!(
            "{} {} {} {}",
            srv.priority,
            srv.weight,
            srv.port,
            name(&srv.target)
        ),
        RData::TXT(txt) => {
            let strings: Vec<String> = txt.txt_data.iter().map(|s| quoted(s)).collect();
            strings.join(" ")
        }
        RData::CAA(caa) => format!("{} {} {}", caa.flags(), caa.tag, quoted(&caa.value)),
        other => other.to_string(),
    }
}

/// A domain name with its trailing dot.
fn name(name: &Name) -> String {
    let mut text = name.to_ascii();
    if !text.ends_with('.') {
        text.push('.');
    }
    text
}

/// A character-string in double quotes: `"` and `\` escaped with a backslash, bytes outside
/// printable ASCII as `\DDD`.
pub fn quoted(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for &byte in bytes {
        match byte {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(char::from(byte));
            }
            0x20..=0x7e => out.push(char::from(byte)),
            _ => out.push_str(&format!("\\{byte:03}")),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::RecordType;
    use hickory_proto::rr::rdata::{MX, SRV, TXT};
    use hickory_proto::serialize::binary::{BinDecoder, Restrict};

    fn fqdn(text: &str) -> Name {
        Name::from_ascii(text).expect("valid name")
    }

    #[test]
    fn records_look_like_dig_short() {
        let mx = RData::MX(MX::new(10, fqdn("chat.example.org.")));
        assert_eq!(rdata(&mx), "10 chat.example.org.");
        let srv = RData::SRV(SRV::new(0, 1, 587, fqdn("chat.example.org.")));
        assert_eq!(rdata(&srv), "0 1 587 chat.example.org.");
        let txt = RData::TXT(TXT::new(vec!["v=spf1 a ~all".into(), "say \"hi\"".into()]));
        assert_eq!(rdata(&txt), r#""v=spf1 a ~all" "say \"hi\"""#);
        // CAA as on the wire: flags, tag length, tag, value.
        let wire = b"\x00\x05issueletsencrypt.org;accounturi=https://acme.example/acct/1";
        let length = Restrict::new(u16::try_from(wire.len()).expect("short"));
        let caa =
            RData::read(&mut BinDecoder::new(wire), RecordType::CAA, length).expect("valid CAA");
        assert_eq!(
            rdata(&caa),
            r#"0 issue "letsencrypt.org;accounturi=https://acme.example/acct/1""#
        );
        assert_eq!(quoted(b"tab\there"), r#""tab\009here""#);
    }
}
