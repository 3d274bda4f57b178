//! `fcgiwrap`: runs CGI programs for nginx over `/run/fcgiwrap.socket`; nginx's `/new`
//! (account creation) goes through it. In containers it runs on its own socket directory,
//! [`CONTAINER_SOCKET`], shared with the nginx container.

use anyhow::Result;
use chatmail_core::plan::{Owner, Service};
use chatmail_core::{Activate, Component, Install, register};

/// fcgiwrap's socket in containers (Debian's socket unit makes `/run/fcgiwrap.socket` on a
/// host); a directory of its own, so that it can be a volume.
pub const CONTAINER_SOCKET: &str = "/run/fcgiwrap/fcgiwrap.socket";

/// The FastCGI wrapper.
#[derive(Debug)]
pub struct Fcgiwrap;

impl Component for Fcgiwrap {
    fn name(&self) -> &'static str {
        "fcgiwrap"
    }

    fn after(&self) -> &'static [&'static str] {
        &["base", "chatmaild"]
    }

    fn install(&self, install: &mut Install<'_>) -> Result<()> {
        install.packages(&["fcgiwrap"]);
        Ok(())
    }

    /// Debian's socket unit creates the socket; the service is started too, because upstream
    /// saw it not start on its own.
    fn activate(&self, activate: &mut Activate<'_>) -> Result<()> {
        activate.service(Service::running("fcgiwrap.socket"));
        let socket = format!("unix:{CONTAINER_SOCKET}");
        let service = Service::running("fcgiwrap.service")
            .foreground_as("www-data", &["fcgiwrap", "-s", &socket])
            // Once it served a connection (the health check's), it no longer leaves its
            // accept loop on SIGTERM, and is killed when the grace period ends; SIGINT ends
            // it at once, but leaves the socket, on which a new start could not bind.
            .stop_signal("SIGINT")
            .before(&["rm", "-f", CONTAINER_SOCKET])
            .health_unix(CONTAINER_SOCKET);
        activate.service(service);
        // newemail, the CGI it runs, reads chatmaild's settings.
        activate.reads("chatmaild");
        let owner = Owner::new("www-data", "www-data");
        activate.runtime(
            "/run/fcgiwrap",
            owner,
            0o755,
            "fcgiwrap's socket, used by nginx",
        );
        Ok(())
    }
}

register!(Fcgiwrap);
