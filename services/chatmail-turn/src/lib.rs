//! chatmail-turn: the relay's TURN/STUN server (UDP 3478) and the Unix socket that hands out
//! time-limited TURN credentials to chatmail-metadata.
//!
//! - [`credentials`]: the TURN REST credential scheme and the socket serving it.
//! - [`server`]: the listening addresses and the TURN server on them.

pub mod credentials;
pub mod server;
