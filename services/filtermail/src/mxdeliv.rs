//! HTTP `/mxdeliv`: the incoming filter's second front door, where other chatmail relays
//! `POST` a message (envelope in `X-MAIL-FROM` and `X-MAIL-TO` headers) instead of using SMTP.
//!
//! The same checks run as for SMTP. `200` + `250 OK` means accepted; `400` carries the SMTP
//! reply (`523 ...`), `413` the size refusal, `405` answers other methods.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::time::timeout;

use crate::filter::Filter;
use crate::session::Handler as _;
use crate::smtp::{Envelope, Reply, extract_address};

/// How long reading a request (headers, then body) may take.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// The path nginx forwards.
pub const PATH: &str = "/mxdeliv";

/// Serves HTTP on `listener` until the process ends.
pub async fn serve(listener: TcpListener, filter: Arc<Filter>) -> Result<()> {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                log::warn!("HTTP accept failed: {err}");
                continue;
            }
        };
        let filter = filter.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let filter = filter.clone();
                async move { Ok::<_, Infallible>(handle(req, &filter).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(err) = conn.await {
                log::debug!("HTTP connection from {peer} ended: {err}");
            }
        });
    }
}

async fn handle(req: Request<Incoming>, filter: &Filter) -> Response<Full<Bytes>> {
    if req.uri().path() != PATH {
        return respond(StatusCode::NOT_FOUND, "not found".to_owned());
    }
    if req.method() != Method::POST {
        return respond(StatusCode::METHOD_NOT_ALLOWED, "use POST".to_owned());
    }
    match envelope(&req) {
        Ok(envelope) => deliver(req, envelope, filter).await,
        Err(reply) => refuse(&reply),
    }
}

async fn deliver(
    req: Request<Incoming>,
    envelope: Envelope,
    filter: &Filter,
) -> Response<Full<Bytes>> {
    if let Err(reply) = filter.mail_from(&envelope.mail_from) {
        return refuse(&reply);
    }
    let body = Limited::new(req.into_body(), filter.max_message_size());
    let message = match timeout(READ_TIMEOUT, body.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => {
            return respond(
                StatusCode::PAYLOAD_TOO_LARGE,
                Reply::new(552, "Message exceeds maximum size").to_string(),
            );
        }
        Ok(Err(err)) => return refuse(&Reply::new(451, format!("4.3.0 Cannot read body: {err}"))),
        Err(_) => return refuse(&Reply::new(451, "4.4.2 Timeout reading body")),
    };
    let reply = filter.handle(&envelope, &message).await;
    if reply.is_positive() {
        respond(StatusCode::OK, reply.to_string())
    } else {
        refuse(&reply)
    }
}

/// The envelope from `X-MAIL-FROM` (absent: bounce) and each `X-MAIL-TO`.
fn envelope(req: &Request<Incoming>) -> Result<Envelope, Reply> {
    let header_address =
        |value: &hyper::header::HeaderValue| value.to_str().ok().and_then(extract_address);
    let mail_from = match req.headers().get("x-mail-from") {
        Some(value) => {
            header_address(value).ok_or_else(|| Reply::new(500, "Invalid address in MAIL FROM"))?
        }
        None => String::new(),
    };
    let rcpts = req
        .headers()
        .get_all("x-mail-to")
        .iter()
        .map(|value| {
            header_address(value)
                .filter(|a| !a.is_empty())
                .ok_or_else(|| Reply::new(500, "Invalid address in RCPT TO"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if rcpts.is_empty() {
        return Err(Reply::new(503, "5.5.1 Error: need RCPT command"));
    }
    Ok(Envelope {
        mail_from,
        rcpts,
        origin_ip: None,
    })
}

fn refuse(reply: &Reply) -> Response<Full<Bytes>> {
    respond(StatusCode::BAD_REQUEST, reply.to_string())
}

fn respond(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response
}
