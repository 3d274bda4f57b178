//! filtermail: the chatmail relay's before-queue SMTP proxy that lets only encrypted mail pass.
//!
//! Postfix hands every submitted (`outgoing`) and every received (`incoming`) message to this
//! filter over SMTP; accepted mail is sent back to Postfix on a reinjection port, refused mail
//! gets the filter's reply. See README.md for the deployment facts.
//!
//! Code map:
//! - [`server`]: start-up, ports, the accept loop.
//! - [`session`]: one SMTP connection (the proxy dialect, size limit).
//! - [`mxdeliv`]: the HTTP `/mxdeliv` front door of incoming mode.
//! - [`filter`]: the handler both front doors call: rate limit, rules, DKIM, reinjection.
//! - [`rules`]: the acceptance rules on the parsed message.
//! - [`openpgp`]: ASCII armor and the OpenPGP packet walk.
//! - [`ratelimit`]: the per-sender GCRA.
//! - [`dkim`]: DKIM verification of incoming mail.
//! - [`reinject`]: the SMTP client talking to Postfix.
//! - [`smtp`]: replies, bounded line reading, address extraction, the envelope.

pub mod dkim;
pub mod filter;
pub mod mxdeliv;
pub mod openpgp;
pub mod ratelimit;
pub mod reinject;
pub mod rules;
pub mod server;
pub mod session;
pub mod smtp;
