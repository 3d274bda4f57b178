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

/// The shared secret of the TURN server, made once.
pub const SECRET: &str = "/etc/chatmail-turn/secret";
const SOCKET: &str = "/run/chatmail-turn/turn.socket";

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
        let realm = activate.config.mail_domain_bare.clone();
        let argv = [
            "chatmail-turn",
            "--realm",
            &realm,
            "--socket",
            SOCKET,
            "--secret-file",
            SECRET,
        ];
        let service = Service::running("turnserver.service")
            .foreground_as("vmail", &argv)
            .health_unix(SOCKET);
        activate.service(service);
        let vmail = Owner::new("vmail", "vmail");
        let why = "chatmail-turn's credentials socket, asked by chatmail-metadata";
        activate.runtime("/run/chatmail-turn", vmail, 0o755, why);
        activate.secret("/etc/chatmail-turn", "the TURN secret, made once");
        Ok(())
    }
}

register!(Turn);
