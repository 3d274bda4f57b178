//! TCP and TLS to the relay. Certificates are verified against the system's roots (and
//! `SSL_CERT_FILE`/`SSL_CERT_DIR`) for the relay's name, except on relays that sign their own
//! (`_`-domains and IPv4 relays, `tls` mode `self`), whose certificate is accepted as it is:
//! the handshake's signature is still checked against it. The configurations are filtermail's,
//! which reaches other relays the same way.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::Relay;

/// How long a connection, a handshake or one exchange may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// TLS client settings for `relay`: the system's roots, or any certificate where the relay
/// signs its own.
pub fn client_config(relay: &Relay) -> Result<Arc<ClientConfig>> {
    Ok(Arc::new(match relay.self_signed {
        true => filtermail::tls::any_certificate_config()?,
        false => filtermail::tls::verified_config()?,
    }))
}

/// A TCP connection to `port` of the relay.
pub async fn tcp(relay: &Relay, port: u16) -> Result<TcpStream> {
    let address = (relay.host.as_str(), port);
    let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(address))
        .await
        .with_context(|| format!("connecting to {}:{port}: timed out", relay.host))?
        .with_context(|| format!("connecting to {}:{port}", relay.host))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A TLS connection to `port` of the relay (implicit TLS: 993, 465, 443), for the name its
/// certificate must carry: its domain, or its address.
pub async fn tls(
    relay: &Relay,
    config: &Arc<ClientConfig>,
    port: u16,
) -> Result<TlsStream<TcpStream>> {
    let stream = tcp(relay, port).await?;
    let connector = TlsConnector::from(config.clone());
    let name = filtermail::tls::server_name(&relay.tls_name)?;
    tokio::time::timeout(TIMEOUT, connector.connect(name, stream))
        .await
        .with_context(|| format!("TLS handshake with {}:{port}: timed out", relay.host))?
        .with_context(|| format!("TLS handshake with {}:{port}", relay.host))
}
