//! `cmdeploy probe ADDRESS`: the health checks of the relay's containers, which leave no line
//! in the daemons' logs at each probe.
//!
//! - `tcp:HOST:PORT`: a connection is accepted.
//! - `unix:PATH`: a connection is accepted; what the server sends at once is read before
//!   closing (chatmail-turn answers every connection and would log a broken pipe).
//! - `dict:PATH`: a Dovecot dict server answers a lookup (`priv/probe/devicetoken` for no
//!   user, which every chatmaild dict refuses or misses without logging).
//! - `smtp:HOST:PORT`, `imap:HOST:PORT`: the `220` banner (then `QUIT`) or the `* OK` greeting
//!   (then `LOGOUT`). Postfix and Dovecot log every connection, so the greeting is read at most
//!   once per [`GREETING_EVERY`] for an address; in between the probe only checks that the
//!   port is listening (`/proc/net/tcp`, `/proc/net/tcp6`), which logs nothing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};

/// How long any probe waits for a connection or an answer.
const TIMEOUT: Duration = Duration::from_secs(2);
/// How often a greeting is read for real; listening is enough in between.
pub const GREETING_EVERY: Duration = Duration::from_secs(600);
/// Where the time of the last good greeting per address is kept (in the container's own
/// layer, so a new container reads the greeting first).
const STAMPS: &str = "/run/cmdeploy-probe";

/// Runs the probe `address`; an error says what failed.
pub fn run(address: &str) -> Result<()> {
    let (kind, rest) = address
        .split_once(':')
        .with_context(|| format!("{address:?}: expected KIND:WHERE"))?;
    match kind {
        "tcp" => tcp(rest).map(drop),
        "unix" => unix(Path::new(rest)),
        "dict" => dict(Path::new(rest)),
        "smtp" => greeting(address, rest, "220 ", "QUIT\r\n", Path::new(STAMPS)),
        "imap" => greeting(address, rest, "* OK", "a LOGOUT\r\n", Path::new(STAMPS)),
        _ => bail!("{address:?}: expected tcp:, unix:, dict:, smtp: or imap:"),
    }
}

fn tcp(host_port: &str) -> Result<TcpStream> {
    let addresses = host_port
        .to_socket_addrs()
        .with_context(|| format!("{host_port:?} is not HOST:PORT"))?;
    let mut last = None;
    for socket in addresses {
        match TcpStream::connect_timeout(&socket, TIMEOUT) {
            Ok(stream) => {
                stream.set_read_timeout(Some(TIMEOUT))?;
                stream.set_write_timeout(Some(TIMEOUT))?;
                return Ok(stream);
            }
            Err(err) => last = Some(err),
        }
    }
    Err(last.map_or_else(|| anyhow::anyhow!("no address"), Into::into))
        .with_context(|| format!("connecting to {host_port}"))
}

fn unix(path: &Path) -> Result<()> {
    let mut stream =
        UnixStream::connect(path).with_context(|| format!("connecting to {}", path.display()))?;
    // A server that speaks first has its answer read; one that waits is left after a moment.
    stream.set_read_timeout(Some(Duration::from_millis(300)))?;
    let mut sink = Vec::new();
    let _ = stream.read_to_end(&mut sink);
    Ok(())
}

fn dict(path: &Path) -> Result<()> {
    let stream =
        UnixStream::connect(path).with_context(|| format!("connecting to {}", path.display()))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    (&stream)
        .write_all(b"H3\t2\t0\t\tprobe\nLpriv/probe/devicetoken\t\n")
        .with_context(|| format!("writing to {}", path.display()))?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .with_context(|| format!("reading from {}", path.display()))?;
    match line.bytes().next() {
        Some(b'O' | b'N' | b'F') => Ok(()),
        _ => bail!("{}: no dict answer ({line:?})", path.display()),
    }
}

/// The greeting check of `address` (`host_port` of it), or only a listening check while the
/// last good greeting is recent.
fn greeting(address: &str, host_port: &str, expect: &str, bye: &str, stamps: &Path) -> Result<()> {
    let stamp = stamps.join(address.replace(['/', ':'], "_"));
    let recent = std::fs::metadata(&stamp)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age < GREETING_EVERY);
    if recent {
        let port = host_port
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse().ok())
            .with_context(|| format!("{host_port:?} is not HOST:PORT"))?;
        if listening(port)? {
            return Ok(());
        }
        let _ = std::fs::remove_file(&stamp);
        bail!("nothing listens on port {port}");
    }
    let stream = tcp(host_port)?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .with_context(|| format!("reading the greeting of {host_port}"))?;
    if !line.starts_with(expect) {
        bail!(
            "{host_port} greeted with {:?}, not {expect:?}",
            line.trim_end()
        );
    }
    (&stream).write_all(bye.as_bytes())?;
    let mut rest = Vec::new();
    let _ = (&stream).read_to_end(&mut rest);
    std::fs::create_dir_all(stamps).with_context(|| format!("creating {}", stamps.display()))?;
    std::fs::write(&stamp, b"").with_context(|| format!("writing {}", stamp.display()))?;
    Ok(())
}

