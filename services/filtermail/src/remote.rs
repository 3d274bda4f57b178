//! Delivery of one message to one destination (a recipient domain or `[ip]` literal): the MX
//! lookup, then per MX host `POST https://<mx>/mxdeliv` and, when that is not possible, SMTP
//! with STARTTLS. Spec: `shared/spec/services.md` §10.6.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use mail_auth::hickory_resolver::TokioResolver;
use mail_auth::hickory_resolver::net::runtime::TokioRuntimeProvider;
use mail_auth::hickory_resolver::proto::rr::{RData, RecordType};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::client::Client;
use crate::dns;
use crate::mxdeliv::PATH;
use crate::smtp::Reply;
use crate::tls::{Connectors, Inner, Policy, server_name};

/// How long one HTTPS delivery (connect, TLS, request, response) may take.
const HTTPS_TIMEOUT: Duration = Duration::from_secs(60);
/// How long connecting to a host's SMTP port may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a host that took mail over SMTP after HTTPS failed is not asked over HTTPS.
const NO_HTTPS_FOR: Duration = Duration::from_secs(30 * 60);
/// The largest `/mxdeliv` response body read.
const MAX_RESPONSE: usize = 64 * 1024;

/// The ports remote relays are reached on (443 and 25; other values only in tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemotePorts {
    pub https: u16,
    pub smtp: u16,
}

impl Default for RemotePorts {
    fn default() -> RemotePorts {
        RemotePorts {
            https: 443,
            smtp: 25,
        }
    }
}

/// One message for some recipients at one destination.
#[derive(Debug, Clone)]
pub struct Mail {
    /// Empty for a bounce.
    pub sender: String,
    pub rcpts: Vec<String>,
    pub message: Bytes,
}

/// Which way a message left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Https,
    Smtp,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::Https => "HTTPS",
            Path::Smtp => "SMTP",
        }
    }
}

/// What `/mxdeliv` answered, when it answered at all.
enum HttpsAnswer {
    Accepted,
    /// The receiver's SMTP refusal (`400`/`413`).
    Refused(Reply),
}

/// Delivers to remote relays; shared by all destination workers.
pub struct Remote {
    resolver: TokioResolver,
    tls: Connectors,
    /// This relay's name in `EHLO`.
    helo: String,
    ports: RemotePorts,
    /// MX hosts that took mail over SMTP after HTTPS failed, and since when.
    no_https: Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("helo", &self.helo)
            .field("ports", &self.ports)
            .finish_non_exhaustive()
    }
}

impl Remote {
    /// A deliverer greeting as `helo`, resolving through `dns_server` or `/etc/resolv.conf`.
    pub fn new(helo: &str, dns_server: Option<SocketAddr>, ports: RemotePorts) -> Result<Remote> {
        let (config, options) = dns::resolver_config(dns_server)?;
        let resolver = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(options)
            .build()
            .map_err(|err| anyhow!("{err}"))
            .context("cannot set up the DNS resolver")?;
        Ok(Remote {
            resolver,
            tls: Connectors::load()?,
            helo: helo.to_owned(),
            ports,
            no_https: Mutex::new(HashMap::new()),
        })
    }

    /// Delivers `mail` to `destination` and returns the reply for its recipients. Logs one line.
    pub async fn deliver(&self, destination: &str, mail: &Mail) -> Reply {
        let hosts = match self.mx_hosts(destination).await {
            Ok(hosts) => hosts,
            Err(reply) => {
                log::warn!("delivery to {destination} failed: {reply}");
                return reply;
            }
        };
        let policy = Policy::of(destination);
        let mut last_error = anyhow!("no mail server");
        let mut last_host = destination;
        for host in &hosts {
            match self.deliver_to_host(host, policy, mail).await {
                Ok((path, reply)) => {
                    log::info!(
                        "delivery to {destination} via {host} over {}: {reply}",
                        path.name()
                    );
                    return reply;
                }
                Err(err) => {
                    log::warn!("delivery to {destination} via {host} failed: {err:#}");
                    (last_error, last_host) = (err, host);
                }
            }
        }
        let reply = Reply::new(
            421,
            format!(
                "Failed to connect to any mail server; last attempt to {last_host}: {last_error:#}"
            ),
        );
        log::warn!("delivery to {destination} failed: {reply}");
        reply
    }

