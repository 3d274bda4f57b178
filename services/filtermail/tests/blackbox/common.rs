//! Test harness: the built `filtermail` binary with a temporary chatmail.ini, a Postfix stand-in
//! that records reinjected mail, SMTP clients, and builders for real OpenPGP/MIME messages.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::{SmtpTransport, Transport};
use pgp::composed::{ArmorOptions, MessageBuilder, SignedPublicKey};
use pgp::crypto::sym::SymmetricKeyAlgorithm;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// One message as the Postfix stand-in received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    pub rcpts: Vec<String>,
    pub data: Vec<u8>,
}

/// A Postfix stand-in: accepts SMTP on 127.0.0.1 and records every message.
pub struct Sink {
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Sink {
    pub fn start() -> Sink {
        Sink::start_with_rcpt_reply(None)
    }

    /// A sink that answers every `RCPT` with `reply` (e.g. `"550 5.1.1 <x>: no such user"`).
    pub fn start_with_rcpt_reply(reply: Option<&'static str>) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind sink");
        let port = listener.local_addr().expect("sink addr").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = received.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let store = store.clone();
                thread::spawn(move || {
                    let _ = sink_session(stream, &store, reply);
                });
            }
        });
        Sink { port, received }
    }

    pub fn count(&self) -> usize {
        self.received.lock().map(|r| r.len()).unwrap_or(0)
    }

    /// Waits until `n` messages arrived and returns them.
    pub fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.count() < n && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

fn sink_session(
    stream: TcpStream,
    store: &Mutex<Vec<Received>>,
    rcpt_reply: Option<&str>,
) -> std::io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    writer.write_all(b"220 sink ESMTP\r\n")?;
    let mut current = Received {
        mail_from: String::new(),
        rcpts: Vec::new(),
        data: Vec::new(),
    };
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let upper = line.to_ascii_uppercase();
        let addr = || {
            let start = line.find('<').map_or(0, |i| i + 1);
            let end = line.rfind('>').unwrap_or(line.len());
            line[start..end].to_owned()
        };
        if upper.starts_with("EHLO") {
            writer.write_all(b"250-sink\r\n250 8BITMIME\r\n")?;
        } else if upper.starts_with("MAIL FROM:") {
            current.mail_from = addr();
            writer.write_all(b"250 2.1.0 Ok\r\n")?;
        } else if upper.starts_with("RCPT TO:") {
            match rcpt_reply {
                Some(reply) => writer.write_all(format!("{reply}\r\n").as_bytes())?,
                None => {
                    current.rcpts.push(addr());
                    writer.write_all(b"250 2.1.5 Ok\r\n")?;
                }
            }
        } else if upper.starts_with("DATA") {
            writer.write_all(b"354 go ahead\r\n")?;
            loop {
                let mut data_line = Vec::new();
                if reader.read_until(b'\n', &mut data_line)? == 0 {
                    return Ok(());
                }
                if data_line == b".\r\n" {
                    break;
                }
                let unstuffed = data_line.strip_prefix(b".").unwrap_or(&data_line);
                current.data.extend_from_slice(unstuffed);
            }
            if let Ok(mut store) = store.lock() {
                store.push(current.clone());
            }
            current.data.clear();
            current.rcpts.clear();
            writer.write_all(b"250 2.0.0 Ok: queued as TEST\r\n")?;
        } else if upper.starts_with("QUIT") {
            writer.write_all(b"221 2.0.0 Bye\r\n")?;
            return Ok(());
        } else {
            writer.write_all(b"250 Ok\r\n")?;
        }
    }
}

