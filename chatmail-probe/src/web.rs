//! HTTPS to the relay's web server: `POST /new`, the account suggestion a Delta Chat client
//! asks for when it scans the relay's invite code.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;

use crate::connect::{self, TIMEOUT};
use crate::{Account, Relay};

/// HTTPS.
pub const PORT: u16 = 443;

/// The longest answer read.
const MAX_BODY: usize = 64 * 1024;

/// `POST https://<domain>/new`: the address and password it suggests.
pub async fn new_account(relay: &Relay, tls: &Arc<ClientConfig>) -> Result<Account> {
    let stream = connect::tls(relay, tls, PORT).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake")?;
    let driver = tokio::spawn(connection);
    let request = hyper::Request::post("/new")
        .header(hyper::header::HOST, &relay.tls_name)
        .body(Empty::<Bytes>::new())
        .context("building the request")?;
    let exchange = async {
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    };
    let (status, body) = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .context("POST /new: no answer in time")?
        .context("POST /new")?;
    driver.abort();
    if !status.is_success() {
        bail!(
            "POST /new answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        );
    }
    if body.len() > MAX_BODY {
        bail!("POST /new answered {} bytes", body.len());
    }
    let json: serde_json::Value = serde_json::from_slice(&body).with_context(|| {
        format!(
            "POST /new answered no JSON: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )
    })?;
    let field = |name: &str| {
        json.get(name)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("POST /new answered without {name:?}: {json}"))
    };
    Ok(Account {
        addr: field("email")?,
        password: field("password")?,
    })
}
