//! Start-up: read the settings, bind the service's ports on 127.0.0.1 and serve connections.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use chatmail_config::Config;
use tokio::net::TcpListener;

use crate::dkim::DkimVerifier;
use crate::filter::{Filter, Mode};
use crate::remote::{Remote, RemotePorts};
use crate::session::Handler;
use crate::transport::Transport;
use crate::{mxdeliv, session};

/// The three services of `filtermail <ini> <service>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Service {
    /// Filter mail submitted by the relay's users (SMTP, reinjected into Postfix).
    Outgoing,
    /// Filter mail from other servers (SMTP and HTTP /mxdeliv, reinjected into Postfix).
    Incoming,
    /// Deliver non-local mail from Postfix (LMTP) to remote relays: HTTPS /mxdeliv, then SMTP.
    Transport,
}

/// Everything that decides how filtermail runs besides `chatmail.ini`.
#[derive(Debug, Clone)]
pub struct Options {
    pub service: Service,
    /// Skip DKIM verification of incoming mail (test relays only).
    pub skip_dkim: bool,
    /// Ask this DNS server instead of the ones in `/etc/resolv.conf` (DKIM keys, MX records).
    pub dns_server: Option<SocketAddr>,
    /// Where the transport reaches remote relays.
    pub remote_ports: RemotePorts,
}

/// The addresses one filter mode listens on and reinjects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports {
    pub smtp: SocketAddr,
    pub http: Option<SocketAddr>,
    pub reinject: SocketAddr,
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

impl Ports {
    pub fn of(config: &Config, mode: Mode) -> Ports {
        match mode {
            Mode::Outgoing => Ports {
                smtp: local(config.filtermail_smtp_port),
                http: None,
                reinject: local(config.postfix_reinject_port),
            },
            Mode::Incoming => Ports {
                smtp: local(config.filtermail_smtp_port_incoming),
                http: Some(local(config.filtermail_http_port_incoming)),
                reinject: local(config.postfix_reinject_port_incoming),
            },
        }
    }
}

/// Serves until the process is stopped; returns only when start-up fails.
pub async fn run(config: Config, options: Options) -> Result<()> {
    match options.service {
        Service::Outgoing => run_filter(config, Mode::Outgoing, &options).await,
        Service::Incoming => run_filter(config, Mode::Incoming, &options).await,
        Service::Transport => run_transport(config, &options).await,
    }
}

async fn run_filter(config: Config, mode: Mode, options: &Options) -> Result<()> {
    let ports = Ports::of(&config, mode);
    let dkim = match (mode, options.skip_dkim) {
        (Mode::Incoming, false) => Some(DkimVerifier::new(options.dns_server)?),
        (Mode::Incoming, true) | (Mode::Outgoing, _) => None,
    };
    let filter = Arc::new(Filter::new(mode, config, dkim, ports.reinject));
    let smtp = bind(ports.smtp).await?;
    let http = match ports.http {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    // The first log line: tests and operators wait for `entering serving loop`.
    log::info!(
        "entering serving loop: {mode:?} filter on {} (HTTP {}), reinjecting to {}",
        ports.smtp,
        ports.http.map_or("off".to_owned(), |a| a.to_string()),
        ports.reinject
    );
    if mode == Mode::Incoming && options.skip_dkim {
        log::warn!("DKIM verification DISABLED! Incoming mail is accepted unsigned.");
    }
    if let Some(http) = http {
        tokio::spawn(mxdeliv::serve(http, filter.clone()));
    }
    serve_sessions(smtp, filter).await
}

async fn run_transport(config: Config, options: &Options) -> Result<()> {
    let addr = local(config.filtermail_lmtp_port_transport);
    let remote = Remote::new(
        &config.postfix_myhostname,
        options.dns_server,
        options.remote_ports,
    )?;
    let max_message_size = usize::try_from(config.max_message_size).unwrap_or(usize::MAX);
    let transport = Arc::new(Transport::new(remote, max_message_size));
    let lmtp = bind(addr).await?;
    log::info!(
        "entering serving loop: transport on {addr} (LMTP), delivering over HTTPS port {}, then SMTP port {}",
        options.remote_ports.https,
        options.remote_ports.smtp
    );
    serve_sessions(lmtp, transport).await
}

/// Accepts connections on `listener` forever, one session task each.
async fn serve_sessions<H: Handler + Send + 'static>(
    listener: TcpListener,
    handler: Arc<H>,
) -> Result<()> {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                log::warn!("accept failed: {err}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            if let Err(err) = session::serve(stream, peer, &*handler).await {
                log::debug!("connection from {peer} ended: {err:#}");
            }
        });
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}
