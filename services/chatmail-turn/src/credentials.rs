//! Time-limited TURN credentials (the TURN REST / coturn `use-auth-secret` scheme) and the
//! Unix socket that gives one `<username>:<password>\n` line to every connection.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;

/// How long a credential stays valid.
pub const VALIDITY: Duration = Duration::from_secs(5 * 24 * 60 * 60);

/// The shared secret of upstream's chatmail-turn, used when no secret file is given.
pub const DEFAULT_SECRET: &str = "north";

/// Reads the shared secret from `path` (surrounding whitespace ignored), or the default.
pub fn secret(path: Option<&Path>) -> Result<String> {
    let Some(path) = path else {
        return Ok(DEFAULT_SECRET.to_owned());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the secret file {}", path.display()))?;
    let secret = text.trim();
    anyhow::ensure!(
        !secret.is_empty(),
        "the secret file {} is empty",
        path.display()
    );
    Ok(secret.to_owned())
}

/// One credential line: username = expiry as unix seconds, password = its HMAC under `secret`.
pub fn line(secret: &str) -> Result<String> {
    let (username, password) = turn::auth::generate_long_term_credentials(secret, VALIDITY)
        .context("making TURN credentials")?;
    Ok(format!("{username}:{password}\n"))
}

/// Serves credentials on the Unix socket at `path` (replacing a stale socket file) forever.
pub async fn serve(path: PathBuf, secret: String) -> Result<()> {
    match std::fs::remove_file(&path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            return Err(err).with_context(|| format!("removing the old socket {}", path.display()));
        }
        _ => {}
    }
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("listening on the socket {}", path.display()))?;
    log::info!("credentials on {}", path.display());
    loop {
        let (mut stream, _) = listener
            .accept()
            .await
            .with_context(|| format!("accepting on {}", path.display()))?;
        let reply = line(&secret)?;
        tokio::spawn(async move {
            if let Err(err) = stream.write_all(reply.as_bytes()).await {
                log::warn!("sending credentials: {err}");
            }
        });
    }
}