/// The `filtermail` binary under test, running with its own chatmail.ini.
pub struct Filtermail {
    /// The running process (the benchmark reads its memory use).
    pub child: Child,
    pub smtp_port: u16,
    pub http_port: u16,
    pub mailboxes: PathBuf,
    logs: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Filtermail {
    /// Starts `filtermail <ini> <mode>` reinjecting into `sink_port`, with `extra` ini lines
    /// and `env` variables, and waits for `entering serving loop`.
    pub fn start(mode: &str, sink_port: u16, extra: &str, env: &[(&str, &str)]) -> Filtermail {
        Filtermail::start_with_args(mode, sink_port, extra, env, &[])
    }

    /// [`Filtermail::start`] with extra command-line `args`. In `transport` mode `smtp_port`
    /// is the LMTP port.
    pub fn start_with_args(
        mode: &str,
        sink_port: u16,
        extra: &str,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Filtermail {
        let dir = tempfile::tempdir().expect("tempdir");
        let mailboxes = dir.path().join("mailboxes");
        std::fs::create_dir_all(&mailboxes).expect("mailboxes dir");
        let (smtp_port, http_port) = (free_port(), free_port());
        let listen_key = match mode {
            "outgoing" => "filtermail_smtp_port",
            "transport" => "filtermail_lmtp_port_transport",
            _ => "filtermail_smtp_port_incoming",
        };
        // The transport reinjects nothing; the key keeps its default there.
        let reinject = match mode {
            "outgoing" => format!("postfix_reinject_port = {sink_port}"),
            "transport" => String::new(),
            _ => format!("postfix_reinject_port_incoming = {sink_port}"),
        };
        let ini = format!(
            "[params]\nmail_domain = example.org\nmailboxes_dir = {}\n{listen_key} = {smtp_port}\n\
             filtermail_http_port_incoming = {http_port}\n{reinject}\n{extra}\n",
            mailboxes.display()
        );
        let ini_path = dir.path().join("chatmail.ini");
        std::fs::write(&ini_path, ini).expect("write ini");
        let mut command = Command::new(env!("CARGO_BIN_EXE_filtermail"));
        command
            .arg(&ini_path)
            .arg(mode)
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("FILTERMAIL_SKIP_DKIM")
            .env_remove("FILTERMAIL_DNS_SERVER")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn filtermail");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let log_store = logs.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Stored before the ready signal, so a caller woken by it sees the line.
                if let Ok(mut logs) = log_store.lock() {
                    logs.push_str(&line);
                    logs.push('\n');
                }
                if line.contains("entering serving loop") {
                    let _ = ready_tx.send(());
                }
            }
        });
        let ready = ready_rx.recv_timeout(Duration::from_secs(30));
        let fm = Filtermail {
            child,
            smtp_port,
            http_port,
            mailboxes,
            logs,
            _dir: dir,
        };
        assert!(ready.is_ok(), "filtermail did not start:\n{}", fm.logs());
        fm
    }

    pub fn logs(&self) -> String {
        self.logs.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits briefly for `needle` to show up in the log.
    pub fn wait_log(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.logs().contains(needle) {
                return true;
            }
            thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Creates an account folder; `enforce` adds `enforceE2EEincoming`.
    pub fn create_account(&self, addr: &str, enforce: bool) {
        let dir = self.mailboxes.join(addr);
        std::fs::create_dir_all(&dir).expect("account dir");
        std::fs::write(dir.join("password"), "{SHA512-CRYPT}x").expect("password");
        if enforce {
            std::fs::write(dir.join("enforceE2EEincoming"), "").expect("flag");
        }
    }

    /// A `Vm*` line (`VmRSS`, `VmHWM`, ...) of the process's /proc status, in KB.
    #[allow(dead_code)] // the benchmarks' (this file is shared with them)
    pub fn vm_kb(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc status");
        status
            .lines()
            .find_map(|l| {
                l.strip_prefix(key)?
                    .trim_start_matches(':')
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .expect("Vm line")
    }

    /// Whether the process is still alive.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Filtermail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `raw` with lettre (a real SMTP client); `Err((code, text))` on a refusal.
pub fn send(port: u16, from: &str, rcpts: &[&str], raw: &[u8]) -> Result<(), (u16, String)> {
    let parse = |a: &str| a.parse().map_err(|e| (0, format!("bad address {a}: {e}")));
    let envelope = Envelope::new(
        Some(parse(from)?),
        rcpts.iter().map(|r| parse(r)).collect::<Result<_, _>>()?,
    )
    .map_err(|e| (0, e.to_string()))?;
    let transport = SmtpTransport::builder_dangerous("127.0.0.1")
        .port(port)
        .timeout(Some(Duration::from_secs(60)))
        .build();
    transport
        .send_raw(&envelope, raw)
        .map(|_| ())
        .map_err(|err| {
            let code = err
                .status()
                .and_then(|c| c.to_string().parse().ok())
                .unwrap_or(0);
            (code, err.to_string())
        })
}

/// Asserts that `got` is the message `sent` with lettre, which ends the data with one more CRLF.
pub fn assert_relayed(got: &Received, sent: &str) {
    let got = String::from_utf8_lossy(&got.data);
    assert!(
        got == format!("{sent}\r\n"),
        "relayed message differs:\n{got}\n---\n{sent}"
    );
}

/// A line-level SMTP client for protocol tests.
pub struct RawClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl RawClient {
    /// Connects and returns the greeting.
    pub fn connect(port: u16) -> (RawClient, String) {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let writer = stream.try_clone().expect("clone");
        let mut client = RawClient {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = client.reply();
        (client, greeting)
    }

    /// Reads one reply, all lines joined by `\n`; empty when the server closed the connection.
    pub fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = line.trim_end().to_owned();
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line);
            if !more {
                break;
            }
        }
        lines.join("\n")
    }

    pub fn write(&mut self, bytes: &[u8]) {
        let _ = self.writer.write_all(bytes);
    }

    /// Sends one command line and returns the reply.
    pub fn cmd(&mut self, line: &str) -> String {
        self.write(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// True when the server has closed the connection.
    pub fn is_closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(self.reader.read(&mut buf), Ok(0) | Err(_))
    }
}

/// The recipient key every test message is encrypted to (made as `cmdeploy test` makes its
/// keys).
fn recipient_key() -> &'static SignedPublicKey {
    static KEY: OnceLock<SignedPublicKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let secret = chatmail_probe::message::key("bob@example.org").expect("generate key");
        SignedPublicKey::from(secret)
    })
}

