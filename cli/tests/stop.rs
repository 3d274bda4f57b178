//! Every long-running program of the relay stops on SIGTERM (systemd, `docker stop`) and on
//! SIGINT (Ctrl-C) with exit status 0, without waiting for its clients: the real programs,
//! started as their units start them, each signalled once it serves. A program that ignored
//! the signal would run into the wait's limit (far longer than a clean stop takes, far
//! shorter than the 10 s after which engines kill).

#![allow(clippy::unwrap_used)] // a test fails by panicking

mod support;

use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use support::build_relay_programs;

/// How long a program may take to stop before the test calls it stuck.
const LIMIT: Duration = Duration::from_secs(5);

/// How to tell that a program serves.
enum Ready {
    Unix(PathBuf),
    Tcp(u16),
}

impl Ready {
    fn reached(&self) -> bool {
        match self {
            Ready::Unix(path) => UnixStream::connect(path).is_ok(),
            Ready::Tcp(port) => TcpStream::connect(("127.0.0.1", *port)).is_ok(),
        }
    }
}

/// A program built beside cmdeploy.
fn program(name: &str) -> Command {
    build_relay_programs();
    let dir = Path::new(env!("CARGO_BIN_EXE_cmdeploy")).parent().unwrap();
    Command::new(dir.join(name))
}

/// A TCP port free on loopback right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `command`, waits until it serves (with a client connected, which must not hold the
/// stop up), sends `signal`, and checks it exits 0 within [`LIMIT`].
fn stops_cleanly(mut command: Command, ready: &Ready, signal: &str) {
    let mut child: Child = command.spawn().unwrap();
    let started = Instant::now();
    while !ready.reached() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{command:?} ended before serving: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{command:?} never served"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _client: Box<dyn std::any::Any> = match ready {
        Ready::Unix(path) => Box::new(UnixStream::connect(path).unwrap()),
        Ready::Tcp(port) => Box::new(TcpStream::connect(("127.0.0.1", *port)).unwrap()),
    };
    let kill = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let sent = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{command:?} after SIG{signal}: {status}");
            return;
        }
        if sent.elapsed() > LIMIT {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{command:?} still ran {LIMIT:?} after SIG{signal}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A relay settings file and its mailboxes directory, with filtermail on free ports.
fn relay() -> (tempfile::TempDir, PathBuf, [u16; 3]) {
    let dir = tempfile::tempdir().unwrap();
    let mailboxes = dir.path().join("mail");
    std::fs::create_dir(&mailboxes).unwrap();
    let ports = [free_port(), free_port(), free_port()];
    let ini = dir.path().join("chatmail.ini");
    let text = format!(
        "[params]\nmail_domain = example.org\nmailboxes_dir = {}\n\
         filtermail_smtp_port = {}\nfiltermail_smtp_port_incoming = {}\n\
         filtermail_http_port_incoming = {}\n",
        mailboxes.display(),
        ports[0],
        ports[1],
        ports[2]
    );
    std::fs::write(&ini, text).unwrap();
    (dir, ini, ports)
}

fn dict_service(name: &str, signal: &str) {
    let (dir, ini, _) = relay();
    let socket = dir.path().join(format!("{name}.socket"));
    let mut command = program(name);
    command.arg(&socket).arg(&ini);
    stops_cleanly(command, &Ready::Unix(socket), signal);
}

#[test]
fn doveauth_stops_on_sigterm_and_sigint() {
    dict_service("doveauth", "TERM");
    dict_service("doveauth", "INT");
}

#[test]
fn lastlogin_stops_on_sigterm_and_sigint() {
    dict_service("lastlogin", "TERM");
    dict_service("lastlogin", "INT");
}

#[test]
fn chatmail_metadata_stops_on_sigterm_and_sigint() {
    dict_service("chatmail-metadata", "TERM");
    dict_service("chatmail-metadata", "INT");
}

#[test]
fn filtermail_stops_on_sigterm_and_sigint_in_each_mode() {
    for signal in ["TERM", "INT"] {
        let (_dir, ini, [outgoing, incoming, _]) = relay();
        let mut command = program("filtermail");
        command.arg(&ini).arg("outgoing");
        stops_cleanly(command, &Ready::Tcp(outgoing), signal);
        let mut command = program("filtermail");
        command.arg(&ini).arg("incoming").arg("--skip-dkim");
        stops_cleanly(command, &Ready::Tcp(incoming), signal);
    }
}

#[test]
fn chatmail_turn_stops_on_sigterm_and_sigint() {
    for signal in ["TERM", "INT"] {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("turn.socket");
        let mut command = program("chatmail-turn");
        command
            .args(["--listen", "127.0.0.1", "--port"])
            .arg(free_port().to_string())
            .arg("--socket")
            .arg(&socket);
        stops_cleanly(command, &Ready::Unix(socket), signal);
    }
}
