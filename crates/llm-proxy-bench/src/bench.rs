//! Runs the phases in order against the direct and proxy targets and assembles the report.
//!
//! Order matters for the memory figures: every phase runs before the soak, whose first leg ends
//! the warm-up; its second leg makes up the request total and must not grow resident memory.

use std::time::Duration;

use crate::api::ClientApi;
use crate::client::Target;
use crate::load::{ClosedLoop, Lane, Samples, StreamPlan, StreamSamples};
use crate::report::{
    CpuPerRequest, LatencyLane, LoadLane, Machine, MemoryReadings, MemoryReport, Report,
    RequestLanes, SpacedLanes, StreamLane, StreamLanes, Throughput,
};
use crate::rss::{self, PeakSampler};
use crate::settings::Settings;

/// What to measure.
pub struct Endpoints {
    pub direct: Target,
    pub proxy: Target,
    /// The proxy's process id, when it is our child (memory figures need it).
    pub proxy_pid: Option<u32>,
    pub proxy_label: String,
    /// The in-process mock's thread, for its CPU time.
    pub mock_thread: Option<u32>,
}

const SAMPLE_PERIOD: Duration = Duration::from_millis(100);
/// Time for the proxy to settle before a memory reading.
const SETTLE: Duration = Duration::from_millis(300);
/// A closed loop bounded by time still needs a bound on count.
const MAX_LOOP_REQUESTS: u64 = 50_000_000;

#[expect(
    clippy::print_stderr,
    reason = "progress lines for a long-running CLI benchmark; results go to stdout"
)]
pub fn progress(message: &str) {
    eprintln!("[bench] {message}");
}

