//! filtermail: the chatmail relay's before-queue SMTP proxy that lets only encrypted mail pass.
//!
//! Code map:
//! - [`openpgp`]: ASCII armor and the OpenPGP packet walk.
//! - [`ratelimit`]: the per-sender GCRA.
//! - [`smtp`]: replies, bounded line reading, address extraction, the envelope.

pub mod openpgp;
pub mod ratelimit;
pub mod smtp;
