//! Test helpers: a relay folder with chatmail.ini, service processes on real Unix sockets,
//! and a line-based dict client.
// Each test binary uses a different part of these helpers; failing loudly is their job.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const DOMAIN: &str = "chat.example.org";

/// A temporary relay: `chatmail.ini` and `mail/` inside a temporary folder.
pub struct Relay {
    pub dir: tempfile::TempDir,
}

impl Relay {
    /// A relay whose ini holds `mail_domain`, `mailboxes_dir` and the `extra` lines. The
    /// load limit is lifted unless `extra` sets it: tests run beside busy builds.
    pub fn new(extra: &str) -> Relay {
        let dir = tempfile::tempdir().unwrap();
        let load = if extra.contains("max_load_1m") {
            ""
        } else {
            "max_load_1m = 100000\n"
        };
        let text = format!(
            "[params]\nmail_domain = {DOMAIN}\nmailboxes_dir = {}\n{load}{extra}\n",
            dir.path().join("mail").display()
        );
        std::fs::write(dir.path().join("chatmail.ini"), text).unwrap();
        Relay { dir }
    }

    pub fn ini(&self) -> PathBuf {
        self.dir.path().join("chatmail.ini")
    }

    pub fn mail(&self) -> PathBuf {
        self.dir.path().join("mail")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn mailbox(&self, addr: &str) -> PathBuf {
        self.mail().join(addr)
    }

    /// Starts `bin` with `args` and waits for `socket` to accept connections.
    pub fn start(&self, bin: &str, args: &[&str], socket: &Path) -> Service {
        let stderr = self.path(&format!(
            "{}.stderr",
            Path::new(bin).file_name().unwrap().to_string_lossy()
        ));
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let service = Service {
            child,
            stderr,
            socket: socket.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "{bin} did not listen on {}",
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        service
    }

    /// A service that is `<bin> <socket> <ini> [extra args]`.
    pub fn start_dict(&self, bin: &str, extra: &[&str]) -> Service {
        let socket = self.path(&format!(
            "{}.socket",
            Path::new(bin).file_name().unwrap().to_string_lossy()
        ));
        let ini = self.ini();
        let mut args = vec![socket.to_str().unwrap(), ini.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.start(bin, &args, &socket)
    }
}

/// A running service process, killed when dropped.
pub struct Service {
    pub child: Child,
    pub stderr: PathBuf,
    pub socket: PathBuf,
}

impl Service {
    pub fn client(&self) -> Client {
        Client::connect(&self.socket)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap()
    }

    /// Asserts the process is still running.
    pub fn assert_alive(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "service exited: {}",
            self.stderr()
        );
    }

    pub fn stop(mut self) -> String {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.stderr()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One dict connection speaking raw protocol lines.
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    pub fn connect(socket: &Path) -> Client {
        let stream = UnixStream::connect(socket).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Client {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    /// Sends raw bytes (lines must carry their own `\n`).
    pub fn send(&mut self, raw: &[u8]) {
        self.writer.write_all(raw).unwrap();
    }

    /// Sends `line` plus `\n`.
    pub fn line(&mut self, line: &str) {
        self.send(format!("{line}\n").as_bytes());
    }

    /// Reads one reply line including its `\n`.
    pub fn read_line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        line
    }

    /// Sends `line` and reads one reply line.
    pub fn ask(&mut self, line: &str) -> String {
        self.line(line);
        self.read_line()
    }

    /// Asserts nothing arrives within `wait`.
    pub fn assert_silent(&mut self, wait: Duration) {
        self.reader.get_ref().set_read_timeout(Some(wait)).unwrap();
        let mut buf = [0u8; 64];
        match self.reader.read(&mut buf) {
            Err(err) => assert!(
                matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "{err}"
            ),
            Ok(n) => panic!("unexpected reply {:?}", String::from_utf8_lossy(&buf[..n])),
        }
        self.reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
    }

    /// Reads until the server closes (or resets) the connection; returns what came before.
    pub fn read_to_end(&mut self) -> String {
        let mut rest = Vec::new();
        if let Err(err) = self.reader.read_to_end(&mut rest) {
            assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
        }
        String::from_utf8(rest).unwrap()
    }
}

/// Dovecot's `%E` escaping: backslash before `"`, `'` and `\`.
pub fn dovecot_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if matches!(c, '"' | '\'' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The passdb lookup line Dovecot sends for `user` logging in with `password`.
pub fn passdb_line(user: &str, password: &str) -> String {
    format!(
        "Lshared/passdb/{}\"{}\t{user}",
        dovecot_escape(password),
        dovecot_escape(user)
    )
}

/// Sets the mtime and atime of the file at `path` to `ts`.
pub fn set_mtime(path: &Path, ts: i64) {
    let time = std::time::UNIX_EPOCH + Duration::from_secs(ts as u64);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_times(
            std::fs::FileTimes::new()
                .set_accessed(time)
                .set_modified(time),
        )
        .unwrap();
}

pub fn mtime(path: &Path) -> i64 {
    std::fs::metadata(path)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Polls `done` until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A port on 127.0.0.1 where nothing listens (until someone binds it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A stand-in for the push service on 127.0.0.1: records each POST body and answers with
/// the queued statuses, then 200.
pub struct PushServer {
    pub url: String,
    port: u16,
    bodies: Arc<Mutex<Vec<String>>>,
    statuses: Arc<Mutex<VecDeque<u16>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PushServer {
    pub fn start() -> PushServer {
        Self::start_on(0)
    }

    pub fn start_on(port: u16) -> PushServer {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let statuses = Arc::new(Mutex::new(VecDeque::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (bodies, statuses, stop) = (bodies.clone(), statuses.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    serve_one(conn, &bodies, &statuses);
                }
            })
        };
        PushServer {
            url: format!("http://127.0.0.1:{port}/notify"),
            port,
            bodies,
            statuses,
            stop,
            thread: Some(thread),
        }
    }

    /// Answers the next requests with `statuses`, in order.
    pub fn respond_with(&self, statuses: &[u16]) {
        self.statuses.lock().unwrap().extend(statuses);
    }

    /// The bodies received so far.
    pub fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }

    /// Waits until `n` bodies arrived, then returns them.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<String> {
        assert!(
            wait_until(timeout, || self.bodies().len() >= n),
            "expected {n} notifications, got {:?}",
            self.bodies()
        );
        self.bodies()
    }
}

impl Drop for PushServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_one(
    mut conn: std::net::TcpStream,
    bodies: &Mutex<Vec<String>>,
    statuses: &Mutex<VecDeque<u16>>,
) {
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() || request_line.is_empty() {
        return;
    }
    assert!(
        request_line.starts_with("POST /notify "),
        "{request_line:?}"
    );
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).unwrap();
        if header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    bodies
        .lock()
        .unwrap()
        .push(String::from_utf8(body).unwrap());
    let status = statuses.lock().unwrap().pop_front().unwrap_or(200);
    let reply = format!("HTTP/1.1 {status} Test\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    let _ = conn.write_all(reply.as_bytes());
}
