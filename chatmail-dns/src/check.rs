//! The zone check: every record of the zone compared, as a string, with the first answer of
//! its authoritative name server.

use anyhow::Result;

use crate::query::Lookup;
use crate::zone;

/// The zone lines whose record DNS does not (yet) hold.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Required records that are missing or different, as zone lines.
    pub required: Vec<String>,
    /// Recommended records that are missing or different, as zone lines.
    pub recommended: Vec<String>,
}

impl Report {
    /// True when every record of the zone is set.
    pub fn all_set(&self) -> bool {
        self.required.is_empty() && self.recommended.is_empty()
    }
}

/// Looks up every record of `zone` and reports those whose answer differs.
pub fn check_zone(zone: &str, dns: &dyn Lookup) -> Result<Report> {
    let mut report = Report::default();
    for record in zone::parse(zone)? {
        if dns.lookup(record.rtype, &record.name)? == record.rdata {
            continue;
        }
        match record.required {
            true => report.required.push(record.line),
            false => report.recommended.push(record.line),
        }
    }
    Ok(report)
}
