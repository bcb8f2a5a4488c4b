//! Command-line arguments, and the validated settings a run uses (`--quick` picks the defaults).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Serialize;

use crate::error::BenchError;

/// Measures llm-proxy's added latency, throughput and memory against a fast in-process mock
/// upstream: every figure is taken direct-to-mock and through the proxy in the same run.
#[derive(Debug, Parser)]
#[command(name = "llm-proxy-bench", version)]
pub struct Args {
    /// llm-proxy binary to spawn [default: `llm-proxy` next to this executable]
    #[arg(long, value_name = "PATH")]
    pub proxy_bin: Option<PathBuf>,
    /// Measure an already running proxy at this loopback URL instead of spawning one (no memory
    /// figures). `mock` measures the mock against itself: added latency near zero, a sanity check.
    #[arg(long, value_name = "URL", conflicts_with = "proxy_bin")]
    pub proxy_url: Option<String>,
    /// Where to write the JSON results.
    #[arg(long, value_name = "FILE", default_value = "bench-results.json")]
    pub out: PathBuf,
    /// Small counts for a smoke test (about 10 s).
    #[arg(long)]
    pub quick: bool,
    /// Non-streaming requests per lane at concurrency 1 [default: 5000, quick: 500]
    #[arg(long)]
    pub requests: Option<u64>,
    /// Warm-up requests per lane before measuring [default: 500, quick: 100]
    #[arg(long)]
    pub warmup: Option<u64>,
    /// Connections for the throughput, concurrent-streaming and soak phases.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Seconds of each throughput run (direct, then through the proxy) [default: 5, quick: 1]
    #[arg(long)]
    pub duration_secs: Option<f64>,
    /// Spaced requests per lane: chat requests at concurrency 1 with a pause before each, so
    /// each finds the proxy idle and its caches cold, as an agent's requests do [default: 100,
    /// quick: 20; 0 skips the phase]
    #[arg(long)]
    pub spaced_requests: Option<u64>,
    /// The pause before each spaced request, in milliseconds (1..=1000).
    #[arg(long, default_value_t = 20)]
    pub spaced_pause_ms: u64,
    /// Streams per lane at concurrency 1 [default: 20, quick: 3]
    #[arg(long)]
    pub streams: Option<u64>,
    /// Rounds of `concurrency` simultaneous streams per target [default: 2, quick: 1]
    #[arg(long)]
    pub stream_rounds: Option<u64>,
    /// Text chunks per mock stream [default: 64, quick: 16]
    #[arg(long)]
    pub chunks: Option<u32>,
    /// Pause between the mock's stream chunks, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub chunk_interval_ms: u64,
    /// Requests through the proxy, all phases counted, before the final memory reading; a soak
    /// at full concurrency makes up the difference [default: 100000, quick: 10000]
    #[arg(long)]
    pub total_requests: Option<u64>,
    /// Upper bound on the soak's duration, in seconds [default: 60, quick: 5]
    #[arg(long)]
    pub soak_max_secs: Option<f64>,
    /// Upper bound on any count-based phase, in seconds, beyond the paced length of its streams.
    #[arg(long, default_value_t = 60.0)]
    pub phase_max_secs: f64,
    /// Port for the in-process mock upstream (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub mock_port: u16,
    /// What to run: the overhead benchmark, the big-bodies memory measurement, or the soak.
    #[arg(long, value_enum, default_value_t = Mode::Overhead)]
    pub mode: Mode,
    /// big-bodies: also measure this binary first (e.g. a build from before a change), in the
    /// same run.
    #[arg(long, value_name = "PATH")]
    pub baseline_bin: Option<PathBuf>,
    /// big-bodies: size of the single body, MiB.
    #[arg(long, default_value_t = 10)]
    pub single_mib: usize,
    /// big-bodies: bodies sent at once.
    #[arg(long, default_value_t = 8)]
    pub concurrent_bodies: usize,
    /// big-bodies: size of each body sent at once, MiB.
    #[arg(long, default_value_t = 25)]
    pub body_mib: usize,
    /// overhead: print this run's headline figures beside those of an earlier results file.
    #[arg(long, value_name = "OLD.json")]
    pub compare: Option<PathBuf>,
    /// overhead: run the whole benchmark this many times (a fresh proxy each time) and report
    /// each headline figure's median and spread; `--out` gets the last run's results and
    /// `<out>.summary.json` the medians.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub runs: u32,
    /// overhead: also measure, in the same run, the floor: a forwarder on llm-proxy's own stack
    /// (a thread per core, hyper's HTTP/1 server and pooled client) that passes requests and
    /// responses through untouched, and print llm-proxy's headline figures beside its. Each run
    /// measures both, alternating which goes first; `<out>.floor.json` gets the forwarder's
    /// results.
    #[arg(long)]
    pub floor: bool,
    /// Run as `--floor`'s forwarder, forwarding to this loopback address (the bench starts it).
    #[arg(long, value_name = "ADDR", hide = true)]
    pub forward_to: Option<SocketAddr>,
}

