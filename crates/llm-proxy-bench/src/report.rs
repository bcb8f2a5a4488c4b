//! The results of a run: figures per lane, proxy-minus-direct differences, and the issue's
//! targets checked against them. Serialized as the JSON output; `table` renders it for people.

use serde::Serialize;

use crate::api::ClientApi;
use crate::load::{LoadRun, Samples, StreamSamples};
use crate::rss::Memory;
use crate::settings::Settings;
use crate::stats::{Added, FloatSummary, Summary};

#[derive(Debug, Serialize)]
pub struct Report {
    pub settings: Settings,
    pub machine: Machine,
    pub non_streaming_c1: RequestLanes,
    /// Concurrency 1 with a pause before each request (absent when skipped).
    pub spaced_c1: Option<SpacedLanes>,
    pub throughput: Throughput,
    pub streaming_c1: StreamLanes,
    pub streaming_concurrent: StreamLanes,
    pub memory: Option<MemoryReport>,
    pub targets: Vec<TargetCheck>,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    /// What was measured as "proxy".
    pub proxy: String,
}

/// One lane of non-streaming requests.
#[derive(Debug, Serialize)]
pub struct LatencyLane {
    pub api: ClientApi,
    pub latency: Option<Summary>,
    /// The proxy's own `x-llm-proxy-overhead-ms` header, when present.
    pub overhead_header_ms: Option<FloatSummary>,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl LatencyLane {
    pub fn new(api: ClientApi, mut samples: Samples) -> Self {
        Self {
            api,
            latency: Summary::of(&mut samples.latencies_ns),
            overhead_header_ms: FloatSummary::of(&mut samples.overhead_ms),
            errors: samples.errors,
            first_error: samples.first_error,
        }
    }
}

/// A translated lane of non-streaming requests, beside the same-protocol proxy lane.
#[derive(Debug, Serialize)]
pub struct TranslatedLatency {
    #[serde(flatten)]
    pub lane: LatencyLane,
    /// Over the direct OpenAI chat lane.
    pub added: Option<Added>,
    /// This lane's added p99 over the same-protocol lane's added p99.
    pub ratio_p99: Option<f64>,
    /// The same protocol called directly on the mock (an answer of this protocol's size).
    pub direct_same_api: LatencyLane,
    /// Over `direct_same_api`: what the proxy adds to a call in this protocol.
    pub added_vs_same_api: Option<Added>,
    /// `added_vs_same_api` p50 over the OpenAI chat lane's added p50.
    pub ratio_p50_vs_same_api: Option<f64>,
}

/// Concurrency 1, non-streaming: direct, same protocol through the proxy, and each translated
/// client protocol through the proxy.
#[derive(Debug, Serialize)]
pub struct RequestLanes {
    pub requests_per_lane: u64,
    pub direct: LatencyLane,
    pub proxy: LatencyLane,
    pub proxy_added: Option<Added>,
    pub translated: Vec<TranslatedLatency>,
}

impl RequestLanes {
    pub fn new(
        requests_per_lane: u64,
        direct: LatencyLane,
        proxy: LatencyLane,
        translated: Vec<(LatencyLane, LatencyLane)>,
    ) -> Self {
        let proxy_added = added(proxy.latency.as_ref(), direct.latency.as_ref());
        let translated = translated
            .into_iter()
            .map(|(lane, direct_same_api)| {
                let lane_added = added(lane.latency.as_ref(), direct.latency.as_ref());
                let added_vs_same_api =
                    added(lane.latency.as_ref(), direct_same_api.latency.as_ref());
                TranslatedLatency {
                    ratio_p99: ratio_of_added(lane_added, proxy_added),
                    added: lane_added,
                    ratio_p50_vs_same_api: ratio_of_added_p50(added_vs_same_api, proxy_added),
                    added_vs_same_api,
                    direct_same_api,
                    lane,
                }
            })
            .collect();
        Self {
            requests_per_lane,
            proxy_added,
            direct,
            proxy,
            translated,
        }
    }
}

/// Chat requests at concurrency 1 with `pause` before each: the latency an agent's requests
/// (seconds apart) see, every one finding the proxy idle and its caches cold.
#[derive(Debug, Serialize)]
pub struct SpacedLanes {
    #[serde(rename = "pause_secs", serialize_with = "crate::settings::as_secs")]
    pub pause: std::time::Duration,
    pub requests_per_lane: u64,
    pub direct: LatencyLane,
    pub proxy: LatencyLane,
    pub proxy_added: Option<Added>,
}

impl SpacedLanes {
    pub fn new(
        pause: std::time::Duration,
        requests_per_lane: u64,
        direct: LatencyLane,
        proxy: LatencyLane,
    ) -> Self {
        Self {
            pause,
            requests_per_lane,
            proxy_added: added(proxy.latency.as_ref(), direct.latency.as_ref()),
            direct,
            proxy,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct LoadLane {
    pub ok: usize,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed_secs: f64,
    pub requests_per_second: f64,
    pub latency: Option<Summary>,
    pub overhead_header_ms: Option<FloatSummary>,
}

impl LoadLane {
    pub fn new(mut run: LoadRun) -> Self {
        Self {
            ok: run.samples.latencies_ns.len(),
            errors: run.samples.errors,
            requests_per_second: run.per_second(),
            elapsed_secs: run.elapsed.as_secs_f64(),
            latency: Summary::of(&mut run.samples.latencies_ns),
            overhead_header_ms: FloatSummary::of(&mut run.samples.overhead_ms),
            first_error: run.samples.first_error,
        }
    }
}

/// Closed loop at fixed concurrency, direct then through the proxy.
#[derive(Debug, Serialize)]
pub struct Throughput {
    pub concurrency: usize,
    pub direct: LoadLane,
    pub proxy: LoadLane,
    /// Proxy requests per second over direct requests per second.
    pub ratio: Option<f64>,
    /// CPU time per request of the proxy and of the mock, over the same runs.
    pub cpu: CpuPerRequest,
}

impl Throughput {
    pub fn new(concurrency: usize, direct: LoadLane, proxy: LoadLane, cpu: CpuPerRequest) -> Self {
        let ratio = (direct.requests_per_second > 0.0)
            .then(|| proxy.requests_per_second / direct.requests_per_second);
        Self {
            concurrency,
            direct,
            proxy,
            ratio,
            cpu,
        }
    }
}

/// CPU time (user + system) per request during the throughput runs, in milliseconds: the
/// figure least moved by other work on the machine. The floor for a proxy is about twice the
/// mock's own (one server-side and one client-side HTTP exchange per request).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CpuPerRequest {
    /// The mock, serving the load generator directly.
    pub mock_direct_ms: Option<f64>,
    /// The mock, serving the proxy.
    pub mock_proxied_ms: Option<f64>,
    /// The proxy process (every thread).
    pub proxy_ms: Option<f64>,
    /// `proxy_ms` over `mock_direct_ms`.
    pub proxy_over_mock: Option<f64>,
}

impl CpuPerRequest {
    pub fn new(
        mock_direct_ms: Option<f64>,
        mock_proxied_ms: Option<f64>,
        proxy_ms: Option<f64>,
    ) -> Self {
        let proxy_over_mock = match (proxy_ms, mock_direct_ms) {
            (Some(p), Some(m)) if m > 0.0 => Some(p / m),
            _ => None,
        };
        Self {
            mock_direct_ms,
            mock_proxied_ms,
            proxy_ms,
            proxy_over_mock,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct StreamLane {
    pub api: ClientApi,
    pub streams_ok: usize,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Time to first token: request sent to first text event received.
    pub first_text: Option<Summary>,
    /// Time between consecutive text events.
    pub gaps: Option<Summary>,
    pub stalls: u64,
    pub overhead_header_ms: Option<FloatSummary>,
}

impl StreamLane {
    pub fn new(api: ClientApi, mut samples: StreamSamples) -> Self {
        Self {
            api,
            streams_ok: samples.first_text_ns.len(),
            errors: samples.errors,
            first_text: Summary::of(&mut samples.first_text_ns),
            gaps: Summary::of(&mut samples.gaps_ns),
            stalls: samples.stalls,
            overhead_header_ms: FloatSummary::of(&mut samples.overhead_ms),
            first_error: samples.first_error,
        }
    }
}

/// A translated streaming lane, beside the same-protocol proxy lane.
#[derive(Debug, Serialize)]
pub struct TranslatedStream {
    #[serde(flatten)]
    pub lane: StreamLane,
    pub added_first_text: Option<Added>,
    pub added_gap: Option<Added>,
    /// This lane's added TTFT p99 over the same-protocol lane's added TTFT p99.
    pub ratio_first_text_p99: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct StreamLanes {
    pub concurrency: usize,
    pub chunks: u32,
    pub chunk_interval_ms: f64,
    pub stall_threshold_ms: f64,
    pub direct: StreamLane,
    pub proxy: StreamLane,
    pub proxy_added_first_text: Option<Added>,
    pub proxy_added_gap: Option<Added>,
    pub translated: Vec<TranslatedStream>,
}

impl StreamLanes {
    pub fn new(
        settings: &Settings,
        concurrency: usize,
        direct: StreamLane,
        proxy: StreamLane,
        translated: Vec<StreamLane>,
    ) -> Self {
        let proxy_added_first_text = added(proxy.first_text.as_ref(), direct.first_text.as_ref());
        let translated = translated
            .into_iter()
            .map(|lane| {
                let added_first_text = added(lane.first_text.as_ref(), direct.first_text.as_ref());
                TranslatedStream {
                    added_gap: added(lane.gaps.as_ref(), direct.gaps.as_ref()),
                    ratio_first_text_p99: ratio_of_added(added_first_text, proxy_added_first_text),
                    added_first_text,
                    lane,
                }
            })
            .collect();
        Self {
            concurrency,
            chunks: settings.chunks,
            chunk_interval_ms: settings.chunk_interval.as_secs_f64() * 1e3,
            stall_threshold_ms: settings.stall_threshold().as_secs_f64() * 1e3,
            proxy_added_gap: added(proxy.gaps.as_ref(), direct.gaps.as_ref()),
            proxy_added_first_text,
            direct,
            proxy,
            translated,
        }
    }
}

/// Resident memory of the proxy process, in MiB.
#[derive(Debug, Serialize)]
pub struct MemoryReport {
    pub idle_mib: Option<f64>,
    /// Of `idle_mib`, the process's own memory (`RssAnon`) and the file-backed pages
    /// (`RssFile`, mostly the binary's code), where the kernel splits them.
    pub idle_anon_mib: Option<f64>,
    pub idle_file_mib: Option<f64>,
    /// Highest `VmRSS` sampled every 100 ms during the full-concurrency phases.
    pub peak_sampled_under_load_mib: Option<f64>,
    /// The kernel's high-water mark (`VmHWM`) at the end of the run.
    pub high_water_mib: Option<f64>,
    pub after_warmup_mib: Option<f64>,
    pub requests_at_warmup: u64,
    pub after_total_mib: Option<f64>,
    /// Of `after_total_mib`, the process's own memory (`RssAnon`).
    pub after_total_anon_mib: Option<f64>,
    pub requests_at_total: u64,
    /// `after_total - after_warmup`: anything well above noise is a leak.
    pub growth_mib: Option<f64>,
    pub soak: LoadLane,
}

pub struct MemoryReadings {
    pub idle: Option<Memory>,
    pub peak_sampled_kib: Option<u64>,
    pub after_warmup: Option<Memory>,
    pub requests_at_warmup: u64,
    pub after_total: Option<Memory>,
    pub requests_at_total: u64,
}

impl MemoryReport {
    pub fn new(readings: MemoryReadings, soak: LoadLane) -> Self {
        let rss = |memory: Option<Memory>| memory.map(|m| mib(m.rss_kib));
        let after_warmup_mib = rss(readings.after_warmup);
        let after_total_mib = rss(readings.after_total);
        Self {
            idle_mib: rss(readings.idle),
            idle_anon_mib: readings.idle.and_then(|m| m.anon_kib).map(mib),
            idle_file_mib: readings.idle.and_then(|m| m.file_kib).map(mib),
            peak_sampled_under_load_mib: readings.peak_sampled_kib.map(mib),
            high_water_mib: readings.after_total.map(|m| mib(m.high_water_kib)),
            after_warmup_mib,
            requests_at_warmup: readings.requests_at_warmup,
            after_total_mib,
            after_total_anon_mib: readings.after_total.and_then(|m| m.anon_kib).map(mib),
            requests_at_total: readings.requests_at_total,
            growth_mib: after_total_mib
                .zip(after_warmup_mib)
                .map(|(end, start)| end - start),
            soak,
        }
    }
}

/// One target from the issue, and whether this run met it (`None`: not measured).
#[derive(Debug, Serialize)]
pub struct TargetCheck {
    pub name: String,
    pub value: Option<f64>,
    pub unit: &'static str,
    pub limit: f64,
    /// `true` when the value must be at most the limit, `false` when at least.
    pub at_most: bool,
    pub pass: Option<bool>,
}

impl TargetCheck {
    fn new(
        name: String,
        value: Option<f64>,
        unit: &'static str,
        limit: f64,
        at_most: bool,
    ) -> Self {
        let pass = value.map(|v| if at_most { v <= limit } else { v >= limit });
        Self {
            name,
            value,
            unit,
            limit,
            at_most,
            pass,
        }
    }
}

/// A translated lane may add at most this multiple of the same-protocol lane's added p99.
const TRANSLATION_RATIO_LIMIT: f64 = 1.5;

/// Growth below this is allocator noise, not a leak.
const GROWTH_NOISE_MIB: f64 = 1.0;

impl Report {
    /// The targets, read off the measured figures.
    pub fn check_targets(&mut self) {
        let c = self.throughput.concurrency;
        let lanes = &self.non_streaming_c1;
        let streaming = &self.streaming_c1;
        let memory = self.memory.as_ref();
        // The performance issue's targets (issue 15).
        let mut targets = vec![
            TargetCheck::new(
                "added p50, non-streaming, c=1".into(),
                lanes.proxy_added.map(|a| a.p50_us),
                "us",
                50.0,
                true,
            ),
            TargetCheck::new(
                "added p99, non-streaming, c=1".into(),
                lanes.proxy_added.map(|a| a.p99_us),
                "us",
                100.0,
                true,
            ),
            TargetCheck::new(
                "added time-to-first-token p50, streaming, c=1".into(),
                streaming.proxy_added_first_text.map(|a| a.p50_us),
                "us",
                150.0,
                true,
            ),
            TargetCheck::new(
                "added time-to-first-token p99, streaming, c=1".into(),
                streaming.proxy_added_first_text.map(|a| a.p99_us),
                "us",
                250.0,
                true,
            ),
            TargetCheck::new(
                format!("added time-to-first-token p50, {c} streams at once"),
                self.streaming_concurrent
                    .proxy_added_first_text
                    .map(|a| a.p50_us),
                "us",
                500.0,
                true,
            ),
        ];
        // After the two latency targets, each translated lane's ratios, in lane order.
        targets.extend(
            lanes
                .translated
                .iter()
                .map(|t| {
                    TargetCheck::new(
                        format!(
                            "{} / same-protocol added p99, non-streaming",
                            t.lane.api.label()
                        ),
                        t.ratio_p99,
                        "x",
                        TRANSLATION_RATIO_LIMIT,
                        true,
                    )
                })
                .chain(streaming.translated.iter().map(|t| {
                    TargetCheck::new(
                        format!("{} / same-protocol added TTFT p99", t.lane.api.label()),
                        t.ratio_first_text_p99,
                        "x",
                        TRANSLATION_RATIO_LIMIT,
                        true,
                    )
                })),
        );
        targets.extend([
            TargetCheck::new(
                format!("throughput through proxy / direct, c={c}"),
                self.throughput.ratio,
                "x",
                0.45,
                false,
            ),
            TargetCheck::new(
                format!("proxy CPU per request / the mock's, c={c}"),
                self.throughput.cpu.proxy_over_mock,
                "x",
                2.0,
                true,
            ),
            TargetCheck::new(
                "resident memory idle".into(),
                memory.and_then(|m| m.idle_mib),
                "MiB",
                10.0,
                true,
            ),
            TargetCheck::new(
                "resident memory after load".into(),
                memory.and_then(|m| m.after_total_mib),
                "MiB",
                40.0,
                true,
            ),
            TargetCheck::new(
                "resident memory growth after warm-up".into(),
                memory.and_then(|m| m.growth_mib),
                "MiB",
                GROWTH_NOISE_MIB,
                true,
            ),
        ]);
        self.targets = targets;
    }
}

fn added(measured: Option<&Summary>, baseline: Option<&Summary>) -> Option<Added> {
    Some(measured?.minus(baseline?))
}

/// Undefined when the same-protocol overhead is not positive (noise swamped it).
fn ratio_of_added(translated: Option<Added>, same_protocol: Option<Added>) -> Option<f64> {
    let (translated, same_protocol) = (translated?, same_protocol?);
    (same_protocol.p99_us > 0.0).then(|| translated.p99_us / same_protocol.p99_us)
}

fn ratio_of_added_p50(lane: Option<Added>, same_protocol: Option<Added>) -> Option<f64> {
    let (lane, same_protocol) = (lane?, same_protocol?);
    (same_protocol.p50_us > 0.0).then(|| lane.p50_us / same_protocol.p50_us)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
