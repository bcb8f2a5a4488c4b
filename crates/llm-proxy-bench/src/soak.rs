//! `--mode soak`: a long closed loop of mixed traffic through the proxy — non-streaming and
//! streaming requests, injected upstream failures, clients that disconnect mid-stream — on
//! both client protocols, reporting the proxy's resident memory and open file descriptors
//! (from /proc) after a warm-up and at the end. Growth in either is a leak.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::HOST;
use hyper::{Request, StatusCode};
use serde::Serialize;

use crate::api::ClientApi;
use crate::bench::progress;
use crate::client::{Target, handshake};
use crate::rss;

/// The model name that makes the mock upstream answer 500.
pub const FAIL_MODEL: &str = "bench-fail";
/// Requests before the first reading: every path has run by then.
const WARMUP: u64 = 2_000;
const SETTLE: Duration = Duration::from_millis(1_000);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What one request of the mix does, by its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Stream,
    /// The upstream answers 500; the client sees a 5xx error.
    UpstreamFailure,
    /// A stream the client abandons after its first event.
    Disconnect,
}

fn kind_of(i: u64) -> Kind {
    match i % 10 {
        0 => Kind::UpstreamFailure,
        1..=3 => Kind::Stream,
        4 => Kind::Disconnect,
        _ => Kind::Plain,
    }
}

/// Resident memory and open descriptors of the proxy at one moment.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Snapshot {
    pub rss_mib: f64,
    pub open_fds: Option<usize>,
    pub requests_done: u64,
}

