//! The usage endpoints on the main router: `GET /v1/usage/stats` (totals and breakdowns),
//! `GET /v1/usage/recent?limit=N` (newest first), `GET /v1/usage/series?bucket=&by=` (sums
//! per time bucket and backend or model, for the dashboard's charts) and
//! `GET /v1/usage/export?format=csv|jsonl` (streamed from the store row by row). They are behind the client-key check like every
//! route; without client keys (single-user mode) only clients on the proxy's own host
//! (loopback) are served. Errors use the OpenAI envelope.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt as _;
use http::{HeaderValue, StatusCode, header};
use llm_proxy_api::error::{BackendError, ErrorKind, ErrorSource};

use super::query::BadFilter;
use super::record::CSV_HEADER;
use super::series::SeriesQuery;
use super::{UsageFilter, UsageStore};
use crate::error::{ProxyError, WireFormat};
use crate::state::AppState;

/// Records `recent` returns when no `limit` is given.
pub const DEFAULT_RECENT: usize = 50;
/// Most records `recent` returns.
pub const MAX_RECENT: usize = 1000;

/// A refusal, rendered in the OpenAI envelope.
type Refusal = Box<ProxyError>;

fn render(result: Result<Response, Refusal>) -> Response {
    result.unwrap_or_else(|e| e.into_response_for(WireFormat::OpenAi))
}

fn bad_filter(e: &BadFilter) -> Refusal {
    Box::new(ProxyError::invalid(
        e.to_string(),
        Some(e.param),
        Some("invalid_usage_filter"),
    ))
}

/// What an admitted query works with.
struct Admitted {
    store: Arc<dyn UsageStore>,
    params: Vec<(String, String)>,
}

/// The store and the query's parameters, or the refusal: remote clients without client keys
/// (403), usage accounting off (404), an unreadable query string (400).
fn admit(state: &AppState, req: &Request) -> Result<Admitted, Refusal> {
    refuse_remote_without_keys(state, req, "usage")?;
    let Some(store) = state.usage() else {
        return Err(Box::new(ProxyError::Rejected {
            status: StatusCode::NOT_FOUND,
            message: "usage accounting is off (usage.enabled: false, or the proxy runs without a data directory)".to_owned(),
        }));
    };
    let params = Query::<Vec<(String, String)>>::try_from_uri(req.uri())
        .map_err(|e| {
            Box::new(ProxyError::invalid(
                format!("unreadable query string: {e}"),
                None,
                Some("invalid_usage_filter"),
            ))
        })?
        .0;
    Ok(Admitted {
        store: store.clone(),
        params,
    })
}