pub async fn run(settings: &Settings, endpoints: Endpoints) -> Report {
    let Endpoints {
        direct,
        proxy,
        proxy_pid,
        proxy_label,
        mock_thread,
    } = endpoints;
    let mock_cpu = || mock_thread.and_then(crate::cpu::thread);
    let proxy_cpu = || proxy_pid.and_then(crate::cpu::process);
    let plan = StreamPlan {
        text_events: settings.chunks,
        stall_threshold: settings.stall_threshold(),
        timeout: settings.stream_timeout(),
    };
    let mut proxied = 0u64;
    let mut peak = Peak::new(proxy_pid);

    tokio::time::sleep(SETTLE).await;
    let idle = proxy_pid.and_then(rss::read);

    // The proxy lanes first, then each translated protocol called directly on the mock (its
    // own baseline: a translated lane's answer differs in size from the chat lane's).
    let mut lanes = [
        Lane::new(direct.clone(), ClientApi::OpenAi),
        Lane::new(proxy.clone(), ClientApi::OpenAi),
        Lane::new(proxy.clone(), ClientApi::Anthropic),
        Lane::new(proxy.clone(), ClientApi::Responses),
        Lane::new(direct.clone(), ClientApi::Anthropic),
        Lane::new(direct.clone(), ClientApi::Responses),
    ];
    progress(&format!("warm-up: {} requests per lane", settings.warmup));
    crate::load::interleaved_requests(
        &mut lanes,
        settings.warmup,
        settings.phase_max,
        settings.request_timeout,
    )
    .await;
    for lane in &mut lanes[1..4] {
        proxied += std::mem::take(&mut lane.requests).attempts();
    }
    for i in [0, 4, 5] {
        lanes[i].requests = Samples::default();
    }

    progress(&format!(
        "non-streaming, concurrency 1: {} requests per lane",
        settings.requests
    ));
    let rounds = crate::load::interleaved_requests(
        &mut lanes,
        settings.requests,
        settings.phase_max,
        settings.request_timeout,
    )
    .await;
    let samples = lanes
        .each_mut()
        .map(|lane| (lane.api, std::mem::take(&mut lane.requests)));
    proxied += samples[1..4].iter().map(|(_, s)| s.attempts()).sum::<u64>();
    let [
        direct_c1,
        proxy_c1,
        anthropic_c1,
        responses_c1,
        direct_anthropic,
        direct_responses,
    ] = samples.map(|(api, samples)| LatencyLane::new(api, samples));
    let non_streaming_c1 = RequestLanes::new(
        rounds,
        direct_c1,
        proxy_c1,
        vec![
            (anthropic_c1, direct_anthropic),
            (responses_c1, direct_responses),
        ],
    );

    let spaced_c1 = if settings.spaced_requests == 0 {
        None
    } else {
        progress(&format!(
            "non-streaming, concurrency 1, {} ms before each request: {} requests per lane",
            settings.spaced_pause.as_millis(),
            settings.spaced_requests
        ));
        let spaced = &mut lanes[..2];
        let rounds = crate::load::spaced_requests(
            spaced,
            settings.spaced_requests,
            settings.spaced_pause,
            settings.phase_max,
            settings.request_timeout,
        )
        .await;
        let [direct_samples, proxy_samples] =
            [0, 1].map(|i| std::mem::take(&mut spaced[i].requests));
        proxied += proxy_samples.attempts();
        let [direct_lane, proxy_lane] = [direct_samples, proxy_samples]
            .map(|samples| LatencyLane::new(ClientApi::OpenAi, samples));
        Some(SpacedLanes::new(
            settings.spaced_pause,
            rounds,
            direct_lane,
            proxy_lane,
        ))
    };

    let closed_loop = |target: &Target, apis: Vec<ClientApi>, duration, max_requests| ClosedLoop {
        target: target.clone(),
        apis,
        concurrency: settings.concurrency,
        duration,
        max_requests,
        timeout: settings.request_timeout,
    };
    progress(&format!(
        "throughput, concurrency {}: {:.1} s direct, then through the proxy",
        settings.concurrency,
        settings.duration.as_secs_f64()
    ));
    let mock_before_direct = mock_cpu();
    let direct_run = closed_loop(
        &direct,
        vec![ClientApi::OpenAi],
        settings.duration,
        MAX_LOOP_REQUESTS,
    )
    .run()
    .await;
    let mock_after_direct = mock_cpu();
    let sampler = peak.start(settings.duration);
    let (proxy_before, mock_before_proxy) = (proxy_cpu(), mock_cpu());
    let proxy_run = closed_loop(
        &proxy,
        vec![ClientApi::OpenAi],
        settings.duration,
        MAX_LOOP_REQUESTS,
    )
    .run()
    .await;
    let (proxy_after, mock_after_proxy) = (proxy_cpu(), mock_cpu());
    peak.finish(sampler).await;
    proxied += proxy_run.samples.attempts();
    let (direct_ok, proxy_ok) = (
        direct_run.samples.latencies_ns.len(),
        proxy_run.samples.latencies_ns.len(),
    );
    let cpu = CpuPerRequest::new(
        crate::cpu::per_request_ms(mock_before_direct, mock_after_direct, direct_ok),
        crate::cpu::per_request_ms(mock_before_proxy, mock_after_proxy, proxy_ok),
        crate::cpu::per_request_ms(proxy_before, proxy_after, proxy_ok),
    );
    let throughput = Throughput::new(
        settings.concurrency,
        LoadLane::new(direct_run),
        LoadLane::new(proxy_run),
        cpu,
    );

    progress(&format!(
        "streaming, concurrency 1: {} streams per lane of {} chunks x {} ms",
        settings.streams,
        settings.chunks,
        settings.chunk_interval.as_millis()
    ));
    // Streams: the proxy lanes and the direct OpenAI one (the translated protocols' own
    // baselines are for the non-streaming figures).
    let stream_lanes = &mut lanes[..4];
    let lanes_max = settings.paced_phase_max(settings.streams * stream_lanes.len() as u64);
    crate::load::interleaved_streams(stream_lanes, settings.streams, lanes_max, plan).await;
    let [direct_lane, proxy_lane, anthropic_lane, responses_lane, ..] = &mut lanes;
    let samples = [direct_lane, proxy_lane, anthropic_lane, responses_lane]
        .map(|lane| (lane.api, std::mem::take(&mut lane.streams)));
    proxied += samples[1..].iter().map(|(_, s)| s.attempts()).sum::<u64>();
    let [direct_s1, proxy_s1, translated_s1 @ ..] =
        samples.map(|(api, samples)| StreamLane::new(api, samples));
    let streaming_c1 = StreamLanes::new(settings, 1, direct_s1, proxy_s1, translated_s1.into());

    progress(&format!(
        "streaming, concurrency {}: {} round(s), direct then through the proxy",
        settings.concurrency, settings.stream_rounds
    ));
    let (mut direct_sc, mut proxy_sc) = (StreamSamples::default(), StreamSamples::default());
    let phase_end =
        tokio::time::Instant::now() + settings.paced_phase_max(settings.stream_rounds * 2);
    for round in 0..settings.stream_rounds {
        if tokio::time::Instant::now() >= phase_end {
            break;
        }
        let streams = |target| {
            crate::load::simultaneous_streams(target, ClientApi::OpenAi, settings.concurrency, plan)
        };
        // Alternate which target goes first, so neither always meets a colder machine.
        if round % 2 == 1 {
            let sampler = peak.start(plan.timeout);
            proxy_sc.merge(streams(&proxy).await);
            peak.finish(sampler).await;
        }
        direct_sc.merge(streams(&direct).await);
        if round % 2 == 0 {
            let sampler = peak.start(plan.timeout);
            proxy_sc.merge(streams(&proxy).await);
            peak.finish(sampler).await;
        }
    }
    proxied += proxy_sc.attempts();
    let streaming_concurrent = StreamLanes::new(
        settings,
        settings.concurrency,
        StreamLane::new(ClientApi::OpenAi, direct_sc),
        StreamLane::new(ClientApi::OpenAi, proxy_sc),
        Vec::new(),
    );

    let memory = match proxy_pid {
        None => None,
        Some(pid) => Some(soak(settings, &proxy, pid, idle, &mut proxied, &mut peak).await),
    };

    let mut report = Report {
        settings: settings.clone(),
        machine: Machine {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            proxy: proxy_label,
        },
        non_streaming_c1,
        spaced_c1,
        throughput,
        streaming_c1,
        streaming_concurrent,
        memory,
        targets: Vec::new(),
    };
    report.check_targets();
    report
}

