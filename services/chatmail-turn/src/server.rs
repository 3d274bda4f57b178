//! The TURN server: one UDP socket per listening address, each relaying from its own address,
//! with long-term credentials checked against the shared secret.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::UdpSocket;
use turn::auth::LongTermAuthHandler;
use turn::relay::relay_static::RelayAddressGeneratorStatic;
use turn::server::Server;
use turn::server::config::{ConnConfig, ServerConfig};
use webrtc_util::vnet::net::Net;

/// The addresses to listen on by default: every interface address that is neither loopback
/// nor link-local, IPv4 and IPv6.
pub fn interface_addresses() -> Result<Vec<IpAddr>> {
    let interfaces = webrtc_util::ifaces::ifaces()
        .map_err(|err| anyhow::anyhow!("listing interfaces: {err}"))?;
    let mut addresses: Vec<IpAddr> = interfaces
        .iter()
        .filter_map(|interface| interface.addr.map(|a| a.ip()))
        .filter(|ip| !ip.is_loopback() && !is_link_local(ip))
        .collect();
    addresses.sort_unstable();
    addresses.dedup();
    Ok(addresses)
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// Starts a TURN server for `realm` on `port` of each of `addresses`.
pub async fn start(addresses: &[IpAddr], port: u16, realm: &str, secret: &str) -> Result<Server> {
    anyhow::ensure!(!addresses.is_empty(), "no address to listen on");
    let mut conn_configs = Vec::new();
    for ip in addresses {
        let addr = SocketAddr::new(*ip, port);
        let conn = UdpSocket::bind(addr)
            .await
            .with_context(|| format!("binding UDP {addr}"))?;
        log::info!("TURN/STUN on udp {addr}");
        conn_configs.push(ConnConfig {
            conn: Arc::new(conn),
            relay_addr_generator: Box::new(RelayAddressGeneratorStatic {
                relay_address: *ip,
                address: ip.to_string(),
                net: Arc::new(Net::new(None)),
            }),
        });
    }
    Server::new(ServerConfig {
        conn_configs,
        realm: realm.to_owned(),
        auth_handler: Arc::new(LongTermAuthHandler::new(secret.to_owned())),
        channel_bind_timeout: Duration::from_secs(0),
        alloc_close_notify: None,
    })
    .await
    .context("starting the TURN server")
}
