//! The transport's test surroundings, shared by the black-box tests and the benchmark:
//! receiving relays (a real `filtermail incoming` behind TLS terminators that stand for nginx's
//! HTTPS `/mxdeliv` and Postfix's STARTTLS port 25, each on its own loopback address), a DNS
//! server written with hickory-proto, certificates made with rcgen (a test CA the transport
//! trusts through `SSL_CERT_FILE`, and self-signed ones), and an LMTP client.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;

use mail_auth::hickory_resolver::proto::op::{Message, ResponseCode};
use mail_auth::hickory_resolver::proto::rr::rdata::{A, MX};
use mail_auth::hickory_resolver::proto::rr::{Name, RData, Record};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufStream, copy_bidirectional};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio_rustls::TlsAcceptor;

use crate::common::*;

/// The runtime the test servers (DNS aside) run on.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("test runtime")
    })
}

/// The test CA; relays with a [`Cert::Trusted`] certificate are signed by it.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn ca() -> &'static Ca {
    static CA: OnceLock<Ca> = OnceLock::new();
    CA.get_or_init(|| {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let pem = params.self_signed(&key).expect("CA certificate").pem();
        Ca {
            issuer: Issuer::new(params, key),
            pem,
        }
    })
}

/// The certificate a receiving relay presents.
pub enum Cert {
    /// Signed by the test CA, for these names.
    Trusted(&'static [&'static str]),
    /// Self-signed, for these names.
    SelfSigned(&'static [&'static str]),
}

impl Cert {
    fn server_config(&self) -> Arc<ServerConfig> {
        let key = KeyPair::generate().expect("key");
        let (names, trusted) = match self {
            Cert::Trusted(names) => (names, true),
            Cert::SelfSigned(names) => (names, false),
        };
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        let cert = if trusted {
            params.signed_by(&key, &ca().issuer)
        } else {
            params.self_signed(&key)
        }
        .expect("certificate");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_no_client_auth()
                .with_single_cert(vec![CertificateDer::from(cert.der().to_vec())], key)
                .expect("server config");
        Arc::new(config)
    }
}

/// A receiving relay: `filtermail incoming` and its Postfix stand-in.
pub struct Relay {
    pub sink: Sink,
    pub filtermail: Filtermail,
}

/// Receiving relays on `127.0.<net>.<n>`, the DNS zone, and a transport that uses them.
pub struct Testbed {
    net: u8,
    pub https_port: u16,
    pub smtp_port: u16,
    zone: Arc<Mutex<HashMap<String, Vec<RData>>>>,
    dns_port: u16,
    dir: tempfile::TempDir,
}

impl Testbed {
    /// `net` keeps each test's addresses apart from the others'.
    pub fn new(net: u8) -> Testbed {
        let probe = |_| {
            std::net::TcpListener::bind((Ipv4Addr::new(127, 0, net, 1), 0))
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("free port")
        };
        let (https_port, smtp_port) = (probe(0), probe(1));
        let zone = Arc::new(Mutex::new(HashMap::new()));
        let dns_port = start_dns(zone.clone());
        Testbed {
            net,
            https_port,
            smtp_port,
            zone,
            dns_port,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn ip(&self, n: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, self.net, n)
    }

    /// Starts a receiving relay on `127.0.<net>.<n>` with HTTPS and/or SMTP in front.
    pub fn relay(&self, n: u8, cert: &Cert, https: bool, smtp: bool) -> Relay {
        let sink = Sink::start();
        let filtermail = Filtermail::start(
            "incoming",
            sink.port,
            "",
            &[("FILTERMAIL_SKIP_DKIM", "true")],
        );
        let tls = cert.server_config();
        if https {
            let addr = SocketAddr::from((self.ip(n), self.https_port));
            https_front(addr, tls.clone(), filtermail.http_port);
        }
        if smtp {
            let addr = SocketAddr::from((self.ip(n), self.smtp_port));
            smtp_front(addr, tls, filtermail.smtp_port);
        }
        Relay { sink, filtermail }
    }

    /// Adds a record to the zone.
    pub fn record(&self, name: &str, data: RData) {
        let mut zone = self.zone.lock().expect("zone");
        zone.entry(name.to_owned()).or_default().push(data);
    }

    pub fn mx(&self, domain: &str, preference: u16, host: &str) {
        let exchange = Name::from_ascii(format!("{host}.")).expect("MX host name");
        self.record(domain, RData::MX(MX::new(preference, exchange)));
    }

    pub fn a(&self, host: &str, n: u8) {
        self.record(host, RData::A(A(self.ip(n))));
    }

    /// Starts `filtermail transport`, trusting only the test CA.
    pub fn transport(&self) -> Filtermail {
        let ca_file = self.dir.path().join("ca.pem");
        std::fs::write(&ca_file, &ca().pem).expect("write CA");
        let ca_file = ca_file.display().to_string();
        let dns = format!("127.0.0.1:{}", self.dns_port);
        let (https, smtp) = (self.https_port.to_string(), self.smtp_port.to_string());
        Filtermail::start_with_args(
            "transport",
            0,
            "",
            &[("SSL_CERT_FILE", &ca_file)],
            &[
                "--dns-server",
                &dns,
                "--remote-https-port",
                &https,
                "--remote-smtp-port",
                &smtp,
            ],
        )
    }
}

/// Answers from `zone`: its records of the asked type, no records for a known name, NXDOMAIN
/// for an unknown one. The MX record `0 .` is a null MX.
fn start_dns(zone: Arc<Mutex<HashMap<String, Vec<RData>>>>) -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind dns");
    let port = socket.local_addr().expect("dns addr").port();
    thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            let Ok(request) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let Some(query) = request.queries.first().cloned() else {
                continue;
            };
            let mut response = Message::response(request.metadata.id, request.metadata.op_code);
            response.metadata.authoritative = true;
            response.metadata.recursion_desired = request.metadata.recursion_desired;
            response.add_query(query.clone());
            let name = query.name().to_ascii().trim_end_matches('.').to_lowercase();
            match zone.lock().expect("zone").get(&name) {
                None => response.metadata.response_code = ResponseCode::NXDomain,
                Some(records) => {
                    for data in records {
                        if data.record_type() == query.query_type() {
                            let record = Record::from_rdata(query.name().clone(), 60, data.clone());
                            response.add_answer(record);
                        }
                    }
                }
            }
            if let Ok(bytes) = response.to_vec() {
                let _ = socket.send_to(&bytes, peer);
            }
        }
    });
    port
}

