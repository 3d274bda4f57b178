//! The `chatmail-turn` binary: `chatmail-turn --realm <domain> --socket <path>`.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use chatmail_turn::{credentials, server};
use clap::Parser;

/// TURN/STUN server of a chatmail relay, with a Unix socket handing out credentials.
///
/// Log level: RUST_LOG (default info).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The TURN realm, normally the relay's domain.
    #[arg(long, default_value = "webrtc.rs")]
    realm: String,
    /// Where to serve credentials: each connection gets one `<username>:<password>` line.
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    /// The UDP port for TURN and STUN.
    #[arg(long, default_value_t = 3478)]
    port: u16,
    /// Listen on these addresses (repeatable) instead of every interface address that is
    /// neither loopback nor link-local.
    #[arg(long, value_name = "IP")]
    listen: Vec<IpAddr>,
    /// A file holding the shared secret credentials are made with; without it, the secret
    /// of upstream's chatmail-turn.
    #[arg(long, value_name = "PATH")]
    secret_file: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let secret = credentials::secret(args.secret_file.as_deref())?;
    let addresses = match args.listen.is_empty() {
        true => server::interface_addresses()?,
        false => args.listen.clone(),
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(async {
            let mut stop = chatmail_shutdown::Stop::install().context("handling SIGTERM")?;
            let turn = server::start(&addresses, args.port, &args.realm, &secret).await?;
            let result = tokio::select! {
                result = credentials::serve(args.socket.clone(), secret.clone()) => result,
                () = stop.requested() => Ok(()),
            };
            turn.close().await.context("closing the TURN server")?;
            result
        })
}