fn crlf(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\n', "\r\n")
}

/// A real OpenPGP message (PKESK + SEIPD) over `size` random bytes, armored, CRLF lines.
pub fn armored_encrypted(size: usize) -> String {
    use rand::RngCore as _;
    let mut rng = rand::thread_rng();
    let mut plain = vec![0u8; size];
    rng.fill_bytes(&mut plain);
    let mut builder =
        MessageBuilder::from_bytes("", plain).seipd_v1(&mut rng, SymmetricKeyAlgorithm::AES128);
    builder
        .encrypt_to_key(&mut rng, &recipient_key().public_subkeys[0])
        .expect("encrypt to key");
    crlf(
        &builder
            .to_armored_string(&mut rng, ArmorOptions::default())
            .expect("armor"),
    )
}

/// An unencrypted OpenPGP message: just a literal data packet, armored.
pub fn armored_literal() -> String {
    let rng = rand::thread_rng();
    crlf(
        &MessageBuilder::from_bytes("", b"Hello, world!".to_vec())
            .to_armored_string(rng, ArmorOptions::default())
            .expect("armor"),
    )
}

/// Header block shared by all test messages.
pub fn headers(from: &str, to: &str, subject: &str) -> String {
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nDate: Tue, 25 Nov 2026 09:00:00 +0000\r\n\
         Message-ID: <{}@example.org>\r\nMIME-Version: 1.0\r\n",
        rand::random::<u64>()
    )
}

/// A multipart message: `parts` are (part headers, body) pairs.
pub fn multipart(head: &str, content_type: &str, parts: &[(&str, &str)]) -> String {
    let boundary = "b0undary-XYZ";
    let mut out = format!("{head}Content-Type: {content_type}; boundary=\"{boundary}\"\r\n\r\n");
    for (part_headers, body) in parts {
        out.push_str(&format!("--{boundary}\r\n{part_headers}\r\n\r\n{body}\r\n"));
    }
    out.push_str(&format!("--{boundary}--\r\n"));
    out
}

/// OpenPGP/MIME around an armored payload.
pub fn encrypted_mime(head: &str, armored: &str) -> String {
    multipart(
        head,
        "multipart/encrypted; protocol=\"application/pgp-encrypted\"",
        &[
            (
                "Content-Type: application/pgp-encrypted\r\nContent-Description: PGP/MIME version identification",
                "Version: 1",
            ),
            (
                "Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\nContent-Disposition: inline; filename=\"encrypted.asc\"",
                armored,
            ),
        ],
    )
}

/// A complete encrypted message from `from` to `to` with `size` bytes of encrypted content.
pub fn encrypted_message(from: &str, to: &str, size: usize) -> String {
    encrypted_mime(&headers(from, to, "[...]"), &armored_encrypted(size))
}

/// A cleartext `text/plain` message.
pub fn plain_message(from: &str, to: &str) -> String {
    format!(
        "{}Content-Type: text/plain; charset=utf-8\r\n\r\nHello, this is cleartext.\r\n",
        headers(from, to, "Hi")
    )
}