/// Binds `addr` now (so it is listening when this returns) and serves on the test runtime.
fn listen(addr: SocketAddr) -> std::net::TcpListener {
    let listener = std::net::TcpListener::bind(addr).expect("bind front");
    listener.set_nonblocking(true).expect("nonblocking");
    listener
}

/// nginx's part: TLS on `addr`, the plain stream passed to `backend` on 127.0.0.1.
fn https_front(addr: SocketAddr, tls: Arc<ServerConfig>, backend: u16) {
    let listener = listen(addr);
    runtime().spawn(async move {
        let listener = TcpListener::from_std(listener).expect("listener");
        let acceptor = TlsAcceptor::from(tls);
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Ok(mut back) = TcpStream::connect(("127.0.0.1", backend)).await {
                    let _ = back.set_nodelay(true);
                    let _ = copy_bidirectional(&mut tls, &mut back).await;
                }
            });
        }
    });
}

/// Postfix's port 25: STARTTLS on `addr`, then the session continues with `backend`'s
/// SMTP server (its greeting swallowed: the client had ours).
fn smtp_front(addr: SocketAddr, tls: Arc<ServerConfig>, backend: u16) {
    let listener = listen(addr);
    runtime().spawn(async move {
        let listener = TcpListener::from_std(listener).expect("listener");
        let acceptor = TlsAcceptor::from(tls);
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = starttls_session(tcp, acceptor, backend).await;
            });
        }
    });
}

async fn starttls_session(
    tcp: TcpStream,
    acceptor: TlsAcceptor,
    backend: u16,
) -> std::io::Result<()> {
    tcp.set_nodelay(true)?;
    let mut stream = BufStream::new(tcp);
    stream.write_all(b"220 mx.test ESMTP\r\n").await?;
    stream.flush().await?;
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let verb = line.trim().to_ascii_uppercase();
        let reply: &[u8] = if verb.starts_with("EHLO") {
            b"250-mx.test\r\n250-STARTTLS\r\n250 8BITMIME\r\n"
        } else if verb == "STARTTLS" {
            b"220 2.0.0 Ready to start TLS\r\n"
        } else {
            b"530 5.7.0 Must issue a STARTTLS command first\r\n"
        };
        stream.write_all(reply).await?;
        stream.flush().await?;
        if verb == "STARTTLS" {
            break;
        }
    }
    let mut tls = acceptor.accept(stream.into_inner()).await?;
    let mut back = BufReader::new(TcpStream::connect(("127.0.0.1", backend)).await?);
    let mut greeting = String::new();
    back.read_line(&mut greeting).await?;
    let mut back = back.into_inner();
    back.set_nodelay(true)?;
    copy_bidirectional(&mut tls, &mut back).await?;
    Ok(())
}

/// One LMTP transaction as Postfix's `lmtp` client runs it; the replies after the data.
pub fn lmtp(port: u16, from: &str, rcpts: &[&str], message: &str) -> Vec<String> {
    let mut client = lmtp_until_data(port, from, rcpts, message);
    rcpts.iter().map(|_| client.reply()).collect()
}

/// An LMTP transaction up to the end of the data, the replies not read.
pub fn lmtp_until_data(port: u16, from: &str, rcpts: &[&str], message: &str) -> RawClient {
    let (mut client, greeting) = RawClient::connect(port);
    assert!(greeting.starts_with("220 "), "{greeting}");
    let lhlo = client.cmd("LHLO relay.example.org");
    assert!(lhlo.ends_with("250 OK"), "{lhlo}");
    assert_eq!(client.cmd(&format!("MAIL FROM:<{from}>")), "250 OK");
    for rcpt in rcpts {
        assert_eq!(client.cmd(&format!("RCPT TO:<{rcpt}>")), "250 OK");
    }
    assert!(client.cmd("DATA").starts_with("354"));
    // One write, as Postfix's buffered client does (line by line, Nagle's algorithm and
    // delayed ACKs would add waits that no real client causes).
    let mut data = Vec::with_capacity(message.len() + 5);
    for line in message.split_inclusive('\n') {
        if line.starts_with('.') {
            data.push(b'.');
        }
        data.extend_from_slice(line.as_bytes());
    }
    data.extend_from_slice(b".\r\n");
    client.write(&data);
    client
}
