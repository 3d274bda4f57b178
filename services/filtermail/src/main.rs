//! The `filtermail` binary: `filtermail <chatmail.ini> outgoing|incoming|transport`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Parser;
use filtermail::remote::RemotePorts;
use filtermail::server::{Options, Service, run};

/// The chatmail relay's encryption-enforcing SMTP proxy filter and transport.
///
/// `outgoing` listens on filtermail_smtp_port and reinjects into postfix_reinject_port;
/// `incoming` listens on filtermail_smtp_port_incoming (SMTP) and
/// filtermail_http_port_incoming (HTTP /mxdeliv) and reinjects into
/// postfix_reinject_port_incoming; `transport` listens on filtermail_lmtp_port_transport (LMTP)
/// and delivers to the recipients' relays: POST https://<mx>/mxdeliv, else SMTP port 25 with
/// STARTTLS. All listen on 127.0.0.1. Log level: RUST_LOG (default info). The transport trusts
/// the system's certificates (SSL_CERT_FILE/SSL_CERT_DIR override them).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The relay's settings, normally /usr/local/lib/chatmaild/chatmail.ini.
    config: PathBuf,
    /// Which service to run.
    #[arg(value_enum)]
    service: Service,
    /// Do not verify DKIM signatures of incoming mail (test relays only).
    /// Also set by FILTERMAIL_SKIP_DKIM=1|true.
    #[arg(long, env = "FILTERMAIL_SKIP_DKIM", value_parser = clap::builder::BoolishValueParser::new())]
    skip_dkim: bool,
    /// Ask this DNS server (IP:PORT) for DKIM keys and MX records instead of
    /// /etc/resolv.conf's.
    #[arg(long, env = "FILTERMAIL_DNS_SERVER", value_name = "IP:PORT")]
    dns_server: Option<SocketAddr>,
    /// Tests only: the port the transport reaches remote relays' HTTPS on, instead of 443.
    #[arg(long, value_name = "PORT", default_value_t = RemotePorts::default().https)]
    remote_https_port: u16,
    /// Tests only: the port the transport reaches remote relays' SMTP on, instead of 25.
    #[arg(long, value_name = "PORT", default_value_t = RemotePorts::default().smtp)]
    remote_smtp_port: u16,
}

fn main() -> Result<()> {
    let args = Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = chatmail_config::Config::load(&args.config)
        .with_context(|| format!("cannot load {}", args.config.display()))?;
    let options = Options {
        service: args.service,
        skip_dkim: args.skip_dkim,
        dns_server: args.dns_server,
        remote_ports: RemotePorts {
            https: args.remote_https_port,
            smtp: args.remote_smtp_port,
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async {
        let mut stop = chatmail_shutdown::Stop::install().context("cannot handle SIGTERM")?;
        tokio::select! {
            result = run(config, options) => result,
            () = stop.requested() => Ok(()),
        }
    });
    runtime.shutdown_background();
    result
}
