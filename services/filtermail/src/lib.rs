//! filtermail: the chatmail relay's before-queue SMTP proxy that lets only encrypted mail pass,
//! and its transport to other relays.
//!
//! Postfix hands every submitted (`outgoing`) and every received (`incoming`) message to this
//! filter over SMTP; accepted mail is sent back to Postfix on a reinjection port, refused mail
//! gets the filter's reply. In `transport` mode Postfix hands every non-local message over LMTP
//! and filtermail delivers it to the recipient's relay (HTTPS `/mxdeliv`, then SMTP). See
//! README.md for the deployment facts.
//!
//! Code map:
//! - [`server`]: start-up, ports, the accept loop.
//! - [`session`]: one SMTP or LMTP connection (the dialects, size limit) and its [`session::Handler`].
//! - [`mxdeliv`]: the HTTP `/mxdeliv` front door of incoming mode.
//! - [`filter`]: the handler both front doors call: rate limit, rules, DKIM, reinjection.
//! - [`rules`]: the acceptance rules on the parsed message.
//! - [`openpgp`]: ASCII armor and the OpenPGP packet walk.
//! - [`ratelimit`]: the per-sender GCRA.
//! - [`dkim`]: DKIM verification of incoming mail.
//! - [`reinject`]: reinjection into Postfix.
//! - [`transport`]: transport mode's LMTP handler: recipients by destination, the workers.
//! - [`remote`]: delivery to one destination: MX lookup, HTTPS `/mxdeliv`, SMTP with STARTTLS.
//! - [`tls`]: the transport's TLS policy and rustls configurations.
//! - [`client`]: the SMTP client (reinjection, the transport's SMTP path).
//! - [`dns`]: resolver settings (DKIM keys, MX records).
//! - [`smtp`]: replies, bounded line reading, address extraction, the envelope.

pub mod client;
pub mod dkim;
pub mod dns;
pub mod filter;
pub mod mxdeliv;
pub mod openpgp;
pub mod ratelimit;
pub mod reinject;
pub mod remote;
pub mod rules;
pub mod server;
pub mod session;
pub mod smtp;
pub mod tls;
pub mod transport;
