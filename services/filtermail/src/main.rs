//! The `filtermail` binary: `filtermail <chatmail.ini> outgoing|incoming`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Parser;
use filtermail::filter::Mode;
use filtermail::server::{Options, run};

/// The chatmail relay's encryption-enforcing SMTP proxy filter.
///
/// `outgoing` listens on filtermail_smtp_port and reinjects into postfix_reinject_port;
/// `incoming` listens on filtermail_smtp_port_incoming (SMTP) and
/// filtermail_http_port_incoming (HTTP /mxdeliv) and reinjects into
/// postfix_reinject_port_incoming. All on 127.0.0.1. Log level: RUST_LOG (default info).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The relay's settings, normally /usr/local/lib/chatmaild/chatmail.ini.
    config: PathBuf,
    /// Which mail to filter.
    #[arg(value_enum)]
    mode: Mode,
    /// Do not verify DKIM signatures of incoming mail (test relays only).
    /// Also set by FILTERMAIL_SKIP_DKIM=1|true.
    #[arg(long, env = "FILTERMAIL_SKIP_DKIM", value_parser = clap::builder::BoolishValueParser::new())]
    skip_dkim: bool,
    /// Look DKIM keys up at this DNS server (IP:PORT) instead of /etc/resolv.conf's.
    #[arg(long, env = "FILTERMAIL_DNS_SERVER", value_name = "IP:PORT")]
    dns_server: Option<SocketAddr>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = chatmail_config::Config::load(&args.config)
        .with_context(|| format!("cannot load {}", args.config.display()))?;
    let options = Options {
        mode: args.mode,
        skip_dkim: args.skip_dkim,
        dns_server: args.dns_server,
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
