//! `llm-proxy-bench`: measures what llm-proxy adds to latency, throughput and memory, against
//! a fast in-process mock upstream, direct and through the proxy in one run.

mod api;
mod bench;
mod big_bodies;
mod client;
mod compare;
mod cpu;
mod error;
mod forward;
mod load;
mod mock;
mod proxy_process;
mod report;
mod rss;
mod settings;
mod soak;
mod sse;
mod stats;
mod table;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser as _;

use crate::bench::Endpoints;
use crate::client::Target;
use crate::error::BenchError;
use crate::mock::StreamShape;
use crate::settings::{Args, Mode, ProxySource, Settings};

/// How long the proxy may take to print its listening line.
const PROXY_STARTUP: Duration = Duration::from_secs(15);

fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = match args.forward_to {
        Some(upstream) => forward_to(upstream),
        None => run(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            bench::progress(&format!("error: {error}"));
            ExitCode::FAILURE
        }
    }
}

/// `--floor`'s forwarder, as the child process the bench starts.
fn forward_to(upstream: std::net::SocketAddr) -> Result<(), BenchError> {
    if !upstream.ip().is_loopback() {
        return Err(BenchError::Setting(format!(
            "--forward-to {upstream}: the bench only sends traffic to this machine"
        )));
    }
    forward::run(upstream)
}

fn run(args: Args) -> Result<(), BenchError> {
    let settings = Settings::from_args(args)?;
    let mock = mock::start(
        settings.mock_port,
        StreamShape {
            chunks: settings.chunks,
            interval: settings.chunk_interval,
        },
    )?;
    match settings.mode {
        Mode::BigBodies => return run_big_bodies(&settings, mock.addr),
        Mode::Soak => return run_soak(&settings, mock.addr),
        Mode::Overhead => {}
    }
    let mut runs = Vec::new();
    let mut floors = Vec::new();
    for run in 1..=settings.runs {
        if settings.runs > 1 {
            bench::progress(&format!("run {run} of {}", settings.runs));
        }
        // Alternated, so that neither always meets the machine as the other left it.
        let floor_first = run % 2 == 1;
        if settings.floor && floor_first {
            floors.push(floor_once(&settings, &mock)?);
        }
        let report = overhead_once(&settings, &mock, Measured::Proxy)?;
        print_table(&table::render(&report));
        runs.push(serde_json::to_value(&report)?);
        if settings.floor && !floor_first {
            floors.push(floor_once(&settings, &mock)?);
        }
        if let (Some(proxy), Some(floor)) = (runs.last(), floors.last()) {
            print_table(&compare::against_floor(proxy, floor));
        }
    }
    let Some(last) = runs.last() else {
        return Ok(());
    };
    write_json(&settings.out, last)?;
    if let Some(floor) = floors.last() {
        write_json(&settings.out.with_extension("floor.json"), floor)?;
    }
    if runs.len() > 1 {
        for (reports, name, extension) in [
            (&runs, "llm-proxy", "summary.json"),
            (&floors, "the floor forwarder", "floor.summary.json"),
        ] {
            if reports.is_empty() {
                continue;
            }
            let (text, summary) = compare::medians(reports, name);
            print_table(&text);
            write_json(&settings.out.with_extension(extension), &summary)?;
        }
    }
    if let Some(old) = &settings.compare {
        print_table(&compare::render(last, old)?);
    }
    Ok(())
}

fn write_json(path: &std::path::Path, value: &serde_json::Value) -> Result<(), BenchError> {
    std::fs::write(path, serde_json::to_vec_pretty(value)?)
        .map_err(|e| BenchError::io(format!("writing {}", path.display()), e))?;
    bench::progress(&format!("results written to {}", path.display()));
    Ok(())
}

/// The floor forwarder's whole overhead run, its table printed.
fn floor_once(
    settings: &Settings,
    mock: &mock::MockServer,
) -> Result<serde_json::Value, BenchError> {
    let report = overhead_once(settings, mock, Measured::Floor)?;
    print_table(&table::render(&report));
    Ok(serde_json::to_value(&report)?)
}

/// What an overhead run measures.
#[derive(Clone, Copy)]
enum Measured {
    /// The proxy the settings name.
    Proxy,
    /// `--floor`'s forwarder.
    Floor,
}

