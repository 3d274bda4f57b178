//! `blackbox`, an example of a component outside cmdeploy: Debian's Prometheus blackbox
//! exporter, set up to probe this relay's own endpoints (SMTPS, submission with STARTTLS,
//! IMAPS, HTTPS), so that a Prometheus server notices a dead port or an expiring certificate.
//!
//! Prometheus scrapes `/probe?module=<module>&target=<domain>:<port>` on
//! `blackbox_listen_address`:`blackbox_port`, modules `smtps`, `submission`, `imaps` and
//! `https`. The settings live in `chatmail.ini`'s `[params]` beside the built-in ones; they are
//! declared by [`SETTINGS`].

use anyhow::Result;
use chatmail_core::config::schema::{DefaultValue, Group, Key, Kind};
use chatmail_core::config::{Config, TlsMode};
use chatmail_core::plan::{Owner, Service};
use chatmail_core::{Activate, Component, Configure, Install, register};
use include_dir::{Dir, include_dir};
use serde::Serialize;

/// The component's templates, embedded at build time from this crate's own folder. The
/// engine names them `blackbox/<file>`, which is also where an operator's override goes.
static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/templates");

/// Debian's unit name: the component's unit in `/etc/systemd/system` replaces the package's.
pub const UNIT: &str = "prometheus-blackbox-exporter.service";
/// The prober's settings file, rendered from `templates/blackbox.yml.j2`.
pub const CONFIG_PATH: &str = "/etc/chatmail-blackbox/blackbox.yml";
const PROGRAM: &str = "prometheus-blackbox-exporter";

/// The settings this component reads from `[params]`; their names start with `blackbox_`.
pub static SETTINGS: [Key; 3] = [
    Key {
        name: "blackbox_listen_address",
        kind: Kind::Address,
        default: DefaultValue::Value("127.0.0.1"),
        group: Group::Deployment,
        help: "Where the blackbox prober listens for Prometheus: an IP address, localhost, or empty for every address.",
    },
    Key {
        name: "blackbox_port",
        kind: Kind::Port,
        default: DefaultValue::Value("9115"),
        group: Group::Deployment,
        help: "The blackbox prober's HTTP port.",
    },
    Key {
        name: "blackbox_timeout",
        kind: Kind::Count,
        default: DefaultValue::Value("10"),
        group: Group::Deployment,
        help: "Seconds one probe may take.",
    },
];

/// The blackbox prober component.
#[derive(Debug)]
pub struct Blackbox;

/// What the templates see as `vars`, beside `config` and `facts`.
#[derive(Debug, Serialize)]
struct Vars {
    /// `--web.listen-address`: `host:port`, IPv6 addresses in brackets.
    listen: String,
    /// Seconds per probe.
    timeout: u32,
    /// The name the relay's certificate is for.
    server_name: String,
    /// Whether the certificate is self-signed (not verifiable by a CA).
    self_signed: bool,
}

/// The prober's listening address and the URL its health check asks, from the settings.
fn listen(config: &Config) -> Result<(String, String)> {
    let address: String = config.extension("blackbox_listen_address")?;
    let port: u16 = config.extension("blackbox_port")?;
    let host = match address.as_str() {
        "" | "0.0.0.0" => "127.0.0.1".to_owned(),
        "::" => "[::1]".to_owned(),
        other if other.contains(':') => format!("[{other}]"),
        other => other.to_owned(),
    };
    let listen = match address.contains(':') {
        true => format!("[{address}]:{port}"),
        false => format!("{address}:{port}"),
    };
    Ok((listen, format!("http://{host}:{port}/-/healthy")))
}

impl Component for Blackbox {
    fn name(&self) -> &'static str {
        "blackbox"
    }

    /// After the services it probes, so a full run configures them first.
    fn after(&self) -> &'static [&'static str] {
        &["dovecot", "nginx", "postfix"]
    }

    fn settings(&self) -> &'static [Key] {
        &SETTINGS
    }

    fn templates(&self) -> Option<&'static Dir<'static>> {
        Some(&TEMPLATES)
    }

    fn install(&self, install: &mut Install<'_>) -> Result<()> {
        // curl runs the container's health check.
        install.packages(&[PROGRAM, "curl"]);
        Ok(())
    }

    fn configure(&self, configure: &mut Configure<'_>) -> Result<()> {
        let config = configure.config;
        let (listen, _) = listen(config)?;
        let vars = Vars {
            listen,
            timeout: config.extension("blackbox_timeout")?,
            server_name: config.mail_domain_bare.clone(),
            self_signed: config.tls.mode == TlsMode::SelfSigned,
        };
        configure.dir("/etc/chatmail-blackbox", Owner::root(), 0o755);
        configure.template(CONFIG_PATH, "blackbox.yml.j2", &vars)?;
        configure.template(format!("/etc/systemd/system/{UNIT}"), "unit.j2", &vars)?;
        configure.validate(
            &[PROGRAM, "--config.check", "--config.file"],
            CONFIG_PATH,
            false,
        );
        Ok(())
    }

    fn activate(&self, activate: &mut Activate<'_>) -> Result<()> {
        let (listen, health) = listen(activate.config)?;
        let port: u16 = activate.config.extension("blackbox_port")?;
        let config = format!("--config.file={CONFIG_PATH}");
        let address = format!("--web.listen-address={listen}");
        activate.service(
            Service::running(UNIT)
                .foreground(&[PROGRAM, &config, &address])
                .health(&["curl", "--fail", "--silent", "--show-error", &health]),
        );
        // The kernel shortens process names to 15 characters.
        activate.port(port, &["prometheus-blac"]);
        Ok(())
    }
}

register!(Blackbox);