/// The soak behind the memory figures, in two legs of the same mixed load (half the
/// connections OpenAI, half Anthropic): the first finishes the warm-up, so that every path has
/// run at full concurrency before the "after warm-up" reading; the second makes up the request
/// total and must not grow resident memory.
async fn soak(
    settings: &Settings,
    proxy: &Target,
    pid: u32,
    idle: Option<rss::Memory>,
    proxied: &mut u64,
    peak: &mut Peak,
) -> MemoryReport {
    let mixed = |max_requests| ClosedLoop {
        target: proxy.clone(),
        apis: vec![ClientApi::OpenAi, ClientApi::Anthropic],
        concurrency: settings.concurrency,
        duration: settings.soak_max,
        max_requests,
        timeout: settings.request_timeout,
    };
    let warmup_requests = (settings.total_requests / 10).max(1);
    progress(&format!(
        "soak warm-up, concurrency {}: {warmup_requests} requests, OpenAI and Anthropic",
        settings.concurrency
    ));
    let sampler = peak.start(settings.soak_max);
    let warmup = mixed(warmup_requests).run().await;
    peak.finish(sampler).await;
    *proxied += warmup.samples.attempts();
    tokio::time::sleep(SETTLE).await;
    let after_warmup = rss::read(pid);
    let requests_at_warmup = *proxied;

    // At least a fifth of the total, so that growth is measured over a real span even when the
    // earlier phases already made up the total.
    let soak_requests = settings
        .total_requests
        .saturating_sub(*proxied)
        .max(settings.total_requests / 5);
    progress(&format!(
        "soak, concurrency {}: {soak_requests} requests (at most {:.0} s)",
        settings.concurrency,
        settings.soak_max.as_secs_f64()
    ));
    let sampler = peak.start(settings.soak_max);
    let soak = mixed(soak_requests).run().await;
    peak.finish(sampler).await;
    *proxied += soak.samples.attempts();
    tokio::time::sleep(SETTLE).await;
    let readings = MemoryReadings {
        idle,
        peak_sampled_kib: peak.kib,
        after_warmup,
        requests_at_warmup,
        after_total: rss::read(pid),
        requests_at_total: *proxied,
    };
    MemoryReport::new(readings, LoadLane::new(soak))
}

/// Highest resident memory sampled across the full-concurrency phases.
struct Peak {
    pid: Option<u32>,
    kib: Option<u64>,
}

impl Peak {
    fn new(pid: Option<u32>) -> Self {
        Self { pid, kib: None }
    }

    /// Sampling stops at `finish`, or after `expected` plus a margin at most.
    fn start(&self, expected: Duration) -> Option<PeakSampler> {
        let max_samples =
            (expected + Duration::from_secs(30)).as_millis() / SAMPLE_PERIOD.as_millis();
        let max_samples = u64::try_from(max_samples).unwrap_or(u64::MAX);
        self.pid
            .map(|pid| PeakSampler::start(pid, SAMPLE_PERIOD, max_samples))
    }

    async fn finish(&mut self, sampler: Option<PeakSampler>) {
        if let Some(sampler) = sampler {
            self.kib = self.kib.max(sampler.finish().await);
        }
    }
}
