//! Keep-alive HTTP/1.1 connections to one loopback target, and the measurement of one request
//! (or one stream) over such a connection.
//!
//! Each load-generating task owns its connection instead of sharing a pool: no pool lock on the
//! hot path, and concurrency N means exactly N connections to the target.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HOST, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::api::ClientApi;
use crate::error::BenchError;
use crate::sse::{EventSplitter, event_data};

/// Header in which the proxy reports its own share of a request's time.
const OVERHEAD_HEADER: &str = "x-llm-proxy-overhead-ms";

/// Where requests go: an address on the loopback interface.
#[derive(Debug, Clone)]
pub struct Target {
    addr: SocketAddr,
    host: HeaderValue,
}

impl Target {
    pub fn new(addr: SocketAddr) -> Result<Self, BenchError> {
        if !addr.ip().is_loopback() {
            return Err(BenchError::Setting(format!(
                "{addr} is not a loopback address; the bench only sends traffic to this machine"
            )));
        }
        let host = HeaderValue::from_str(&addr.to_string())
            .map_err(|e| BenchError::Setting(format!("host header for {addr}: {e}")))?;
        Ok(Self { addr, host })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn host_header(&self) -> HeaderValue {
        self.host.clone()
    }
}

/// One non-streaming request: time until the whole body was read.
#[derive(Debug, Clone, Copy)]
pub struct Exchange {
    pub latency: Duration,
    pub overhead_ms: Option<f64>,
}

/// One stream: time to the first text event, and the gaps between text events.
#[derive(Debug, Clone)]
pub struct StreamRun {
    pub first_text: Duration,
    pub gaps: Vec<Duration>,
    pub overhead_ms: Option<f64>,
}

pub struct Conn {
    target: Target,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    pub fn new(target: Target) -> Self {
        Self {
            target,
            sender: None,
        }
    }

    /// Opens the connection now, so that its handshake is not part of a measured request.
    pub async fn connect(&mut self) -> Result<(), BenchError> {
        self.ready_sender().await.map(|_| ())
    }

    pub async fn exchange(
        &mut self,
        api: ClientApi,
        timeout: Duration,
    ) -> Result<Exchange, BenchError> {
        let outcome = tokio::time::timeout(timeout, self.timed_exchange(api)).await;
        self.keep_if_ok(outcome, timeout)
    }

    pub async fn stream(
        &mut self,
        api: ClientApi,
        want_text_events: u32,
        timeout: Duration,
    ) -> Result<StreamRun, BenchError> {
        let outcome = tokio::time::timeout(timeout, self.timed_stream(api, want_text_events)).await;
        self.keep_if_ok(outcome, timeout)
    }

    /// A failed request may leave the connection mid-response: drop it and reconnect next time.
    fn keep_if_ok<T>(
        &mut self,
        outcome: Result<Result<T, BenchError>, tokio::time::error::Elapsed>,
        timeout: Duration,
    ) -> Result<T, BenchError> {
        let result = outcome.unwrap_or(Err(BenchError::Timeout(timeout)));
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    async fn timed_exchange(&mut self, api: ClientApi) -> Result<Exchange, BenchError> {
        let start = Instant::now();
        let response = self.send(api, false).await?;
        let overhead_ms = overhead_ms(&response);
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            frame?;
        }
        Ok(Exchange {
            latency: start.elapsed(),
            overhead_ms,
        })
    }

    async fn timed_stream(
        &mut self,
        api: ClientApi,
        want_text_events: u32,
    ) -> Result<StreamRun, BenchError> {
        let start = Instant::now();
        let response = self.send(api, true).await?;
        let overhead_ms = overhead_ms(&response);
        let mut body = response.into_body();
        let mut splitter = EventSplitter::default();
        let mut first_text = None;
        let mut last_text: Option<Instant> = None;
        let mut gaps = Vec::with_capacity(want_text_events as usize);
        let mut text_events = 0u32;
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            // Every event completed by this frame arrived now.
            let arrived = Instant::now();
            splitter.push(&data);
            while let Some(event) = splitter.next_event() {
                if !event_data(&event).is_some_and(|data| api.carries_text(&data)) {
                    continue;
                }
                match last_text {
                    None => first_text = Some(arrived - start),
                    Some(previous) => gaps.push(arrived - previous),
                }
                last_text = Some(arrived);
                text_events += 1;
            }
        }
        match first_text {
            Some(first_text) if text_events == want_text_events => Ok(StreamRun {
                first_text,
                gaps,
                overhead_ms,
            }),
            _ => Err(BenchError::ShortStream {
                got: text_events,
                want: want_text_events,
            }),
        }
    }

    async fn send(
        &mut self,
        api: ClientApi,
        stream: bool,
    ) -> Result<Response<Incoming>, BenchError> {
        let mut request = Request::post(api.path())
            .body(Full::new(api.body(stream)))
            .map_err(|e| BenchError::Setting(format!("building a request: {e}")))?;
        let headers = request.headers_mut();
        headers.insert(HOST, self.target.host.clone());
        api.add_headers(headers);
        let response = self.ready_sender().await?.send_request(request).await?;
        if response.status() == StatusCode::OK {
            return Ok(response);
        }
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|body| body.to_bytes())
            .unwrap_or_default();
        let snippet = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        Err(BenchError::Status(status, snippet))
    }

    async fn ready_sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, BenchError> {
        let sender = match self.sender.take() {
            Some(sender) if !sender.is_closed() => sender,
            _ => handshake(self.target.addr).await?,
        };
        let sender = self.sender.insert(sender);
        sender.ready().await?;
        Ok(sender)
    }
}

pub async fn handshake(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, BenchError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| BenchError::io(format!("connecting to {addr}"), e))?;
    stream
        .set_nodelay(true)
        .map_err(|e| BenchError::io("setting TCP_NODELAY", e))?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the peer closes; a request on it reports errors.
        let _ = connection.await;
    });
    Ok(sender)
}

fn overhead_ms(response: &Response<Incoming>) -> Option<f64> {
    response
        .headers()
        .get(OVERHEAD_HEADER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// One request on a fresh connection: its status and whole body. For the memory phases, whose
/// bodies are built per request and whose answers are inspected, not timed.
pub async fn post_once(
    target: &Target,
    api: ClientApi,
    body: Bytes,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), BenchError> {
    let exchange = async {
        let mut sender = handshake(target.addr).await?;
        let mut request = Request::post(api.path())
            .body(Full::new(body))
            .map_err(|e| BenchError::Setting(format!("building a request: {e}")))?;
        let headers = request.headers_mut();
        headers.insert(HOST, target.host.clone());
        api.add_headers(headers);
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Err(BenchError::Timeout(timeout)))
}