fn snapshot(pid: u32, requests_done: u64) -> Snapshot {
    Snapshot {
        rss_mib: rss::read(pid).map_or(f64::NAN, |m| m.rss_kib as f64 / 1024.0),
        open_fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
            .ok()
            .map(Iterator::count),
        requests_done,
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Tally {
    pub plain_ok: u64,
    pub streams_ok: u64,
    pub upstream_failures_seen: u64,
    pub disconnects: u64,
    /// Anything not as expected: a wrong status, a cut stream, a timeout, a connection error.
    pub errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl Tally {
    fn total(&self) -> u64 {
        self.plain_ok
            + self.streams_ok
            + self.upstream_failures_seen
            + self.disconnects
            + self.errors
    }

    fn merge(&mut self, other: Self) {
        self.plain_ok += other.plain_ok;
        self.streams_ok += other.streams_ok;
        self.upstream_failures_seen += other.upstream_failures_seen;
        self.disconnects += other.disconnects;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SoakReport {
    pub requests: u64,
    pub concurrency: usize,
    pub elapsed_secs: f64,
    pub per_second: f64,
    pub hit_time_bound: bool,
    pub tally: Tally,
    pub idle: Snapshot,
    pub start: Snapshot,
    pub end: Snapshot,
}

/// Request bodies, serialized once.
struct Bodies {
    openai: [Bytes; 3],
    anthropic: [Bytes; 3],
    responses: [Bytes; 3],
}

impl Bodies {
    fn new() -> Self {
        let openai = |model: &str, stream: bool| {
            Bytes::from(format!(
                r#"{{"model":"{model}","messages":[{{"role":"user","content":"Say hello."}}],"max_tokens":16,"stream":{stream}}}"#
            ))
        };
        let anthropic = |model: &str, stream: bool| {
            Bytes::from(format!(
                r#"{{"model":"{model}","max_tokens":16,"messages":[{{"role":"user","content":"Say hello."}}],"stream":{stream}}}"#
            ))
        };
        let responses = |model: &str, stream: bool| {
            Bytes::from(format!(
                r#"{{"model":"{model}","input":"Say hello.","max_output_tokens":16,"stream":{stream}}}"#
            ))
        };
        Self {
            openai: [
                openai("gpt-bench", false),
                openai("gpt-bench", true),
                openai(FAIL_MODEL, false),
            ],
            anthropic: [
                anthropic("gpt-bench", false),
                anthropic("gpt-bench", true),
                anthropic(FAIL_MODEL, false),
            ],
            responses: [
                responses("gpt-bench", false),
                responses("gpt-bench", true),
                responses(FAIL_MODEL, false),
            ],
        }
    }

    /// The body for one request, made new by a counter in the user's text (repeats would be
    /// refused by the proxy's request dedup).
    fn get(&self, api: ClientApi, kind: Kind) -> Bytes {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let template = self.template(api, kind);
        let text = std::str::from_utf8(&template).unwrap_or_default();
        Bytes::from(text.replacen("Say hello.", &format!("Say hello. ({n})"), 1))
    }

    fn template(&self, api: ClientApi, kind: Kind) -> Bytes {
        let set = match api {
            ClientApi::OpenAi => &self.openai,
            ClientApi::Anthropic => &self.anthropic,
            ClientApi::Responses => &self.responses,
        };
        match kind {
            Kind::Plain => set[0].clone(),
            Kind::Stream | Kind::Disconnect => set[1].clone(),
            Kind::UpstreamFailure => set[2].clone(),
        }
    }
}

pub async fn run(
    target: &Target,
    pid: u32,
    total: u64,
    concurrency: usize,
    time_bound: Duration,
) -> SoakReport {
    let bodies = Arc::new(Bodies::new());
    tokio::time::sleep(SETTLE).await;
    let idle = snapshot(pid, 0);
    progress(&format!("soak: warm-up, {WARMUP} mixed requests"));
    let (warm, _) = closed_loop(target, &bodies, WARMUP, concurrency, time_bound).await;
    tokio::time::sleep(SETTLE).await;
    let start = snapshot(pid, warm.total());
    progress(&format!(
        "soak: {total} mixed requests at concurrency {concurrency} (at most {time_bound:?})"
    ));
    let began = Instant::now();
    let (tally, hit_time_bound) =
        closed_loop(target, &bodies, total, concurrency, time_bound).await;
    let elapsed = began.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    let end = snapshot(pid, warm.total() + tally.total());
    SoakReport {
        requests: tally.total(),
        concurrency,
        elapsed_secs: elapsed,
        per_second: tally.total() as f64 / elapsed.max(1e-9),
        hit_time_bound,
        tally,
        idle,
        start,
        end,
    }
}

async fn closed_loop(
    target: &Target,
    bodies: &Arc<Bodies>,
    total: u64,
    concurrency: usize,
    time_bound: Duration,
) -> (Tally, bool) {
    let next = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + time_bound;
    let workers: Vec<_> = (0..concurrency)
        .map(|w| {
            let (target, bodies, next) = (target.clone(), Arc::clone(bodies), Arc::clone(&next));
            tokio::spawn(async move {
                let api = if w % 2 == 0 {
                    ClientApi::OpenAi
                } else {
                    ClientApi::Anthropic
                };
                let mut sender = None;
                let mut tally = Tally::default();
                let mut timed_out = false;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    if Instant::now() >= deadline {
                        timed_out = true;
                        break;
                    }
                    let kind = kind_of(i);
                    let outcome = tokio::time::timeout(
                        REQUEST_TIMEOUT,
                        one(&target, &mut sender, api, kind, bodies.get(api, kind)),
                    )
                    .await
                    .unwrap_or_else(|_| Err("timed out".into()));
                    match outcome {
                        Ok(()) => match kind {
                            Kind::Plain => tally.plain_ok += 1,
                            Kind::Stream => tally.streams_ok += 1,
                            Kind::UpstreamFailure => tally.upstream_failures_seen += 1,
                            Kind::Disconnect => tally.disconnects += 1,
                        },
                        Err(e) => {
                            sender = None;
                            tally.errors += 1;
                            tally.first_error.get_or_insert_with(|| {
                                format!("{kind:?} via {}: {e}", api.label())
                            });
                        }
                    }
                }
                (tally, timed_out)
            })
        })
        .collect();
    let mut tally = Tally::default();
    let mut hit = false;
    for worker in workers {
        if let Ok((t, timed_out)) = worker.await {
            tally.merge(t);
            hit |= timed_out;
        }
    }
    (tally, hit)
}

/// One request of the mix on the worker's keep-alive connection (a new one after a
/// disconnect or an error).
async fn one(
    target: &Target,
    sender: &mut Option<SendRequest<Full<Bytes>>>,
    api: ClientApi,
    kind: Kind,
    body: Bytes,
) -> Result<(), String> {
    let mut conn = match sender.take() {
        Some(s) if !s.is_closed() => s,
        _ => handshake(target.addr()).await.map_err(|e| e.to_string())?,
    };
    conn.ready().await.map_err(|e| e.to_string())?;
    let mut request = Request::post(api.path())
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    request.headers_mut().insert(HOST, target.host_header());
    api.add_headers(request.headers_mut());
    let response = conn
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let mut body = response.into_body();
    match kind {
        Kind::UpstreamFailure => {
            while let Some(frame) = body.frame().await {
                frame.map_err(|e| e.to_string())?;
            }
            *sender = Some(conn);
            if status.is_server_error() {
                Ok(())
            } else {
                Err(format!(
                    "expected a 5xx for an upstream failure, got {status}"
                ))
            }
        }
        Kind::Disconnect => {
            if status != StatusCode::OK {
                return Err(format!("status {status}"));
            }
            // The first event arrives, then the client goes away: the connection is dropped.
            match body.frame().await {
                Some(Ok(_)) => Ok(()),
                Some(Err(e)) => Err(e.to_string()),
                None => Err("empty stream".into()),
            }
        }
        Kind::Plain | Kind::Stream => {
            let mut bytes = Vec::new();
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.map_err(|e| e.to_string())?.into_data() {
                    bytes.extend_from_slice(&data);
                }
            }
            if status != StatusCode::OK {
                return Err(format!(
                    "status {status}: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                ));
            }
            let complete = match (kind, api) {
                (Kind::Plain, _) => !bytes.is_empty(),
                (_, ClientApi::OpenAi) => bytes.windows(6).any(|w| w == b"[DONE]"),
                (_, ClientApi::Anthropic) => bytes.windows(12).any(|w| w == b"message_stop"),
                (_, ClientApi::Responses) => bytes.windows(18).any(|w| w == b"response.completed"),
            };
            *sender = Some(conn);
            if complete {
                Ok(())
            } else {
                Err("stream cut short".into())
            }
        }
    }
}

/// The results as text.
pub fn render(r: &SoakReport) -> String {
    let fds = |s: &Snapshot| s.open_fds.map_or("n/a".to_owned(), |n| n.to_string());
    format!(
        "soak: {} requests at concurrency {} in {:.1} s ({:.0} req/s){}\n\
         mix: {} plain, {} streams, {} upstream failures answered 5xx, {} client disconnects, {} errors{}\n\
         proxy            | RSS MiB | open fds | requests so far\n\
         idle             | {:7.1} | {:>8} | {}\n\
         start (warm)     | {:7.1} | {:>8} | {}\n\
         end              | {:7.1} | {:>8} | {}\n\
         growth start→end | {:+7.1} | {:>8} |\n",
        r.requests,
        r.concurrency,
        r.elapsed_secs,
        r.per_second,
        if r.hit_time_bound {
            " — stopped at the time bound"
        } else {
            ""
        },
        r.tally.plain_ok,
        r.tally.streams_ok,
        r.tally.upstream_failures_seen,
        r.tally.disconnects,
        r.tally.errors,
        r.tally
            .first_error
            .as_deref()
            .map_or(String::new(), |e| format!(" (first: {e})")),
        r.idle.rss_mib,
        fds(&r.idle),
        r.idle.requests_done,
        r.start.rss_mib,
        fds(&r.start),
        r.start.requests_done,
        r.end.rss_mib,
        fds(&r.end),
        r.end.requests_done,
        r.end.rss_mib - r.start.rss_mib,
        match (r.start.open_fds, r.end.open_fds) {
            (Some(a), Some(b)) => format!("{:+}", b as i64 - a as i64),
            _ => "n/a".into(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_has_every_kind() {
        let kinds: Vec<Kind> = (0..10).map(kind_of).collect();
        for k in [
            Kind::Plain,
            Kind::Stream,
            Kind::UpstreamFailure,
            Kind::Disconnect,
        ] {
            assert!(kinds.contains(&k), "{k:?}");
        }
    }

    #[test]
    fn snapshots_of_this_process_count_descriptors() {
        let s = snapshot(std::process::id(), 0);
        assert!(s.rss_mib > 0.0);
        assert!(s.open_fds.is_some_and(|n| n >= 3));
    }
}
