//! `chatmail-dns`: the DNS records a chatmail relay needs, and whether they are set.
//!
//! - [`query`]: asks the authoritative name server of a name directly (found through the
//!   system resolver), and [`Lookup`], the one question the checks ask.
//! - [`presentation`]: record data in zone-file form, as `dig +short` prints it.
//! - [`dkim`]: the DKIM TXT value from opendkim's private key.
//! - [`relay`]: the facts collected on the relay ([`RelayData`]) and the pre-check.
//! - [`zone`]: the zone file rendered from them, and the parser of its lines.
//! - [`check`]: each zone record compared with the authoritative answer.

pub mod check;
pub mod dkim;
pub mod presentation;
pub mod query;
pub mod relay;
pub mod zone;

pub use check::{Report, check_zone};
pub use dkim::Dkim;
pub use hickory_proto::rr::RecordType;
pub use query::{Dns, Lookup};
pub use relay::RelayData;
