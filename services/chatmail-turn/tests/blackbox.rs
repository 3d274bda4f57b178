//! The `chatmail-turn` binary from outside: STUN binding over UDP, the credentials socket,
//! and TURN allocations accepted with those credentials and refused with wrong ones.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;

/// A running `chatmail-turn` on 127.0.0.1, stopped when dropped.
struct Turn {
    child: Child,
    port: u16,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Turn {
    fn start(extra: &[&str]) -> Turn {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("turn.socket");
        let port = free_udp_port();
        let child = Command::new(env!("CARGO_BIN_EXE_chatmail-turn"))
            .args(["--realm", "chat.example.org", "--listen", "127.0.0.1"])
            .args(["--port", &port.to_string()])
            .arg("--socket")
            .arg(&socket)
            .args(extra)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "the credentials socket never appeared"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Turn {
            child,
            port,
            socket,
            _dir: dir,
        }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn credentials(&self) -> (String, String) {
        let mut line = String::new();
        UnixStream::connect(&self.socket)
            .unwrap()
            .read_to_string(&mut line)
            .unwrap();
        let line = line
            .strip_suffix('\n')
            .expect("one line ending in a newline");
        let (username, password) = line.split_once(':').expect("username:password");
        (username.to_owned(), password.to_owned())
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const MAGIC_COOKIE: u32 = 0x2112_a442;

/// Sends a STUN binding request and returns the XOR-MAPPED-ADDRESS of the response.
fn stun_binding(client: &UdpSocket, server: SocketAddr) -> SocketAddr {
    let transaction: [u8; 12] = *b"cmdeploytest";
    let mut request = Vec::new();
    request.extend_from_slice(&0x0001u16.to_be_bytes()); // Binding request
    request.extend_from_slice(&0u16.to_be_bytes()); // no attributes
    request.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    request.extend_from_slice(&transaction);
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.send_to(&request, server).unwrap();
    let mut buf = [0u8; 1500];
    let (len, from) = client.recv_from(&mut buf).unwrap();
    assert_eq!(from, server);
    let response = &buf[..len];
    assert_eq!(
        &response[0..2],
        &0x0101u16.to_be_bytes(),
        "a binding success"
    );
    assert_eq!(&response[8..20], &transaction);
    let mut rest = &response[20..];
    while rest.len() >= 4 {
        let kind = u16::from_be_bytes([rest[0], rest[1]]);
        let length = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let value = &rest[4..4 + length];
        if kind == 0x0020 {
            assert_eq!(value[1], 0x01, "an IPv4 address");
            let port = u16::from_be_bytes([value[2], value[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
            let ip = u32::from_be_bytes([value[4], value[5], value[6], value[7]]) ^ MAGIC_COOKIE;
            return SocketAddr::from((ip.to_be_bytes(), port));
        }
        rest = &rest[4 + length.next_multiple_of(4)..];
    }
    panic!("no XOR-MAPPED-ADDRESS in the response");
}

#[test]
fn a_stun_binding_request_gets_the_mapped_address() {
    let turn = Turn::start(&[]);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    assert_eq!(
        stun_binding(&client, turn.addr()),
        client.local_addr().unwrap()
    );
}

fn hmac_sha1_base64(key: &str, message: &str) -> String {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn the_socket_answers_five_day_credentials_made_with_the_upstream_secret() {
    let turn = Turn::start(&[]);
    let (username, password) = turn.credentials();
    let expiry: u64 = username.parse().expect("a unix time");
    let five_days = 5 * 24 * 60 * 60;
    assert!((now() + five_days - 5..=now() + five_days).contains(&expiry));
    assert_eq!(password, hmac_sha1_base64("north", &username));
    // Every connection gets a line of its own.
    assert!(turn.credentials().0.parse::<u64>().is_ok());
}

#[test]
fn a_secret_file_replaces_the_upstream_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let turn = Turn::start(&["--secret-file", secret.to_str().unwrap()]);
    let (username, password) = turn.credentials();
    assert_eq!(password, hmac_sha1_base64("s3cret", &username));
}

#[test]
fn an_empty_or_missing_secret_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    for (file, message) in [
        (empty.clone(), "is empty"),
        (
            Path::new("/nonexistent/secret").to_owned(),
            "reading the secret file",
        ),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_chatmail-turn"))
            .args(["--listen", "127.0.0.1", "--socket"])
            .arg(dir.path().join("turn.socket"))
            .arg("--secret-file")
            .arg(&file)
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{stderr}");
    }
}

/// Asks for a relayed address with `username` and `password`.
async fn allocate(
    server: SocketAddr,
    username: &str,
    password: &str,
) -> Result<SocketAddr, turn::Error> {
    use webrtc_util::Conn as _;
    let conn = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let client = turn::client::Client::new(turn::client::ClientConfig {
        stun_serv_addr: server.to_string(),
        turn_serv_addr: server.to_string(),
        username: username.to_owned(),
        password: password.to_owned(),
        realm: "chat.example.org".to_owned(),
        software: String::new(),
        rto_in_ms: 0,
        conn: Arc::new(conn),
        vnet: None,
    })
    .await?;
    client.listen().await?;
    let relayed = client.allocate().await;
    let result = match relayed {
        Ok(relay) => relay.local_addr().map_err(Into::into),
        Err(err) => Err(err),
    };
    client.close().await?;
    result
}

#[tokio::test]
async fn socket_credentials_allocate_a_relay_and_wrong_ones_do_not() {
    let turn = Turn::start(&[]);
    let (username, password) = turn.credentials();
    let relayed = allocate(turn.addr(), &username, &password).await.unwrap();
    assert_eq!(
        relayed.ip(),
        turn.addr().ip(),
        "relayed from its own address"
    );
    assert_ne!(relayed.port(), turn.port);

    let refused = allocate(turn.addr(), &username, "wrong").await;
    assert!(refused.is_err(), "a wrong password allocates nothing");
    let expired = (now() - 60).to_string();
    let refused = allocate(turn.addr(), &expired, &hmac_sha1_base64("north", &expired)).await;
    assert!(refused.is_err(), "an expired username allocates nothing");
}
