//! Hands accepted mail back to Postfix's reinjection `smtpd`, one connection per message.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::client::Client;
use crate::smtp::Reply;

/// How long connecting to Postfix may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(300);

/// Sends messages to one Postfix `smtpd`.
#[derive(Debug, Clone)]
pub struct Reinjector {
    addr: SocketAddr,
}

impl Reinjector {
    pub fn new(addr: SocketAddr) -> Reinjector {
        Reinjector { addr }
    }

    /// Sends `message` from `sender` (empty for `<>`) to `rcpts`. `Ok` holds Postfix's final
    /// reply, or its first refusal; `Err` means Postfix could not be talked to.
    pub async fn send(&self, sender: &str, rcpts: &[String], message: &[u8]) -> Result<Reply> {
        let stream = timeout(CONNECT_TIMEOUT, TcpStream::connect(self.addr))
            .await
            .with_context(|| format!("timeout connecting to {}", self.addr))?
            .with_context(|| format!("cannot connect to {}", self.addr))?;
        stream.set_nodelay(true)?;
        let mut client = Client::new(stream, format!("Postfix at {}", self.addr));
        let greeting = client.reply().await?;
        if !greeting.is_positive() {
            return Ok(greeting);
        }
        let ehlo = client.command("EHLO filtermail").await?;
        if !ehlo.is_positive() {
            return Ok(ehlo);
        }
        let reply = client.transaction(sender, rcpts, message).await?;
        client.quit().await;
        Ok(reply)
    }
}
