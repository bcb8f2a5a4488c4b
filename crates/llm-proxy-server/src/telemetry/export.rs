//! `TraceSink`: the bounded queue between finished requests and the OTLP/HTTP exporter, and
//! the exporter's own thread (a single-threaded runtime, so exports never compete with the
//! request path). Requests are queued without blocking; a full queue drops them and counts
//! their spans (`llm_proxy_otel_spans_dropped_total{reason="queue_full"}`), as does a failed
//! export (`reason="export_failed"`). Spans go out in batches of up to [`MAX_BATCH`], at
//! least every [`EXPORT_INTERVAL`], over the reqwest client already in the tree.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use llm_proxy_api::scrub::Scrubber;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use tokio::sync::{mpsc, oneshot};

use super::spans::{FinishedRequest, SpanFactory};
use crate::config::GatewayConfig;

/// Finished requests waiting for the exporter.
const QUEUE: usize = 2048;
/// Most spans in one export.
pub const MAX_BATCH: usize = 512;
/// Longest a span waits for its batch.
pub const EXPORT_INTERVAL: Duration = Duration::from_secs(2);
/// Longest one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

const DROPPED: &str = "llm_proxy_otel_spans_dropped_total";
const EXPORTED: &str = "llm_proxy_otel_spans_exported_total";

enum Message {
    Request(Box<FinishedRequest>),
    Flush(oneshot::Sender<()>),
}

/// Counts shared with the exporter thread.
#[derive(Debug, Default)]
struct Counts {
    exported: AtomicU64,
    dropped: AtomicU64,
}

/// The queue to the exporter thread. The thread ends once every sink is dropped, after
/// exporting what is still queued.
#[derive(Debug, Clone)]
pub struct TraceSink {
    tx: mpsc::Sender<Message>,
    counts: Arc<Counts>,
}

/// The proxy's reqwest client as the OTLP exporter's HTTP client (the exporter's own reqwest
/// integration would pull in a second reqwest).
#[derive(Debug)]
struct ReqwestClient(reqwest::Client);

#[async_trait::async_trait]
impl HttpClient for ReqwestClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        // Through the builder, so credentials in the collector URL become basic auth.
        let response = self
            .0
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await?;
        let mut out = Response::builder().status(response.status());
        if let Some(headers) = out.headers_mut() {
            *headers = response.headers().clone();
        }
        let body = response.bytes().await?;
        Ok(out.body(body)?)
    }
}

impl TraceSink {
    /// Builds the exporter for `config.telemetry` and starts its thread. Errors name the
    /// setting and never quote the endpoint (it may hold credentials).
    pub fn start(config: &GatewayConfig, scrubber: Scrubber) -> Result<Self, String> {
        let telemetry = &config.telemetry;
        let Some(url) = &telemetry.otlp_traces_url else {
            return Err("telemetry.otlp_endpoint is not set".into());
        };
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            format!(
                "telemetry.otlp_endpoint: {what}: {}",
                scrubber.scrub(&e.to_string())
            )
        };
        // The configured headers may hold a collector's key: never carried to another host.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| fail("cannot build the HTTP client", &e))?;
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(ReqwestClient(client))
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url.expose())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| fail("cannot build the OTLP exporter", &e))?;
        exporter.set_resource(
            &Resource::builder_empty()
                .with_service_name(telemetry.service_name.clone())
                .build(),
        );
        let factory = SpanFactory::new(&config.backends.instances, scrubber.clone());
        let (tx, rx) = mpsc::channel(QUEUE);
        let counts = Arc::new(Counts::default());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| fail("cannot start the exporter", &e))?;
        let thread_counts = counts.clone();
        let thread_scrubber = scrubber.clone();
        std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || {
                runtime.block_on(run(rx, exporter, factory, thread_scrubber, thread_counts));
            })
            .map_err(|e| fail("cannot start the exporter thread", &e))?;
        Ok(Self { tx, counts })
    }

    /// Queues a finished request; drops and counts its spans when the queue is full.
    pub fn send(&self, request: FinishedRequest) {
        let spans = request.span_count();
        if self
            .tx
            .try_send(Message::Request(Box::new(request)))
            .is_err()
        {
            drop_spans(&self.counts, spans, "queue_full");
        }
    }

    /// Waits until everything queued before the call has been exported (or failed to be).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Spans exported so far.
    pub fn exported(&self) -> u64 {
        self.counts.exported.load(Ordering::Relaxed)
    }

    /// Spans dropped so far (queue full or export failed).
    pub fn dropped(&self) -> u64 {
        self.counts.dropped.load(Ordering::Relaxed)
    }
}

fn drop_spans(counts: &Counts, spans: u64, reason: &'static str) {
    counts.dropped.fetch_add(spans, Ordering::Relaxed);
    metrics::counter!(DROPPED, "reason" => reason).increment(spans);
}

/// The exporter thread's loop: batches spans, exports when a batch is full, when the oldest
/// span has waited [`EXPORT_INTERVAL`], on a flush, and once more when the sinks are gone.
async fn run(
    mut rx: mpsc::Receiver<Message>,
    exporter: opentelemetry_otlp::SpanExporter,
    factory: SpanFactory,
    scrubber: Scrubber,
    counts: Arc<Counts>,
) {
    let mut batch: Vec<SpanData> = Vec::new();
    let mut deadline = None;
    let mut failing = false;
    loop {
        let due = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let message = tokio::select! {
            m = rx.recv() => m,
            () = due => {
                export(&exporter, &mut batch, &scrubber, &counts, &mut failing).await;
                deadline = None;
                continue;
            }
        };
        match message {
            Some(Message::Request(request)) => {
                batch.extend(factory.spans(&request));
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + EXPORT_INTERVAL);
                if batch.len() >= MAX_BATCH {
                    export(&exporter, &mut batch, &scrubber, &counts, &mut failing).await;
                    deadline = None;
                }
            }
            Some(Message::Flush(done)) => {
                export(&exporter, &mut batch, &scrubber, &counts, &mut failing).await;
                deadline = None;
                let _ = done.send(());
            }
            None => {
                export(&exporter, &mut batch, &scrubber, &counts, &mut failing).await;
                return;
            }
        }
    }
}

async fn export(
    exporter: &opentelemetry_otlp::SpanExporter,
    batch: &mut Vec<SpanData>,
    scrubber: &Scrubber,
    counts: &Counts,
    failing: &mut bool,
) {
    if batch.is_empty() {
        return;
    }
    let spans = std::mem::take(batch);
    let n = spans.len() as u64;
    match exporter.export(spans).await {
        Ok(()) => {
            counts.exported.fetch_add(n, Ordering::Relaxed);
            metrics::counter!(EXPORTED).increment(n);
            if std::mem::take(failing) {
                tracing::info!("OTLP trace export works again");
            }
        }
        Err(e) => {
            drop_spans(counts, n, "export_failed");
            // Once per outage, not once per batch.
            if !std::mem::replace(failing, true) {
                tracing::warn!(
                    spans = n,
                    "OTLP trace export failed: {}",
                    scrubber.scrub(&e.to_string())
                );
            }
        }
    }
}