/// One whole overhead run: a fresh proxy (when spawned) against `mock`.
fn overhead_once(
    settings: &Settings,
    mock: &mock::MockServer,
    measured: Measured,
) -> Result<report::Report, BenchError> {
    let direct = Target::new(mock.addr)?;
    // Held until the end: dropping it kills the proxy, on the error paths too.
    let (_proxy_process, endpoints) = match (measured, &settings.proxy) {
        (Measured::Floor, _) => {
            bench::progress("starting the floor forwarder");
            let process = proxy_process::spawn_forwarder(mock.addr, PROXY_STARTUP)?;
            let endpoints = Endpoints {
                proxy: Target::new(process.addr())?,
                proxy_pid: Some(process.pid()),
                proxy_label: format!("the floor forwarder (pid {})", process.pid()),
                direct,
                mock_thread: mock.thread_id,
            };
            (Some(process), endpoints)
        }
        (Measured::Proxy, ProxySource::Spawn(binary)) => {
            bench::progress(&format!("starting {}", binary.display()));
            let process = proxy_process::spawn(binary, mock.addr, PROXY_STARTUP)?;
            let endpoints = Endpoints {
                proxy: Target::new(process.addr())?,
                proxy_pid: Some(process.pid()),
                proxy_label: format!("{} (pid {})", binary.display(), process.pid()),
                direct,
                mock_thread: mock.thread_id,
            };
            (Some(process), endpoints)
        }
        (Measured::Proxy, ProxySource::Running(addr)) => (
            None,
            Endpoints {
                proxy: Target::new(*addr)?,
                proxy_pid: None,
                proxy_label: format!("already running at http://{addr}"),
                direct,
                mock_thread: mock.thread_id,
            },
        ),
        (Measured::Proxy, ProxySource::Mock) => (
            None,
            Endpoints {
                proxy: direct.clone(),
                proxy_pid: None,
                proxy_label: "the mock itself (sanity check: added ~ 0)".into(),
                direct,
                mock_thread: mock.thread_id,
            },
        ),
    };
    bench::progress(&format!(
        "mock upstream on http://{}, proxy on http://{}",
        mock.addr,
        endpoints.proxy.addr()
    ));
    // Two workers: the load generator shares the machine's cores with the proxy and the mock.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| BenchError::io("starting the load generator's runtime", e))?;
    let report = runtime.block_on(bench::run(settings, endpoints));
    drop(runtime);
    Ok(report)
}

/// Circuit breakers off: the soak's injected failures would otherwise open the one backend's
/// breaker and fail the requests around them.
const SOAK_CONFIG: &str = "resilience:\n  circuit_breaker:\n    enabled: false\n";

fn run_soak(settings: &Settings, upstream: std::net::SocketAddr) -> Result<(), BenchError> {
    let ProxySource::Spawn(binary) = &settings.proxy else {
        return Err(BenchError::Setting(
            "--mode soak reads the proxy's /proc entries: use --proxy-bin, not --proxy-url".into(),
        ));
    };
    bench::progress(&format!("starting {}", binary.display()));
    let process = proxy_process::spawn_with(binary, upstream, PROXY_STARTUP, SOAK_CONFIG)?;
    let target = Target::new(process.addr())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| BenchError::io("starting the load generator's runtime", e))?;
    let report = runtime.block_on(soak::run(
        &target,
        process.pid(),
        settings.total_requests,
        settings.concurrency,
        settings.soak_max,
    ));
    drop(runtime);
    drop(process);
    print_table(&soak::render(&report));
    let json = serde_json::to_vec_pretty(&serde_json::json!({
        "mode": "soak",
        "settings": settings,
        "soak": report,
    }))?;
    std::fs::write(&settings.out, json)
        .map_err(|e| BenchError::io(format!("writing {}", settings.out.display()), e))?;
    bench::progress(&format!("results written to {}", settings.out.display()));
    Ok(())
}

fn run_big_bodies(settings: &Settings, upstream: std::net::SocketAddr) -> Result<(), BenchError> {
    let ProxySource::Spawn(binary) = &settings.proxy else {
        return Err(BenchError::Setting(
            "--mode big-bodies spawns the proxy: use --proxy-bin, not --proxy-url".into(),
        ));
    };
    let binaries: Vec<_> = settings
        .baseline_bin
        .iter()
        .chain(std::iter::once(binary))
        .cloned()
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| BenchError::io("starting the load generator's runtime", e))?;
    let reports = runtime.block_on(big_bodies::run(&binaries, upstream, &settings.big_bodies))?;
    drop(runtime);
    print_table(&big_bodies::render(&reports));
    let json = serde_json::to_vec_pretty(&serde_json::json!({
        "mode": "big-bodies",
        "plan": settings.big_bodies,
        "binaries": reports,
    }))?;
    std::fs::write(&settings.out, json)
        .map_err(|e| BenchError::io(format!("writing {}", settings.out.display()), e))?;
    bench::progress(&format!("results written to {}", settings.out.display()));
    Ok(())
}

#[expect(
    clippy::print_stdout,
    reason = "the results table is this CLI's output"
)]
fn print_table(table: &str) {
    print!("{table}");
}
