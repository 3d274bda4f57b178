//! Black-box tests: real SMTP, LMTP and HTTP clients against the built `filtermail` binary,
//! which reinjects into a Postfix stand-in written here; the transport delivers to another
//! `filtermail incoming` behind TLS terminators, finding it through a DNS server written here.

mod common;
mod dialect;
mod dkim;
mod incoming;
mod mxdeliv;
mod outgoing;
mod testbed;
mod transport;