/// Whether a TCP socket of this network namespace listens on `port`.
fn listening(port: u16) -> Result<bool> {
    let mut found = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = match std::fs::read_to_string(table) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err).with_context(|| format!("reading {table}")),
        };
        found |= listens_in(&text, port);
    }
    Ok(found)
}

/// Whether a `/proc/net/tcp` table has a socket in state LISTEN (`0A`) on `port`.
fn listens_in(table: &str, port: u16) -> bool {
    let port = format!(":{port:04X}");
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(3) == Some(&"0A") && fields.get(1).is_some_and(|local| local.ends_with(&port))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test fails by panicking

    use super::*;
    use std::net::TcpListener;
    use std::os::unix::net::UnixListener;

    #[test]
    fn tcp_and_unix_probes_tell_open_from_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        run(&format!("tcp:127.0.0.1:{port}")).unwrap();
        drop(listener);
        assert!(run(&format!("tcp:127.0.0.1:{port}")).is_err());
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s.socket");
        assert!(run(&format!("unix:{}", socket.display())).is_err());
        let listener = UnixListener::bind(&socket).unwrap();
        // A server that answers at once has its answer read before the probe closes.
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.write_all(b"user:pass\n")
        });
        run(&format!("unix:{}", socket.display())).unwrap();
        server.join().unwrap().unwrap();
        assert!(run("udp:1").is_err());
    }

    #[test]
    fn dict_probe_wants_an_answer_to_its_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("dict.socket");
        let listener = UnixListener::bind(&socket).unwrap();
        let server = std::thread::spawn(move || {
            for answer in [&b"N\n"[..], b"\n"] {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(&stream);
                let (mut hello, mut lookup) = (String::new(), String::new());
                reader.read_line(&mut hello).unwrap();
                reader.read_line(&mut lookup).unwrap();
                assert!(hello.starts_with("H3\t"), "{hello:?}");
                assert!(lookup.starts_with("Lpriv/probe/devicetoken"), "{lookup:?}");
                (&stream).write_all(answer).unwrap();
            }
        });
        let address = format!("dict:{}", socket.display());
        run(&address).unwrap();
        assert!(run(&address).is_err(), "an empty line is no answer");
        server.join().unwrap();
    }

    #[test]
    fn greeting_is_read_then_only_listening_is_checked_until_it_is_old() {
        let dir = tempfile::tempdir().unwrap();
        let stamps = dir.path().join("stamps");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let host_port = format!("127.0.0.1:{port}");
        let address = format!("smtp:{host_port}");
        let greet = |banner: &'static [u8]| {
            let (stream, _) = listener.accept().unwrap();
            (&stream).write_all(banner).unwrap();
            let mut quit = String::new();
            let _ = BufReader::new(&stream).read_line(&mut quit);
            quit
        };
        let probe = || greeting(&address, &host_port, "220 ", "QUIT\r\n", &stamps);
        // A wrong banner fails and leaves no stamp.
        std::thread::scope(|s| {
            let server = s.spawn(|| greet(b"554 go away\r\n"));
            assert!(probe().is_err());
            assert_eq!(server.join().unwrap(), "", "no QUIT after a wrong banner");
        });
        // A good one passes; then the probe connects no more (nobody accepts) while the
        // port listens.
        std::thread::scope(|s| {
            let server = s.spawn(|| greet(b"220 relay ESMTP\r\n"));
            probe().unwrap();
            assert_eq!(server.join().unwrap(), "QUIT\r\n");
        });
        probe().unwrap();
        probe().unwrap();
        // When the port stops listening, the probe fails and reads the greeting next time.
        drop(listener);
        assert!(probe().is_err());
        assert!(probe().is_err());
    }

    #[test]
    fn listening_sockets_are_found_in_proc_tables() {
        let table = "  sl  local_address rem_address   st\n\
                     0: 0100007F:0019 00000000:0000 0A 00000000\n\
                     1: 0100007F:01BB 0100007F:D2F0 01 00000000\n";
        assert!(listens_in(table, 25));
        assert!(!listens_in(table, 443), "established, not listening");
        assert!(!listens_in(table, 143));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(listening(port).unwrap());
    }
}
