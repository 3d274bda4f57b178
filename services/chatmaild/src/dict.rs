//! A Dovecot dict-proxy protocol server (protocol 3.x) on a Unix stream socket.
//!
//! Each connection is served by its own task; transactions live per connection (Dovecot
//! reuses id `1` on different connections). Replies: `O<value>`/`N`/`F` for lookups,
//! `O<key>\t<value>` lines ended by an empty line for iterations, `O`/`F` for commits,
//! nothing for hello, begin, set, rollback and the commands chatmail does not use.
//! A line that cannot be understood is answered where an answer is due, otherwise logged
//! and ignored; a line longer than [`MAX_LINE`] drops that client. An empty line or EOF ends
//! the connection.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// The longest request line accepted, in bytes.
pub const MAX_LINE: usize = 64 * 1024;

/// The answer to a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(String),
    NotFound,
    Failed,
}

/// One `S` line of a transaction: the key and the value (absent for value-less sets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    pub key: String,
    pub value: Option<String>,
}

/// A committed transaction: the user named at `B` and its sets in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transaction {
    pub user: String,
    pub sets: Vec<Set>,
}

/// What a service answers. Calls may come from many connections at once.
pub trait Handler: Send + Sync + 'static {
    /// `L<key>\t<user>`.
    fn lookup(&self, key: &str, user: &str) -> impl Future<Output = Lookup> + Send;
    /// `I<flags>\t<max_rows>\t<path>\t<user>`: the `(key, value)` rows.
    fn iterate(&self, path: &str, user: &str)
    -> impl Future<Output = Vec<(String, String)>> + Send;
    /// `C<id>`: applies the transaction; `true` replies `O`, `false` replies `F`.
    fn commit(&self, tx: Transaction) -> impl Future<Output = bool> + Send;
}

/// Removes a stale socket file at `path`, then binds a listener there.
pub fn bind(path: &Path) -> Result<UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("removing stale {}", path.display())),
    }
    UnixListener::bind(path).with_context(|| format!("binding dict socket {}", path.display()))
}

/// Accepts connections forever, serving each on its own task.
pub async fn serve<H: Handler>(listener: UnixListener, handler: Arc<H>) -> Result<()> {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                // Running out of file descriptors must not end the service.
                eprintln!("warning: accepting a dict connection failed: {err}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let handler = Arc::clone(&handler);
        tokio::spawn(async move {
            if let Err(err) = connection(&*handler, stream).await {
                eprintln!("warning: dict connection ended: {err:#}");
            }
        });
    }
}

/// Binds `socket` and serves `handler` on a runtime with one worker per core, until SIGTERM
/// or SIGINT; then returns at once, not waiting for open connections.
pub fn run_service<H: Handler>(socket: &Path, handler: H) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(64)
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(async {
        let mut stop = chatmail_shutdown::Stop::install().context("handling SIGTERM")?;
        let listener = bind(socket)?;
        tokio::select! {
            result = serve(listener, Arc::new(handler)) => result,
            () = stop.requested() => Ok(()),
        }
    });
    // A blocking lookup still running must not hold the exit up.
    runtime.shutdown_background();
    result
}

struct OpenTx {
    tx: Transaction,
    /// A set line could not be read; the commit fails.
    broken: bool,
}

async fn connection<H: Handler>(handler: &H, mut stream: UnixStream) -> Result<()> {
    let (read, mut write) = stream.split();
    let mut reader = BufReader::with_capacity(2048, read);
    let mut line = Vec::with_capacity(256);
    let mut out = Vec::with_capacity(256);
    let mut txs: HashMap<String, OpenTx> = HashMap::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .await
            .context("reading from dict client")?;
        if n == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        } else if line.len() > MAX_LINE {
            anyhow::bail!("request line longer than {MAX_LINE} bytes, dropping client");
        }
        if line.is_empty() {
            break;
        }
        request(handler, &line, &mut txs, &mut out).await;
        // Reply in one write once every pipelined request has been answered.
        if reader.buffer().is_empty() && !out.is_empty() {
            write
                .write_all(&out)
                .await
                .context("writing to dict client")?;
            out.clear();
        }
    }
    if !out.is_empty() {
        write
            .write_all(&out)
            .await
            .context("writing to dict client")?;
    }
    Ok(())
}

