//! The HTTP edge around every route: refuses a body declared larger than
//! `max_request_body_bytes` before reading it, and puts the error responses the framework
//! makes on its own (405, extractor rejections such as an unreadable path parameter) into the
//! error envelope of the path's client protocol.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderMap, header};

use crate::error::{ProxyError, WireFormat};

/// Longest framework error text kept as the envelope's message.
const MAX_MESSAGE_BYTES: usize = 4096;

/// What the edge of one listener needs.
#[derive(Clone)]
pub struct Edge {
    /// The client protocol of a path (its error envelope, the client-key refusals').
    pub format_of: fn(&str) -> WireFormat,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// For the client-key check ([`crate::auth`]), which runs in the same layer: one
    /// middleware per request instead of two (each clones and boxes the route's service).
    pub state: crate::state::AppState,
}

/// The middleware: the early 413, then the client-key check, then the envelope for the
/// framework's own errors.
pub async fn guard(State(edge): State<Edge>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let format = match admit(&edge, &mut req, peer) {
        Ok(format) => format,
        Err(refused) => return *refused,
    };
    settle(next.run(req).await, format).await
}

/// What the edge does before a request reaches its handler: the early 413 (the body is never
/// read; the connection closes after the response) and the client-key check. Returns the
/// path's protocol, whose envelope [`settle`] uses, or the refusal.
pub(crate) fn admit(
    edge: &Edge,
    req: &mut Request,
    peer: Option<SocketAddr>,
) -> Result<WireFormat, Box<Response>> {
    let format = (edge.format_of)(req.uri().path());
    if declared_length(req.headers()).is_some_and(|n| n > edge.max_body_bytes as u64) {
        return Err(Box::new(
            ProxyError::PayloadTooLarge {
                limit: edge.max_body_bytes,
            }
            .into_response_for(format),
        ));
    }
    crate::auth::admit(&edge.state, req, peer, format)?;
    Ok(format)
}

/// What the edge does with the handler's response: an error the framework wrote (not JSON)
/// goes into the protocol's envelope.
pub(crate) async fn settle(response: Response, format: WireFormat) -> Response {
    let status = response.status();
    if (status.is_client_error() || status.is_server_error()) && !is_json(response.headers()) {
        return envelope(response, format).await;
    }
    response
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// A framework error response re-rendered as a [`ProxyError::Rejected`] in `format`.
async fn envelope(response: Response, format: WireFormat) -> Response {
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_MESSAGE_BYTES)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let allow = parts.headers.get(header::ALLOW).cloned();
    let message = match (text.is_empty(), &allow) {
        (false, _) => text,
        (true, Some(methods)) => format!(
            "method not allowed; this path accepts {}",
            methods.to_str().unwrap_or("other methods")
        ),
        (true, None) => parts
            .status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_owned(),
    };
    let mut out = ProxyError::Rejected {
        status: parts.status,
        message,
    }
    .into_response_for(format);
    if let Some(methods) = allow {
        out.headers_mut().insert(header::ALLOW, methods);
    }
    out
}