/// Without client keys (single-user mode) only clients on the proxy's own host (loopback)
/// may read `what` (usage, the dashboard); with keys the auth middleware has already checked
/// the client's.
pub fn refuse_remote_without_keys(
    state: &AppState,
    req: &Request,
    what: &str,
) -> Result<(), Refusal> {
    if !state.config().auth.api_keys.is_empty() {
        return Ok(());
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    if peer.is_some_and(|addr| addr.ip().is_loopback()) {
        return Ok(());
    }
    let denied = BackendError::new(
        ErrorKind::PermissionDenied,
        ErrorSource::Config,
        format!("{what} is only served to clients on the proxy's own host (loopback) unless client keys are configured (auth.api_keys)"),
    )
    .with_code("forbidden");
    Err(Box::new(ProxyError::Backend(denied)))
}

fn filter_of(params: &[(String, String)], extra: &[&str]) -> Result<UsageFilter, Refusal> {
    UsageFilter::from_params(params.iter().map(|(k, v)| (k.as_str(), v.as_str())), extra)
        .map_err(|e| bad_filter(&e))
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn store_failed(e: &super::UsageError) -> Refusal {
    tracing::warn!("usage query failed: {e}");
    Box::new(ProxyError::StoreUnavailable { what: "usage" })
}

/// `GET /v1/usage/stats`.
pub async fn stats(State(state): State<AppState>, req: Request) -> Response {
    render(stats_of(&state, req).await)
}

async fn stats_of(state: &AppState, req: Request) -> Result<Response, Refusal> {
    let Admitted { store, params } = admit(state, &req)?;
    let filter = filter_of(&params, &[])?;
    let stats = store.stats(filter).await.map_err(|e| store_failed(&e))?;
    Ok(Json(stats.to_json()).into_response())
}

/// `GET /v1/usage/recent?limit=N`.
pub async fn recent(State(state): State<AppState>, req: Request) -> Response {
    render(recent_of(&state, req).await)
}

async fn recent_of(state: &AppState, req: Request) -> Result<Response, Refusal> {
    let Admitted { store, params } = admit(state, &req)?;
    let filter = filter_of(&params, &["limit"])?;
    let limit = match param(&params, "limit").map(|v| v.trim().parse::<usize>()) {
        None => DEFAULT_RECENT,
        Some(Ok(n)) if (1..=MAX_RECENT).contains(&n) => n,
        Some(_) => {
            return Err(bad_filter(&BadFilter {
                param: "limit",
                message: format!("expected a whole number from 1 to {MAX_RECENT}"),
            }));
        }
    };
    let data = store
        .recent(filter, limit)
        .await
        .map_err(|e| store_failed(&e))?;
    Ok(Json(serde_json::json!({ "data": data })).into_response())
}

/// `GET /v1/usage/series?bucket=minute|hour|day&by=backend|model` (+ the filters).
pub async fn series(State(state): State<AppState>, req: Request) -> Response {
    render(series_of(&state, req).await)
}

async fn series_of(state: &AppState, req: Request) -> Result<Response, Refusal> {
    let Admitted { store, params } = admit(state, &req)?;
    let query = SeriesQuery::from_params(
        params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        super::sqlite::now_millis(),
    )
    .map_err(|e| bad_filter(&e))?;
    let series = store
        .series(query.clone())
        .await
        .map_err(|e| store_failed(&e))?;
    Ok(Json(series.to_json(&query)).into_response())
}

/// `GET /v1/usage/export?format=csv|jsonl` (default `jsonl`), streamed.
pub async fn export(State(state): State<AppState>, req: Request) -> Response {
    render(export_of(&state, &req))
}

fn export_of(state: &AppState, req: &Request) -> Result<Response, Refusal> {
    let Admitted { store, params } = admit(state, req)?;
    let filter = filter_of(&params, &["format"])?;
    let csv = match param(&params, "format").map(str::trim) {
        None | Some("jsonl") => false,
        Some("csv") => true,
        Some(_) => {
            return Err(bad_filter(&BadFilter {
                param: "format",
                message: "expected csv or jsonl".to_owned(),
            }));
        }
    };
    let rows = store.export(filter).map(move |row| match row {
        Ok(record) => Ok(Bytes::from(if csv {
            record.csv_line()
        } else {
            let mut line = serde_json::to_string(&record).unwrap_or_default();
            line.push('\n');
            line
        })),
        Err(e) => {
            // The status is gone: cut the body so the client sees an incomplete download.
            tracing::warn!("usage export failed: {e}");
            Err(std::io::Error::other(e.to_string()))
        }
    });
    let body = if csv {
        Body::from_stream(
            futures::stream::once(async { Ok(Bytes::from_static(CSV_HEADER.as_bytes())) })
                .chain(rows),
        )
    } else {
        Body::from_stream(rows)
    };
    let mut resp = Response::new(body);
    let (content_type, file) = if csv {
        (
            "text/csv; charset=utf-8",
            "attachment; filename=\"usage.csv\"",
        )
    } else {
        (
            "application/x-ndjson",
            "attachment; filename=\"usage.jsonl\"",
        )
    };
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut()
        .insert(header::CONTENT_DISPOSITION, HeaderValue::from_static(file));
    Ok(resp)
}
