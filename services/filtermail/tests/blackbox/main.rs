//! Black-box tests: real SMTP and HTTP clients against the built `filtermail` binary, which
//! reinjects into a Postfix stand-in written here.

mod common;
mod dialect;
mod dkim;
mod incoming;
mod mxdeliv;
mod outgoing;
