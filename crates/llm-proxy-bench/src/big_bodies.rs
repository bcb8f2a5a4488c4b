//! `--mode big-bodies`: the proxy's resident memory while it parses large request bodies made of
//! many small messages (the worst case for per-message overhead): one body alone, then several
//! at once. Each binary given (`--baseline-bin`, then the proxy) is measured in the same run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use crate::api::ClientApi;
use crate::bench::progress;
use crate::client::{Target, post_once};
use crate::error::BenchError;
use crate::rss::{self, PeakSampler};

const MIB: usize = 1024 * 1024;
const SAMPLE_PERIOD: Duration = Duration::from_millis(10);
const MAX_SAMPLES: u64 = 60_000;
/// Time for the proxy to settle before a reading.
const SETTLE: Duration = Duration::from_millis(500);
/// How long memory is watched after the burst, to see whether it is given back.
const AFTER: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// What one run sends.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Size of the single body, MiB.
    pub single_mib: usize,
    /// Concurrent bodies in the burst.
    pub concurrent: usize,
    /// Size of each body of the burst, MiB.
    pub concurrent_mib: usize,
}

#[derive(Debug, Serialize)]
pub struct PhaseReport {
    pub label: String,
    pub bodies: usize,
    pub body_bytes: usize,
    pub messages_per_body: usize,
    pub before_mib: f64,
    pub peak_sampled_mib: f64,
    pub after_mib: f64,
    pub after_idle_mib: f64,
    pub statuses: Vec<u16>,
}

#[derive(Debug, Serialize)]
pub struct BinaryReport {
    pub binary: String,
    pub idle_mib: f64,
    pub phases: Vec<PhaseReport>,
    pub high_water_mib: f64,
}

/// An OpenAI Chat body of about `bytes` bytes: short user messages, each one a struct to parse.
pub fn many_messages_body(bytes: usize) -> (Bytes, usize) {
    let mut body = Vec::with_capacity(bytes + 128);
    body.extend_from_slice(br#"{"model":"gpt-bench","max_tokens":16,"messages":["#);
    let mut n = 0usize;
    while body.len() + 64 < bytes {
        if n > 0 {
            body.push(b',');
        }
        body.extend_from_slice(format!(r#"{{"role":"user","content":"m{n:08} hi"}}"#).as_bytes());
        n += 1;
    }
    body.extend_from_slice(b"]}");
    (Bytes::from(body), n)
}

/// Copy `k` of a [`many_messages_body`], its first message renumbered so that concurrent
/// copies are distinct requests (the proxy refuses identical ones within its dedup window).
fn distinct_copy(body: &Bytes, k: usize) -> Bytes {
    if k == 0 {
        return body.clone();
    }
    let mut copy = body.to_vec();
    let first = br#""content":"m"#;
    if let Some(at) = copy.windows(first.len()).position(|w| w == first) {
        let digits = format!("{:08}", k % 100_000_000);
        let start = at + first.len();
        copy[start..start + 8].copy_from_slice(digits.as_bytes());
    }
    Bytes::from(copy)
}

fn mib(kib: Option<u64>) -> f64 {
    kib.map_or(f64::NAN, |k| k as f64 / 1024.0)
}

pub async fn run(
    binaries: &[PathBuf],
    upstream: std::net::SocketAddr,
    plan: &Plan,
) -> Result<Vec<BinaryReport>, BenchError> {
    let mut reports = Vec::new();
    for binary in binaries {
        reports.push(measure(binary, upstream, plan).await?);
    }
    Ok(reports)
}

async fn measure(
    binary: &Path,
    upstream: std::net::SocketAddr,
    plan: &Plan,
) -> Result<BinaryReport, BenchError> {
    progress(&format!("big bodies: starting {}", binary.display()));
    let process = crate::proxy_process::spawn(binary, upstream, Duration::from_secs(15))?;
    let pid = process.pid();
    let target = Target::new(process.addr())?;
    tokio::time::sleep(SETTLE).await;
    let idle = rss::read(pid).map(|m| m.rss_kib);
    let mut phases = Vec::new();
    for (label, bodies, size) in [
        ("single", 1, plan.single_mib),
        ("concurrent", plan.concurrent, plan.concurrent_mib),
    ] {
        let (body, messages) = many_messages_body(size * MIB);
        progress(&format!(
            "  {label}: {bodies} x {} bytes ({messages} messages each)",
            body.len()
        ));
        let before = rss::read(pid).map(|m| m.rss_kib);
        let sampler = PeakSampler::start(pid, SAMPLE_PERIOD, MAX_SAMPLES);
        let sends: Vec<_> = (0..bodies)
            .map(|k| {
                let (target, body) = (target.clone(), distinct_copy(&body, k));
                tokio::spawn(async move {
                    post_once(&target, ClientApi::OpenAi, body, REQUEST_TIMEOUT).await
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for send in sends {
            match send.await {
                Ok(Ok((status, _))) => statuses.push(status.as_u16()),
                Ok(Err(e)) => {
                    progress(&format!("  request failed: {e}"));
                    statuses.push(0);
                }
                Err(_) => statuses.push(0),
            }
        }
        drop(body);
        let peak = sampler.finish().await;
        let after = rss::read(pid).map(|m| m.rss_kib);
        tokio::time::sleep(AFTER).await;
        let after_idle = rss::read(pid).map(|m| m.rss_kib);
        phases.push(PhaseReport {
            label: label.into(),
            bodies,
            body_bytes: size * MIB,
            messages_per_body: messages,
            before_mib: mib(before),
            peak_sampled_mib: mib(peak),
            after_mib: mib(after),
            after_idle_mib: mib(after_idle),
            statuses,
        });
    }
    let high_water = rss::read(pid).map(|m| m.high_water_kib);
    Ok(BinaryReport {
        binary: binary.display().to_string(),
        idle_mib: mib(idle),
        phases,
        high_water_mib: mib(high_water),
    })
}

/// The results as a text table.
pub fn render(reports: &[BinaryReport]) -> String {
    let mut out = String::from(
        "big bodies: proxy VmRSS in MiB\n\
         binary | phase | bodies x MiB (messages) | before | peak sampled | right after | after 5 s | statuses\n",
    );
    for r in reports {
        for p in &r.phases {
            out.push_str(&format!(
                "{} | {} | {} x {} ({}) | {:.0} | {:.0} | {:.0} | {:.0} | {:?}\n",
                r.binary,
                p.label,
                p.bodies,
                p.body_bytes / MIB,
                p.messages_per_body,
                p.before_mib,
                p.peak_sampled_mib,
                p.after_mib,
                p.after_idle_mib,
                p.statuses
            ));
        }
        out.push_str(&format!(
            "{} | idle {:.0} MiB, high-water mark {:.0} MiB\n",
            r.binary, r.idle_mib, r.high_water_mib
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_valid_json_of_about_the_asked_size() {
        let (body, n) = many_messages_body(64 * 1024);
        assert!(
            body.len() <= 64 * 1024 && body.len() > 60 * 1024,
            "{}",
            body.len()
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["messages"].as_array().unwrap().len(), n);
        let copy = distinct_copy(&body, 7);
        assert_eq!(copy.len(), body.len());
        assert_ne!(copy, body);
        let v: serde_json::Value = serde_json::from_slice(&copy).unwrap();
        assert_eq!(v["messages"][0]["content"], "m00000007 hi");
    }
}
