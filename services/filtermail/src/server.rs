//! Start-up: read the settings, bind the mode's ports on 127.0.0.1 and serve connections.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use chatmail_config::Config;
use tokio::net::TcpListener;

use crate::dkim::DkimVerifier;
use crate::filter::{Filter, Mode};
use crate::{mxdeliv, session};

/// Everything that decides how filtermail runs besides `chatmail.ini`.
#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    /// Skip DKIM verification of incoming mail (test relays only).
    pub skip_dkim: bool,
    /// Ask this DNS server for DKIM keys instead of the ones in `/etc/resolv.conf`.
    pub dns_server: Option<SocketAddr>,
}

/// The addresses one mode listens on and reinjects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports {
    pub smtp: SocketAddr,
    pub http: Option<SocketAddr>,
    pub reinject: SocketAddr,
}

impl Ports {
    pub fn of(config: &Config, mode: Mode) -> Ports {
        let local = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
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
    let ports = Ports::of(&config, options.mode);
    let dkim = match (options.mode, options.skip_dkim) {
        (Mode::Incoming, false) => Some(DkimVerifier::new(options.dns_server)?),
        (Mode::Incoming, true) | (Mode::Outgoing, _) => None,
    };
    let filter = Arc::new(Filter::new(options.mode, config, dkim, ports.reinject));
    let smtp = bind(ports.smtp).await?;
    let http = match ports.http {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    // The first log line: tests and operators wait for `entering serving loop`.
    log::info!(
        "entering serving loop: {:?} filter on {} (HTTP {}), reinjecting to {}",
        options.mode,
        ports.smtp,
        ports.http.map_or("off".to_owned(), |a| a.to_string()),
        ports.reinject
    );
    if options.mode == Mode::Incoming && options.skip_dkim {
        log::warn!("DKIM verification DISABLED! Incoming mail is accepted unsigned.");
    }
    if let Some(http) = http {
        tokio::spawn(mxdeliv::serve(http, filter.clone()));
    }
    loop {
        let (stream, peer) = match smtp.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                log::warn!("SMTP accept failed: {err}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let filter = filter.clone();
        tokio::spawn(async move {
            if let Err(err) = session::serve(stream, peer, &filter).await {
                log::debug!("SMTP connection from {peer} ended: {err:#}");
            }
        });
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}