async fn request<H: Handler>(
    handler: &H,
    line: &[u8],
    txs: &mut HashMap<String, OpenTx>,
    out: &mut Vec<u8>,
) {
    let (cmd, rest) = (line[0], &line[1..]);
    let args: Option<Vec<String>> = std::str::from_utf8(rest)
        .ok()
        .map(|rest| rest.split('\t').map(unescape).collect());
    let arg = |i: usize| args.as_ref().and_then(|a| a.get(i)).map(String::as_str);
    match cmd {
        b'H' => {}
        b'L' => {
            let reply = match arg(0) {
                Some(key) => handler.lookup(key, arg(1).unwrap_or("")).await,
                None => Lookup::Failed,
            };
            match reply {
                Lookup::Found(value) => {
                    out.push(b'O');
                    out.extend_from_slice(escape(&value).as_bytes());
                }
                Lookup::NotFound => out.push(b'N'),
                Lookup::Failed => out.push(b'F'),
            }
            out.push(b'\n');
        }
        b'I' => {
            if let Some(path) = arg(2) {
                let max_rows = arg(1).and_then(|m| m.parse::<usize>().ok()).unwrap_or(0);
                let rows = handler.iterate(path, arg(3).unwrap_or("")).await;
                let limit = if max_rows == 0 { usize::MAX } else { max_rows };
                for (key, value) in rows.into_iter().take(limit) {
                    out.extend_from_slice(
                        format!("O{}\t{}\n", escape(&key), escape(&value)).as_bytes(),
                    );
                }
            }
            out.push(b'\n');
        }
        b'B' => match arg(0) {
            Some(id) => {
                let tx = Transaction {
                    user: arg(1).unwrap_or("").to_owned(),
                    sets: Vec::new(),
                };
                txs.insert(id.to_owned(), OpenTx { tx, broken: false });
            }
            None => eprintln!("warning: dict begin without a readable id"),
        },
        b'S' => {
            // A set we cannot read still belongs to its transaction: fail that commit.
            let id = String::from_utf8_lossy(rest.split(|b| *b == b'\t').next().unwrap_or(b""))
                .into_owned();
            match (txs.get_mut(&id), arg(1)) {
                (Some(open), Some(key)) => open.tx.sets.push(Set {
                    key: key.to_owned(),
                    value: arg(2).map(str::to_owned),
                }),
                (Some(open), None) => open.broken = true,
                (None, _) => eprintln!("warning: dict set in unknown transaction {id:?}"),
            }
        }
        b'C' => {
            let ok = match arg(0).and_then(|id| txs.remove(id)) {
                Some(OpenTx { broken: true, .. }) => false,
                Some(OpenTx { tx, broken: false }) => handler.commit(tx).await,
                None => false,
            };
            out.extend_from_slice(if ok { b"O\n" } else { b"F\n" });
        }
        b'R' => {
            if let Some(id) = arg(0) {
                txs.remove(id);
            }
        }
        other => {
            let shown = String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned();
            eprintln!(
                "warning: ignoring unsupported dict command {:?}: {shown:?}",
                char::from(other)
            );
        }
    }
}

/// Undoes Dovecot's tab-escaping: `\x01` followed by `0`, `1`, `t`, `r` or `n`.
pub fn unescape(arg: &str) -> String {
    if !arg.contains('\u{1}') {
        return arg.to_owned();
    }
    let mut out = String::with_capacity(arg.len());
    let mut chars = arg.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1}' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('0') => out.push('\0'),
            Some('1') => out.push('\u{1}'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Dovecot's tab-escaping of a reply field (the inverse of [`unescape`]).
pub fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\0', '\u{1}', '\t', '\r', '\n']) {
        return value.into();
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\0' => out.push_str("\u{1}0"),
            '\u{1}' => out.push_str("\u{1}1"),
            '\t' => out.push_str("\u{1}t"),
            '\r' => out.push_str("\u{1}r"),
            '\n' => out.push_str("\u{1}n"),
            c => out.push(c),
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_round_trips() {
        let raw = "a\tb\nc\rd\u{1}e\0f";
        let escaped = escape(raw);
        assert!(!escaped.contains(['\t', '\n', '\r', '\0']));
        assert_eq!(unescape(&escaped), raw);
        assert_eq!(escape("plain"), "plain");
        assert_eq!(unescape("plain"), "plain");
    }
}