/// Which measurement a run makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Added latency, throughput, streaming and memory against a direct baseline.
    Overhead,
    /// Resident memory while large many-message bodies are parsed, alone and concurrently.
    BigBodies,
    /// A long mixed run (streams, upstream failures, client disconnects) reporting resident
    /// memory and open file descriptors at its start and end.
    Soak,
}

/// Which proxy to measure.
#[derive(Debug, Clone)]
pub enum ProxySource {
    Spawn(PathBuf),
    Running(SocketAddr),
    /// The mock itself, as a no-op "proxy".
    Mock,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    #[serde(skip)]
    pub proxy: ProxySource,
    #[serde(skip)]
    pub out: PathBuf,
    pub quick: bool,
    pub requests: u64,
    pub warmup: u64,
    pub spaced_requests: u64,
    #[serde(rename = "spaced_pause_secs", serialize_with = "as_secs")]
    pub spaced_pause: Duration,
    pub concurrency: usize,
    #[serde(rename = "duration_secs", serialize_with = "as_secs")]
    pub duration: Duration,
    pub streams: u64,
    pub stream_rounds: u64,
    pub chunks: u32,
    #[serde(rename = "chunk_interval_secs", serialize_with = "as_secs")]
    pub chunk_interval: Duration,
    pub total_requests: u64,
    #[serde(rename = "soak_max_secs", serialize_with = "as_secs")]
    pub soak_max: Duration,
    #[serde(rename = "phase_max_secs", serialize_with = "as_secs")]
    pub phase_max: Duration,
    pub mock_port: u16,
    pub mode: Mode,
    #[serde(skip)]
    pub baseline_bin: Option<PathBuf>,
    #[serde(skip)]
    pub big_bodies: crate::big_bodies::Plan,
    /// Timeout of one non-streaming request.
    #[serde(rename = "request_timeout_secs", serialize_with = "as_secs")]
    pub request_timeout: Duration,
    /// An earlier results file to compare with.
    #[serde(skip)]
    pub compare: Option<PathBuf>,
    /// Whole runs to make (medians reported when more than one).
    pub runs: u32,
    /// Whether each run also measures the floor forwarder.
    pub floor: bool,
}

impl Settings {
    pub fn from_args(args: Args) -> Result<Self, BenchError> {
        let quick = args.quick;
        let pick = |value: Option<u64>, full: u64, smoke: u64| {
            value.unwrap_or(if quick { smoke } else { full })
        };
        let proxy = match (args.proxy_url.as_deref(), args.proxy_bin) {
            (Some("mock"), _) => ProxySource::Mock,
            (Some(url), _) => ProxySource::Running(loopback_url(url)?),
            (None, Some(path)) => ProxySource::Spawn(path),
            (None, None) => ProxySource::Spawn(crate::proxy_process::default_binary()?),
        };
        let settings = Self {
            proxy,
            out: args.out,
            quick,
            requests: pick(args.requests, 5_000, 500),
            warmup: pick(args.warmup, 500, 100),
            spaced_requests: pick(args.spaced_requests, 100, 20),
            spaced_pause: Duration::from_millis(args.spaced_pause_ms),
            concurrency: args.concurrency,
            duration: seconds(
                "--duration-secs",
                args.duration_secs.unwrap_or(if quick { 1.0 } else { 5.0 }),
            )?,
            streams: pick(args.streams, 20, 3),
            stream_rounds: pick(args.stream_rounds, 2, 1),
            chunks: args.chunks.unwrap_or(if quick { 16 } else { 64 }),
            chunk_interval: Duration::from_millis(args.chunk_interval_ms),
            total_requests: pick(args.total_requests, 100_000, 10_000),
            soak_max: seconds(
                "--soak-max-secs",
                args.soak_max_secs.unwrap_or(if quick { 5.0 } else { 60.0 }),
            )?,
            phase_max: seconds("--phase-max-secs", args.phase_max_secs)?,
            mock_port: args.mock_port,
            mode: args.mode,
            baseline_bin: args.baseline_bin,
            big_bodies: crate::big_bodies::Plan {
                single_mib: args.single_mib,
                concurrent: args.concurrent_bodies,
                concurrent_mib: args.body_mib,
            },
            request_timeout: Duration::from_secs(10),
            compare: args.compare,
            runs: args.runs,
            floor: args.floor,
        };
        if !(1..=1024).contains(&settings.concurrency) {
            return Err(BenchError::Setting("--concurrency must be 1..=1024".into()));
        }
        if !(1..=64).contains(&settings.big_bodies.concurrent)
            || !(1..=1024).contains(&settings.big_bodies.concurrent_mib)
            || !(1..=1024).contains(&settings.big_bodies.single_mib)
        {
            return Err(BenchError::Setting(
                "--concurrent-bodies must be 1..=64, --body-mib and --single-mib 1..=1024".into(),
            ));
        }
        if settings.floor && settings.mode != Mode::Overhead {
            return Err(BenchError::Setting(
                "--floor is a figure of the overhead mode; leave it out of --mode big-bodies and soak"
                    .into(),
            ));
        }
        if !(1..=1000).contains(&args.spaced_pause_ms) {
            return Err(BenchError::Setting(
                "--spaced-pause-ms must be 1..=1000".into(),
            ));
        }
        if settings.chunks < 2 {
            return Err(BenchError::Setting(
                "--chunks must be at least 2 (gaps need two chunks)".into(),
            ));
        }
        if settings.chunk_interval > Duration::from_secs(1) {
            return Err(BenchError::Setting(
                "--chunk-interval-ms must be at most 1000".into(),
            ));
        }
        Ok(settings)
    }

