//! `turn`: chatmail-turn, the relay's TURN/STUN server (UDP 3478), built with cmdeploy and
//! installed from beside it. chatmail-metadata asks its socket for call credentials, which are
//! made with a secret generated once per relay.

use anyhow::Result;
use chatmail_core::plan::{Generate, Owner, Service};
use chatmail_core::{Activate, Component, Configure, Install, argv, register};
use include_dir::{Dir, include_dir};

static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../templates/turn");

/// The TURN/STUN server.
#[derive(Debug)]
pub struct Turn;

const SECRET: &str = "/etc/chatmail-turn/secret";

impl Component for Turn {
    fn name(&self) -> &'static str {
        "turn"
    }

    /// base creates the vmail user it runs as.
    fn after(&self) -> &'static [&'static str] {
        &["base"]
    }

    fn templates(&self) -> Option<&'static Dir<'static>> {
        Some(&TEMPLATES)
    }

    fn install(&self, install: &mut Install<'_>) -> Result<()> {
        install.bundled_binary("chatmail-turn", "/usr/local/bin/chatmail-turn");
        Ok(())
    }

    fn configure(&self, configure: &mut Configure<'_>) -> Result<()> {
        configure.dir("/etc/chatmail-turn", Owner::new("vmail", "vmail"), 0o700);
        configure.generate(Generate {
            creates: vec![SECRET.into()],
            argv: argv(&["openssl", "rand", "-hex", "-out", SECRET, "32"]),
            owner: Some(Owner::new("vmail", "vmail")),
        });
        configure.template(
            "/etc/systemd/system/turnserver.service",
            "turnserver.service.j2",
            (),
        )?;
        Ok(())
    }

    fn activate(&self, activate: &mut Activate<'_>) -> Result<()> {
        activate.service(Service::running("turnserver.service"));
        Ok(())
    }
}

register!(Turn);
