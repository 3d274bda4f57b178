//! The stop request every program of the relay obeys: SIGTERM (systemd, `docker stop`) or
//! SIGINT (a terminal's Ctrl-C). A container's main process is its PID 1, which the kernel
//! does not end on a signal it has no handler for, so each program must handle both itself.
//!
//! ```no_run
//! # async fn serve() {}
//! # async fn example() -> std::io::Result<()> {
//! let mut stop = chatmail_shutdown::Stop::install()?;
//! tokio::select! {
//!     () = serve() => {}
//!     () = stop.requested() => {}
//! }
//! # Ok(())
//! # }
//! ```

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Handlers for SIGTERM and SIGINT, installed before the program starts serving so a stop
/// requested at any time after is seen.
#[derive(Debug)]
pub struct Stop {
    terminate: Signal,
    interrupt: Signal,
}

impl Stop {
    /// Installs the handlers; needs a running tokio runtime with I/O enabled.
    pub fn install() -> std::io::Result<Stop> {
        Ok(Stop {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Completes when SIGTERM or SIGINT arrives.
    pub async fn requested(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}
