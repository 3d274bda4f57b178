//! The DNS resolver settings shared by DKIM verification and the transport's MX lookups:
//! `/etc/resolv.conf` (on a relay, the local unbound) or one given server.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
};

/// How long one DNS lookup may take.
const DNS_TIMEOUT: Duration = Duration::from_secs(30);

/// The resolver settings asking `dns_server` (UDP and TCP), or the system's resolvers when `None`.
pub fn resolver_config(dns_server: Option<SocketAddr>) -> Result<(ResolverConfig, ResolverOpts)> {
    let (config, mut options) = match dns_server {
        Some(addr) => {
            let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                .into_iter()
                .map(|mut c| {
                    c.port = addr.port();
                    c
                })
                .collect();
            let server = NameServerConfig::new(addr.ip(), true, connections);
            let config = ResolverConfig::from_parts(None, vec![], vec![server]);
            (config, ResolverOpts::default())
        }
        None => mail_auth::hickory_resolver::system_conf::read_system_conf()
            .map_err(|err| anyhow!("{err}"))
            .context("cannot read the DNS configuration /etc/resolv.conf")?,
    };
    options.timeout = DNS_TIMEOUT;
    Ok((config, options))
}
