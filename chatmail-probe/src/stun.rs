//! A STUN Binding request (RFC 5389) to the relay's TURN server on UDP 3478: whether it
//! answers, as a Delta Chat call's first step does.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use rand::RngCore as _;
use tokio::net::UdpSocket;

use crate::Relay;

/// The TURN server's port.
pub const PORT: u16 = 3478;
/// How often the request is sent before giving up (UDP may lose it).
const ATTEMPTS: u32 = 3;
/// How long each attempt waits for the answer.
const WAIT: Duration = Duration::from_secs(2);
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];

/// Sends a Binding request and waits for the success response to it.
pub async fn binding(relay: &Relay) -> Result<()> {
    let socket = UdpSocket::bind("0.0.0.0:0")
        .await
        .context("opening a UDP socket")?;
    socket
        .connect((relay.host.as_str(), PORT))
        .await
        .with_context(|| format!("reaching {}:{PORT} over UDP", relay.host))?;
    let mut request = [0u8; 20];
    request[..2].copy_from_slice(&[0x00, 0x01]);
    request[4..8].copy_from_slice(&MAGIC_COOKIE);
    rand::thread_rng().fill_bytes(&mut request[8..20]);
    let mut answer = [0u8; 1500];
    for _ in 0..ATTEMPTS {
        socket.send(&request).await.context("sending the request")?;
        let Ok(received) = tokio::time::timeout(WAIT, socket.recv(&mut answer)).await else {
            continue;
        };
        let size = received.context("receiving the answer")?;
        let answer = &answer[..size];
        if answer.len() >= 20 && answer[8..20] == request[8..20] {
            return match answer[..2] {
                [0x01, 0x01] => Ok(()),
                _ => bail!(
                    "answered with message type {:02x}{:02x}",
                    answer[0],
                    answer[1]
                ),
            };
        }
    }
    bail!(
        "no STUN answer from {}:{PORT} (UDP) after {ATTEMPTS} tries",
        relay.host
    )
}
