//! Load patterns — one request at a time across interleaved lanes, a closed loop at fixed
//! concurrency, simultaneous streams — each bounded in count and time, returning raw samples.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::api::ClientApi;
use crate::client::{Conn, Exchange, StreamRun, Target};
use crate::error::BenchError;

/// Raw figures of non-streaming requests.
#[derive(Debug, Default)]
pub struct Samples {
    pub latencies_ns: Vec<u64>,
    pub overhead_ms: Vec<f64>,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl Samples {
    fn record(&mut self, outcome: Result<Exchange, BenchError>) {
        match outcome {
            Ok(exchange) => {
                self.latencies_ns.push(nanos(exchange.latency));
                self.overhead_ms.extend(exchange.overhead_ms);
            }
            Err(error) => self.fail(&error),
        }
    }

    fn fail(&mut self, error: &BenchError) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| error.to_string());
    }

    fn merge(&mut self, other: Self) {
        self.latencies_ns.extend(other.latencies_ns);
        self.overhead_ms.extend(other.overhead_ms);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    pub fn attempts(&self) -> u64 {
        self.latencies_ns.len() as u64 + self.errors
    }
}

/// Raw figures of streams: time to first text event, gaps between text events, stalls.
#[derive(Debug, Default)]
pub struct StreamSamples {
    pub first_text_ns: Vec<u64>,
    pub gaps_ns: Vec<u64>,
    pub stalls: u64,
    pub overhead_ms: Vec<f64>,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl StreamSamples {
    fn record(&mut self, outcome: Result<StreamRun, BenchError>, stall_threshold: Duration) {
        match outcome {
            Ok(run) => {
                self.first_text_ns.push(nanos(run.first_text));
                self.stalls += run
                    .gaps
                    .iter()
                    .filter(|&&gap| gap > stall_threshold)
                    .count() as u64;
                self.gaps_ns.extend(run.gaps.into_iter().map(nanos));
                self.overhead_ms.extend(run.overhead_ms);
            }
            Err(error) => self.fail(&error),
        }
    }

    fn fail(&mut self, error: &BenchError) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| error.to_string());
    }

    pub fn merge(&mut self, other: Self) {
        self.first_text_ns.extend(other.first_text_ns);
        self.gaps_ns.extend(other.gaps_ns);
        self.stalls += other.stalls;
        self.overhead_ms.extend(other.overhead_ms);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    pub fn attempts(&self) -> u64 {
        self.first_text_ns.len() as u64 + self.errors
    }
}

/// What a stream is expected to look like, and how long to wait for one.
#[derive(Debug, Clone, Copy)]
pub struct StreamPlan {
    pub text_events: u32,
    pub stall_threshold: Duration,
    pub timeout: Duration,
}

/// One client API over one kept-alive connection, with what it has measured so far.
pub struct Lane {
    conn: Conn,
    pub api: ClientApi,
    pub requests: Samples,
    pub streams: StreamSamples,
}

impl Lane {
    pub fn new(target: Target, api: ClientApi) -> Self {
        Self {
            conn: Conn::new(target),
            api,
            requests: Samples::default(),
            streams: StreamSamples::default(),
        }
    }
}

/// `rounds` requests per lane, one in flight at a time, rotating over the lanes so that every
/// lane sees the same moments of a noisy machine. Returns the rounds completed within `max`.
///
/// Each round takes the lanes in a fresh order ([`round_order`]): in a fixed order a lane
/// always came right after the same one, and the first proxy lane after a direct one found
/// the proxy idle and its thread asleep while the next proxy lanes found it warm, which
/// skewed the comparison between the proxy lanes by several percent.
pub async fn interleaved_requests(
    lanes: &mut [Lane],
    rounds: u64,
    max: Duration,
    timeout: Duration,
) -> u64 {
    spaced_requests(lanes, rounds, Duration::ZERO, max, timeout).await
}

/// Like [`interleaved_requests`], with `pause` before every request (none when zero): each
/// one finds the target idle, as the requests of an agent (seconds apart) do. Returns the
/// rounds completed within `max`.
pub async fn spaced_requests(
    lanes: &mut [Lane],
    rounds: u64,
    pause: Duration,
    max: Duration,
    timeout: Duration,
) -> u64 {
    let deadline = Instant::now() + max;
    for round in 0..rounds {
        if Instant::now() >= deadline {
            return round;
        }
        for i in round_order(lanes.len(), round) {
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            let lane = &mut lanes[i];
            let outcome = lane.conn.exchange(lane.api, timeout).await;
            lane.requests.record(outcome);
        }
    }
    rounds
}

/// Round `round`'s order of `lanes` lanes: a shuffle seeded by the round, so that over many
/// rounds each lane follows each other one about equally often, and a run repeats exactly.
fn round_order(lanes: usize, round: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..lanes).collect();
    fastrand::Rng::with_seed(round).shuffle(&mut order);
    order
}