    /// A gap longer than this counts as a stall: twice the pacing plus 10 ms of slack.
    pub fn stall_threshold(&self) -> Duration {
        self.chunk_interval * 2 + Duration::from_millis(10)
    }

    /// Time bound of a phase that runs `streams` paced streams one after another: their paced
    /// length plus `phase_max` of slack.
    pub fn paced_phase_max(&self, streams: u64) -> Duration {
        let paced = self.chunk_interval * self.chunks;
        let streams = u32::try_from(streams).unwrap_or(u32::MAX);
        let paced_total = paced.checked_mul(streams).unwrap_or(Duration::MAX);
        self.phase_max.saturating_add(paced_total)
    }

    /// Timeout of one whole stream: its paced length plus 10 s.
    pub fn stream_timeout(&self) -> Duration {
        self.chunk_interval * self.chunks + Duration::from_secs(10)
    }
}

pub(crate) fn as_secs<S: serde::Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

fn seconds(flag: &str, value: f64) -> Result<Duration, BenchError> {
    match Duration::try_from_secs_f64(value) {
        Ok(d) if value > 0.0 && value <= 3_600.0 => Ok(d),
        _ => Err(BenchError::Setting(format!("{flag} must be in (0, 3600]"))),
    }
}

/// `http://HOST:PORT[/]` where HOST is on the loopback interface.
fn loopback_url(url: &str) -> Result<SocketAddr, BenchError> {
    let invalid = |why: &str| BenchError::Setting(format!("--proxy-url {url}: {why}"));
    let authority = url
        .strip_prefix("http://")
        .ok_or_else(|| invalid("expected http://HOST:PORT"))?
        .trim_end_matches('/');
    if authority.contains('/') {
        return Err(invalid("a path prefix is not supported"));
    }
    let addr = if let Some(port) = authority.strip_prefix("localhost:") {
        let port = port.parse().map_err(|_| invalid("bad port"))?;
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    } else {
        // An IP literal only: a name would need a resolver, and traffic stays on this machine.
        authority
            .parse()
            .map_err(|_| invalid("expected an IP address (or localhost) and a port"))?
    };
    if addr.ip().is_loopback() {
        Ok(addr)
    } else {
        Err(invalid("only loopback addresses are allowed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Settings, BenchError> {
        let mut argv = vec!["llm-proxy-bench", "--proxy-url", "mock"];
        argv.extend_from_slice(args);
        Settings::from_args(Args::parse_from(argv))
    }

    #[test]
    fn quick_changes_defaults_but_not_explicit_values() {
        let full = parse(&[]).unwrap();
        assert_eq!(
            (full.requests, full.total_requests, full.chunks),
            (5_000, 100_000, 64)
        );
        let quick = parse(&["--quick", "--requests", "42"]).unwrap();
        assert_eq!((quick.requests, quick.warmup, quick.chunks), (42, 100, 16));
        assert_eq!(quick.stall_threshold(), Duration::from_millis(50));
        // 16 chunks x 20 ms = 320 ms per stream, plus 60 s of slack.
        assert_eq!(quick.paced_phase_max(10), Duration::from_millis(63_200));
        assert!(quick.paced_phase_max(u64::MAX) > Duration::from_secs(1 << 30));
    }

    #[test]
    fn proxy_url_must_be_loopback() {
        assert_eq!(loopback_url("http://127.0.0.1:8080/").unwrap().port(), 8080);
        assert!(
            loopback_url("http://localhost:1")
                .unwrap()
                .ip()
                .is_loopback()
        );
        assert!(loopback_url("http://[::1]:9").unwrap().ip().is_loopback());
        assert!(loopback_url("http://10.0.0.1:80").is_err());
        assert!(loopback_url("https://127.0.0.1:80").is_err());
        assert!(loopback_url("http://127.0.0.1:80/v1").is_err());
    }

    #[test]
    fn rejects_out_of_range_values() {
        assert!(parse(&["--concurrency", "0"]).is_err());
        assert!(parse(&["--chunks", "1"]).is_err());
        assert!(parse(&["--duration-secs", "0"]).is_err());
    }

    #[test]
    fn the_floor_belongs_to_the_overhead_mode() {
        assert!(parse(&["--floor"]).unwrap().floor);
        assert!(!parse(&[]).unwrap().floor);
        for mode in ["soak", "big-bodies"] {
            let refused = parse(&["--floor", "--mode", mode]).unwrap_err();
            assert!(refused.to_string().contains("--floor"), "{refused}");
        }
    }
}
