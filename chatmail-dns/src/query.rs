//! DNS questions asked the way upstream's `dig` calls did: find the authoritative name server
//! of a name through the system resolver, then ask that server directly (no recursion, so no
//! cache stands between the operator's change and the check) and take the first answer.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::domain::Name;
use hickory_proto::rr::{RData, RecordType};

use crate::presentation;

/// The one question the checks ask: the first answer for (`rtype`, `name`) in presentation
/// form, or an empty string when there is none.
pub trait Lookup {
    /// Looks up `name` (with or without its trailing dot).
    fn lookup(&self, rtype: RecordType, name: &str) -> Result<String>;
}

/// How long one UDP attempt or one TCP exchange may take.
const TIMEOUT: Duration = Duration::from_secs(3);
/// UDP attempts per server before giving up on it.
const ATTEMPTS: usize = 2;
/// The EDNS payload size offered (the DNS flag day 2020 value), so DKIM keys fit in UDP.
const PAYLOAD: u16 = 1232;

/// DNS over the network, starting from the nameservers of a `resolv.conf`.
#[derive(Debug)]
pub struct Dns {
    resolvers: Vec<IpAddr>,
    verbose: bool,
}

impl Dns {
    /// Uses the system resolver configuration, `/etc/resolv.conf`.
    pub fn system(verbose: bool) -> Result<Dns> {
        Dns::from_resolv_conf(Path::new("/etc/resolv.conf"), verbose)
    }

    /// Uses the `nameserver` entries of the resolver configuration at `path`.
    pub fn from_resolv_conf(path: &Path, verbose: bool) -> Result<Dns> {
        let text = std::fs::read(path).with_context(|| {
            format!("cannot read the resolver configuration {}", path.display())
        })?;
        let conf = resolv_conf::Config::parse(&text)
            .map_err(|err| anyhow!("{}: {err}", path.display()))?;
        let resolvers: Vec<IpAddr> = conf.nameservers.iter().map(IpAddr::from).collect();
        if resolvers.is_empty() {
            bail!("{} names no nameserver", path.display());
        }
        Ok(Dns { resolvers, verbose })
    }

    /// The address of the first name server that the system resolver names for `name`
    /// (answer section first, then authority), or `None` when it names none.
    pub fn authoritative_server(&self, name: &Name) -> Result<Option<IpAddr>> {
        let response = self.ask_resolvers(name, RecordType::NS)?;
        let server = response
            .answers
            .iter()
            .chain(&response.authorities)
            .find_map(|record| match &record.data {
                RData::NS(ns) => Some(ns.0.clone()),
                _ => None,
            });
        let Some(server) = server else {
            return Ok(None);
        };
        for rtype in [RecordType::A, RecordType::AAAA] {
            let response = self.ask_resolvers(&server, rtype)?;
            let address = response
                .answers
                .iter()
                .find_map(|record| match &record.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                    _ => None,
                });
            if address.is_some() {
                return Ok(address);
            }
        }
        bail!("the name server {server} of {name} has no address")
    }

    /// Asks the system resolvers in turn (recursion desired); the first response wins.
    fn ask_resolvers(&self, name: &Name, rtype: RecordType) -> Result<Message> {
        let mut errors = Vec::new();
        for &resolver in &self.resolvers {
            match self.exchange(resolver, name, rtype, true) {
                Ok(response) => return Ok(response),
                Err(err) => errors.push(format!("{err:#}")),
            }
        }
        bail!("no resolver answered: {}", errors.join("; "))
    }

    /// One question to `server`: over UDP, and again over TCP when the answer was truncated.
    fn exchange(
        &self,
        server: IpAddr,
        name: &Name,
        rtype: RecordType,
        recurse: bool,
    ) -> Result<Message> {
        if self.verbose {
            eprintln!("[dns] {rtype} {name} @{server}");
        }
        let mut query = Message::query();
        query.metadata.recursion_desired = recurse;
        query.add_query(Query::query(name.clone(), rtype));
        let mut edns = Edns::new();
        edns.set_max_payload(PAYLOAD);
        query.set_edns(edns);
        let request = query.to_vec().context("cannot encode the query")?;
        let address = SocketAddr::new(server, 53);
        let context = || format!("{rtype} {name} from {server}");
        let mut response = udp(address, &request, query.metadata.id).with_context(context)?;
        if response.metadata.truncation {
            response = tcp(address, &request, query.metadata.id).with_context(context)?;
        }
        match response.metadata.response_code {
            ResponseCode::NoError | ResponseCode::NXDomain => Ok(response),
            code => bail!("{}: the server answered {code}", context()),
        }
    }
}

impl Lookup for Dns {
    fn lookup(&self, rtype: RecordType, name: &str) -> Result<String> {
        let name = fqdn(name)?;
        let response = match self.authoritative_server(&name)? {
            Some(server) => self.exchange(server, &name, rtype, false)?,
            None => self.ask_resolvers(&name, rtype)?,
        };
        Ok(response
            .answers
            .first()
            .map(|record| presentation::rdata(&record.data))
            .unwrap_or_default())
    }
}

/// `name` as an absolute domain name.
fn fqdn(name: &str) -> Result<Name> {
    let absolute = match name.ends_with('.') {
        true => name.to_owned(),
        false => format!("{name}."),
    };
    Name::from_ascii(&absolute).with_context(|| format!("bad domain name {name:?}"))
}

/// Sends `request` over UDP and waits for the response with the same id.
fn udp(server: SocketAddr, request: &[u8], id: u16) -> Result<Message> {
    let local: IpAddr = match server {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind((local, 0)).context("cannot open a UDP socket")?;
    socket.connect(server).context("cannot reach the server")?;
    let mut buffer = vec![0; usize::from(u16::MAX)];
    for _ in 0..ATTEMPTS {
        socket.send(request).context("cannot send the query")?;
        let deadline = Instant::now() + TIMEOUT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            socket.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            let size = match socket.recv(&mut buffer) {
                Ok(size) => size,
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    break;
                }
                Err(err) => return Err(err).context("no answer"),
            };
            // Anything else on the socket (a late answer to an earlier attempt) is skipped.
            if let Ok(response) = Message::from_vec(&buffer[..size])
                && response.metadata.id == id
            {
                return Ok(response);
            }
        }
    }
    bail!("no answer (timed out)")
}

/// Sends `request` over TCP (two-byte length prefix) and reads the response.
fn tcp(server: SocketAddr, request: &[u8], id: u16) -> Result<Message> {
    let mut stream =
        TcpStream::connect_timeout(&server, TIMEOUT).context("cannot connect over TCP")?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let length = u16::try_from(request.len()).context("query too long")?;
    stream.write_all(&length.to_be_bytes())?;
    stream.write_all(request)?;
    let mut prefix = [0; 2];
    stream
        .read_exact(&mut prefix)
        .context("no answer over TCP")?;
    let mut buffer = vec![0; usize::from(u16::from_be_bytes(prefix))];
    stream
        .read_exact(&mut buffer)
        .context("short answer over TCP")?;
    let response = Message::from_vec(&buffer).context("malformed answer over TCP")?;
    if response.metadata.id != id {
        bail!("answer over TCP for another query");
    }
    Ok(response)
}