/// Like [`interleaved_requests`], one stream at a time.
pub async fn interleaved_streams(
    lanes: &mut [Lane],
    rounds: u64,
    max: Duration,
    plan: StreamPlan,
) -> u64 {
    let deadline = Instant::now() + max;
    for round in 0..rounds {
        if Instant::now() >= deadline {
            return round;
        }
        for i in round_order(lanes.len(), round) {
            let lane = &mut lanes[i];
            let outcome = lane
                .conn
                .stream(lane.api, plan.text_events, plan.timeout)
                .await;
            lane.streams.record(outcome, plan.stall_threshold);
        }
    }
    rounds
}

/// A closed loop: `concurrency` connections, each sending its next request as soon as the last
/// one finished, until `duration` passes or `max_requests` have been sent.
#[derive(Debug, Clone)]
pub struct ClosedLoop {
    pub target: Target,
    /// Connection `i` speaks `apis[i % apis.len()]`.
    pub apis: Vec<ClientApi>,
    pub concurrency: usize,
    pub duration: Duration,
    pub max_requests: u64,
    pub timeout: Duration,
}

#[derive(Debug)]
pub struct LoadRun {
    pub samples: Samples,
    /// From the first request to the last response.
    pub elapsed: Duration,
}

impl LoadRun {
    pub fn per_second(&self) -> f64 {
        self.samples.latencies_ns.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl ClosedLoop {
    pub async fn run(&self) -> LoadRun {
        let mut samples = Samples::default();
        let conns = connect_all(&self.target, self.concurrency, &mut samples).await;
        let issued = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let deadline = start + self.duration;
        let mut workers = JoinSet::new();
        for (index, mut conn) in conns.into_iter().enumerate() {
            let api = self.apis.get(index % self.apis.len().max(1)).copied();
            let (issued, max_requests, timeout) =
                (Arc::clone(&issued), self.max_requests, self.timeout);
            workers.spawn(async move {
                let mut mine = Samples::default();
                let Some(api) = api else {
                    return (mine, Instant::now());
                };
                while Instant::now() < deadline
                    && issued.fetch_add(1, Ordering::Relaxed) < max_requests
                {
                    mine.record(conn.exchange(api, timeout).await);
                }
                (mine, Instant::now())
            });
        }
        let mut last_response = start;
        while let Some(joined) = workers.join_next().await {
            match joined {
                Ok((mine, finished)) => {
                    samples.merge(mine);
                    last_response = last_response.max(finished);
                }
                Err(error) => {
                    samples.fail(&BenchError::Setting(format!("load task failed: {error}")))
                }
            }
        }
        LoadRun {
            samples,
            elapsed: last_response - start,
        }
    }
}

/// `concurrency` streams started together, one per connection.
pub async fn simultaneous_streams(
    target: &Target,
    api: ClientApi,
    concurrency: usize,
    plan: StreamPlan,
) -> StreamSamples {
    let mut connect_errors = Samples::default();
    let conns = connect_all(target, concurrency, &mut connect_errors).await;
    let mut streams = StreamSamples {
        errors: connect_errors.errors,
        first_error: connect_errors.first_error,
        ..StreamSamples::default()
    };
    let mut tasks = JoinSet::new();
    for mut conn in conns {
        tasks.spawn(async move {
            let mut mine = StreamSamples::default();
            let outcome = conn.stream(api, plan.text_events, plan.timeout).await;
            mine.record(outcome, plan.stall_threshold);
            mine
        });
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(mine) => streams.merge(mine),
            Err(error) => {
                streams.fail(&BenchError::Setting(format!("stream task failed: {error}")))
            }
        }
    }
    streams
}

/// Opens the connections before the clock starts; a failure counts as an error.
async fn connect_all(target: &Target, count: usize, samples: &mut Samples) -> Vec<Conn> {
    let mut conns = Vec::with_capacity(count);
    for _ in 0..count {
        let mut conn = Conn::new(target.clone());
        match conn.connect().await {
            Ok(()) => conns.push(conn),
            Err(error) => samples.fail(&error),
        }
    }
    conns
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_lane_follows_each_other_lane_about_equally_often() {
        const LANES: usize = 6;
        const ROUNDS: u64 = 6000;
        let mut follows = [[0u32; LANES]; LANES];
        let mut previous = None;
        for round in 0..ROUNDS {
            let order = round_order(LANES, round);
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(
                sorted,
                (0..LANES).collect::<Vec<_>>(),
                "every lane once a round"
            );
            for lane in order {
                if let Some(before) = previous {
                    follows[lane][before] += 1;
                }
                previous = Some(lane);
            }
        }
        // 36,000 requests: each of the 30 ordered pairs about 1,200 times (a fixed order gave
        // 6,000 to six pairs and none to the rest).
        for (lane, counts) in follows.iter().enumerate() {
            for (before, &n) in counts.iter().enumerate() {
                if lane != before {
                    assert!((900..1500).contains(&n), "{lane} after {before}: {n} times");
                }
            }
        }
        assert_eq!(
            round_order(LANES, 7),
            round_order(LANES, 7),
            "a run repeats"
        );
        assert!(round_order(0, 3).is_empty());
    }
}