    /// The hosts to try, in preference order, or the reply for all recipients.
    async fn mx_hosts(&self, destination: &str) -> Result<Vec<String>, Reply> {
        if let Some(literal) = destination
            .strip_prefix('[')
            .and_then(|d| d.strip_suffix(']'))
        {
            let ip = literal.strip_prefix("IPv6:").unwrap_or(literal);
            return Ok(vec![ip.to_owned()]);
        }
        let lookup = match self
            .resolver
            .lookup(format!("{destination}."), RecordType::MX)
            .await
        {
            Ok(lookup) => lookup,
            Err(err) if err.is_nx_domain() => {
                return Err(Reply::new(
                    512,
                    format!("Domain {destination} does not exist"),
                ));
            }
            Err(err) if err.is_no_records_found() => return Ok(vec![destination.to_owned()]),
            Err(err) => {
                log::warn!("MX lookup for {destination}: {err}");
                return Err(Reply::new(
                    421,
                    format!("DNS resolution failed for {destination}"),
                ));
            }
        };
        let mut mx: Vec<(u16, String)> = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::MX(mx) => Some((mx.preference, mx.exchange.clone())),
                _ => None,
            })
            .map(|(preference, exchange)| {
                let name = exchange.to_ascii();
                (preference, name.trim_end_matches('.').to_owned())
            })
            .collect();
        if mx.iter().any(|(_, host)| host.is_empty()) {
            // RFC 7505: the one MX record `0 .` says the domain takes no mail.
            return Err(Reply::new(
                556,
                format!("5.1.10 Domain {destination} does not accept mail (null MX)"),
            ));
        }
        if mx.is_empty() {
            return Ok(vec![destination.to_owned()]);
        }
        mx.sort_by_key(|(preference, _)| *preference);
        Ok(mx.into_iter().map(|(_, host)| host).collect())
    }

    /// `Ok` with the remote relay's answer; `Err` when this host could not be talked to.
    async fn deliver_to_host(
        &self,
        host: &str,
        policy: Policy,
        mail: &Mail,
    ) -> Result<(Path, Reply)> {
        let addrs = self.addresses(host).await?;
        let https = self.tls.get(policy, Inner::Https);
        let mut https_failed = false;
        if let Some(connector) = https.filter(|_| !self.remembers_no_https(host)) {
            let attempt = timeout(HTTPS_TIMEOUT, self.https(host, &addrs, connector, mail)).await;
            match attempt.unwrap_or_else(|_| Err(anyhow!("timeout"))) {
                Ok(HttpsAnswer::Accepted) => {
                    return Ok((Path::Https, Reply::new(250, "OK (HTTPS)")));
                }
                Ok(HttpsAnswer::Refused(reply)) => return Ok((Path::Https, reply)),
                Err(err) => {
                    log::info!("HTTPS delivery to {host} failed, trying SMTP: {err:#}");
                    https_failed = true;
                }
            }
        }
        let reply = self.smtp(host, &addrs, policy, mail).await?;
        if !reply.is_positive() {
            return Ok((Path::Smtp, reply));
        }
        if https_failed {
            self.remember_no_https(host);
        }
        Ok((Path::Smtp, Reply::new(250, "OK (SMTP)")))
    }

    /// The host's addresses: itself when it is an IP address, else its A/AAAA records.
    async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>> {
        if let Ok(ip) = host.parse() {
            return Ok(vec![ip]);
        }
        let lookup = self
            .resolver
            .lookup_ip(format!("{host}."))
            .await
            .map_err(|err| anyhow!("cannot resolve {host}: {err}"))?;
        Ok(lookup.iter().collect())
    }

    async fn connect(&self, addrs: &[IpAddr], port: u16) -> Result<TcpStream> {
        let addrs: Vec<SocketAddr> = addrs.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
        let stream = timeout(CONNECT_TIMEOUT, TcpStream::connect(addrs.as_slice()))
            .await
            .map_err(|_| anyhow!("timeout connecting to port {port}"))?
            .with_context(|| format!("cannot connect to port {port}"))?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    async fn https(
        &self,
        host: &str,
        addrs: &[IpAddr],
        connector: &tokio_rustls::TlsConnector,
        mail: &Mail,
    ) -> Result<HttpsAnswer> {
        let tcp = self.connect(addrs, self.ports.https).await?;
        let tls = connector
            .connect(server_name(host)?, tcp)
            .await
            .context("TLS handshake")?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .context("HTTP handshake")?;
        let connection = tokio::spawn(connection);
        let mut request = Request::post(PATH).header(hyper::header::HOST, host);
        if !mail.sender.is_empty() {
            request = request.header("X-MAIL-FROM", &mail.sender);
        }
        for rcpt in &mail.rcpts {
            request = request.header("X-MAIL-TO", rcpt);
        }
        let request = request
            .body(Full::new(mail.message.clone()))
            .context("cannot build the request")?;
        let response = sender.send_request(request).await.context("HTTP request")?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|err| anyhow!("cannot read the response: {err}"))?
            .to_bytes();
        connection.abort();
        let body = String::from_utf8_lossy(&body);
        match status {
            StatusCode::OK => Ok(HttpsAnswer::Accepted),
            StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => Reply::parse(body.trim())
                .map(HttpsAnswer::Refused)
                .with_context(|| format!("HTTP {status} without an SMTP reply: {body:?}")),
            _ => bail!("HTTP {status}"),
        }
    }

    /// SMTP on the host's port 25: STARTTLS unless the policy is plain, then one transaction.
    /// `Ok` holds the remote relay's final reply or first refusal.
    async fn smtp(
        &self,
        host: &str,
        addrs: &[IpAddr],
        policy: Policy,
        mail: &Mail,
    ) -> Result<Reply> {
        let tcp = self.connect(addrs, self.ports.smtp).await?;
        let mut client = Client::new(tcp, host);
        let greeting = client.reply().await?;
        if !greeting.is_positive() {
            bail!("SMTP greeting {greeting}");
        }
        let ehlo = self.ehlo(&mut client).await?;
        let Some(connector) = self.tls.get(policy, Inner::Smtp) else {
            return transaction(client, mail).await;
        };
        if !ehlo
            .text
            .lines()
            .any(|line| line.trim().eq_ignore_ascii_case("STARTTLS"))
        {
            bail!("the SMTP server does not offer STARTTLS");
        }
        let reply = client.command("STARTTLS").await?;
        if reply.code != 220 {
            bail!("STARTTLS refused: {reply}");
        }
        let tls = connector
            .connect(server_name(host)?, client.into_inner())
            .await
            .context("TLS handshake after STARTTLS")?;
        let mut client = Client::new(tls, host);
        self.ehlo(&mut client).await?;
        transaction(client, mail).await
    }

    async fn ehlo<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        client: &mut Client<S>,
    ) -> Result<Reply> {
        let reply = client.command(&format!("EHLO {}", self.helo)).await?;
        if !reply.is_positive() {
            bail!("EHLO refused: {reply}");
        }
        Ok(reply)
    }

    fn remembers_no_https(&self, host: &str) -> bool {
        let mut hosts = self.no_https.lock().unwrap_or_else(|e| e.into_inner());
        hosts.retain(|_, since| since.elapsed() < NO_HTTPS_FOR);
        hosts.contains_key(host)
    }

    fn remember_no_https(&self, host: &str) {
        log::info!(
            "not trying HTTPS with {host} for {} minutes",
            NO_HTTPS_FOR.as_secs() / 60
        );
        let mut hosts = self.no_https.lock().unwrap_or_else(|e| e.into_inner());
        hosts.insert(host.to_owned(), Instant::now());
    }
}

async fn transaction<S: AsyncRead + AsyncWrite + Unpin>(
    mut client: Client<S>,
    mail: &Mail,
) -> Result<Reply> {
    let reply = client
        .transaction(&mail.sender, &mail.rcpts, &mail.message)
        .await?;
    client.quit().await;
    Ok(reply)
}
