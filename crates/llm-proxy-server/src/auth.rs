//! Client authentication: when `auth.api_keys` is set, every request but the liveness probes
//! (`/health`, and `/` which Claude Code checks with `HEAD /` before its first call) must carry
//! one of them (`Authorization: Bearer`, `x-api-key`, `x-goog-api-key`, `?key=` or
//! `?api_key=`); the dashboard's static files (`/ui`) need none, as they hold no data.
//! Compared in constant time; never logged. Addresses that keep failing are blocked for a
//! while ([`crate::brute_force`]).

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;

use llm_proxy_api::config::Secret;

use crate::context::ClientIdentity;
use crate::error::{ProxyError, WireFormat};
use crate::state::AppState;

fn presented_key(req: &Request) -> Option<String> {
    let h = req.headers();
    if let Some(v) = h
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        && let Some(k) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
    {
        return non_empty(k);
    }
    for name in ["x-api-key", "x-goog-api-key"] {
        if let Some(v) = h.get(name).and_then(|v| v.to_str().ok()) {
            return non_empty(v);
        }
    }
    let query = req.uri().query()?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        if matches!(k, "key" | "api_key") {
            non_empty(v)
        } else {
            None
        }
    })
}

/// A presented key; an empty one is no key at all.
fn non_empty(key: &str) -> Option<String> {
    let key = key.trim();
    (!key.is_empty()).then(|| key.to_owned())
}

/// Whether `presented` is one of `keys`, compared in constant time per key.
fn key_accepted(keys: &[Secret], presented: Option<&str>) -> bool {
    presented.filter(|k| !k.is_empty()).is_some_and(|k| {
        keys.iter().fold(false, |found, key| {
            found | constant_time_eq(k.as_bytes(), key.expose().as_bytes())
        })
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The client protocol a path belongs to (for error envelopes).
pub fn format_for_path(path: &str) -> WireFormat {
    if path.starts_with("/anthropic/") || path.starts_with("/v1/messages") {
        WireFormat::Anthropic
    } else if path.starts_with("/v1beta/") || is_gemini_method(path) {
        WireFormat::Gemini
    } else {
        WireFormat::OpenAi
    }
}

/// `.../models/{model}:{method}` with one of Gemini's methods (also served under `/v1`).
fn is_gemini_method(path: &str) -> bool {
    path.rsplit_once(':').is_some_and(|(_, method)| {
        matches!(
            method,
            "generateContent" | "streamGenerateContent" | "countTokens"
        )
    })
}

/// Checks client keys (when any are configured) on one request from `peer`, attaching the
/// accepted key's [`ClientIdentity`]; a refusal (boxed: the rare path) is written in `format`.
/// Runs at the edge ([`crate::edge::admit`]).
pub(crate) fn admit(
    state: &AppState,
    req: &mut Request,
    peer: Option<SocketAddr>,
    format: WireFormat,
) -> Result<(), Box<Response>> {
    let keys = &state.config().auth.api_keys;
    let path = req.uri().path();
    // The dashboard's static files hold no data; the page sends the key with its data requests.
    if keys.is_empty() || matches!(path, "/health" | "/") || crate::ui::is_public_asset(path) {
        return Ok(());
    }
    let client = peer.map(|p| p.ip());
    let guard = state.brute_force();
    if let Some(ip) = client
        && let Some(left) = guard.blocked_for(ip)
    {
        // Whole seconds, rounded up, so a client retrying on time is no longer blocked.
        let retry_after = Duration::from_secs(left.as_secs() + u64::from(left.subsec_nanos() > 0));
        return Err(Box::new(
            ProxyError::AuthBlocked { retry_after }.into_response_for(format),
        ));
    }
    let presented = presented_key(req);
    if key_accepted(keys, presented.as_deref())
        && let Some(key) = presented.as_deref()
    {
        if let Some(ip) = client {
            guard.record_success(ip);
        }
        // Which key: part of the session identity, so clients never share a session.
        req.extensions_mut().insert(ClientIdentity::of_key(key));
        Ok(())
    } else {
        if let Some(ip) = client
            && let Some(block) = guard.record_failure(ip)
        {
            tracing::warn!(client = %ip, seconds = block.as_secs_f64(), "blocking a client after repeated failed authentication");
        }
        Err(Box::new(ProxyError::Unauthorized.into_response_for(format)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[&str]) -> Vec<Secret> {
        list.iter().map(|k| Secret::new(*k)).collect()
    }

    #[test]
    fn an_empty_presented_key_never_authenticates() {
        assert!(!key_accepted(&keys(&[""]), Some("")));
        assert!(!key_accepted(&keys(&["", "real-key-1"]), Some("")));
        assert!(!key_accepted(&keys(&["real-key-1"]), Some("")));
        assert!(!key_accepted(&keys(&["real-key-1"]), None));
        assert!(key_accepted(&keys(&["real-key-1"]), Some("real-key-1")));
        assert!(!key_accepted(&keys(&["real-key-1"]), Some("real-key-2")));
    }

    #[test]
    fn an_empty_query_key_is_no_key() {
        let req = Request::builder()
            .uri("/v1/models?key=")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(presented_key(&req), None);
        let req = Request::builder()
            .uri("/v1/models")
            .header("authorization", "Bearer   ")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(presented_key(&req), None);
    }
}
