//! `mtail`: counters of delivered mail, created accounts and filter decisions, read from the
//! journal by Debian's mtail and served as OpenMetrics on `mtail_address`:3903. The unit and
//! the program are always written; the service runs only when `mtail_address` is set.

use anyhow::Result;
use chatmail_core::{Activate, Component, Configure, Install, plan::Service, register};
use include_dir::{Dir, include_dir};

static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../templates/mtail");

/// The metrics exporter.
#[derive(Debug)]
pub struct Mtail;

const UNIT: &str = "mtail.service";

/// Where the programs are.
pub const PROGRAMS: &str = "/etc/mtail";

/// The validator, followed by a directory of programs: compiles them; an own free port keeps
/// it clear of a running mtail.
pub const COMPILE_CHECK: [&str; 6] = [
    "mtail",
    "--compile_only",
    "--logtostderr",
    "--address=127.0.0.1",
    "--port=0",
    "--progs",
];

impl Component for Mtail {
    fn name(&self) -> &'static str {
        "mtail"
    }

    fn after(&self) -> &'static [&'static str] {
        &["base"]
    }

    fn templates(&self) -> Option<&'static Dir<'static>> {
        Some(&TEMPLATES)
    }

    fn install(&self, install: &mut Install<'_>) -> Result<()> {
        install.packages(&["mtail"]);
        // Upstream's release binary; Debian's package replaces it.
        install.remove("/usr/local/bin/mtail");
        Ok(())
    }

    fn configure(&self, configure: &mut Configure<'_>) -> Result<()> {
        configure.template(
            format!("/etc/systemd/system/{UNIT}"),
            "mtail.service.j2",
            (),
        )?;
        configure.template(
            "/etc/mtail/delivered_mail.mtail",
            "delivered_mail.mtail",
            (),
        )?;
        configure.validate(&COMPILE_CHECK, PROGRAMS, false);
        Ok(())
    }

    fn activate(&self, activate: &mut Activate<'_>) -> Result<()> {
        if let Some(address) = &activate.config.mtail_address {
            activate.service(Service::running(UNIT));
            activate.port(3903, &["mtail"]);
            // `localhost` is always there; an IP address must belong to this host.
            if let Ok(ip) = address.parse() {
                activate.local_address("mtail_address", ip);
            }
        } else {
            activate.service(Service::stopped(UNIT));
        }
        Ok(())
    }
}

register!(Mtail);
