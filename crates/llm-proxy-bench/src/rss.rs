//! Resident memory of a process, read from `/proc/<pid>/status`, and a sampler that keeps the
//! highest reading while a load phase runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinHandle;

/// Memory figures in kibibytes, as the kernel reports them.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Memory {
    /// Resident now (`VmRSS`).
    pub rss_kib: u64,
    /// Highest resident size since the process started (`VmHWM`).
    pub high_water_kib: u64,
    /// Of `rss_kib`, the process's own memory (`RssAnon`: heap, stacks), and the file-backed
    /// pages (`RssFile`: mostly the binary's code and read-only data, shared and clean, which
    /// the kernel maps in 64 KiB windows around every page touched). `None` on kernels that do
    /// not split `VmRSS`.
    pub anon_kib: Option<u64>,
    pub file_kib: Option<u64>,
}

/// `None` when the process is gone or this is not Linux.
pub fn read(pid: u32) -> Option<Memory> {
    // A procfs read is answered from kernel memory in microseconds; it does not block a worker.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(Memory {
        rss_kib: field_kib(&status, "VmRSS:")?,
        high_water_kib: field_kib(&status, "VmHWM:")?,
        anon_kib: field_kib(&status, "RssAnon:"),
        file_kib: field_kib(&status, "RssFile:"),
    })
}

fn field_kib(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// Samples `VmRSS` at a fixed period until finished.
pub struct PeakSampler {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Option<u64>>,
}

impl PeakSampler {
    pub fn start(pid: u32, period: Duration, max_samples: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut peak = None;
            let mut ticks = tokio::time::interval(period);
            for _ in 0..max_samples {
                ticks.tick().await;
                if let Some(memory) = read(pid) {
                    peak = peak.max(Some(memory.rss_kib));
                }
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
            }
            peak
        });
        Self { stop, task }
    }

    /// The highest `VmRSS` seen, in KiB.
    pub async fn finish(self) -> Option<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.ok().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_fields() {
        let status = "Name:\tllm-proxy\nVmHWM:\t   12345 kB\nVmRSS:\t    6789 kB\nRssAnon:\t    2900 kB\nRssFile:\t    3889 kB\n";
        assert_eq!(field_kib(status, "VmRSS:"), Some(6789));
        assert_eq!(field_kib(status, "VmHWM:"), Some(12345));
        assert_eq!(field_kib(status, "RssAnon:"), Some(2900));
        assert_eq!(field_kib(status, "RssFile:"), Some(3889));
        assert_eq!(field_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn reads_own_process() {
        let memory = read(std::process::id()).unwrap();
        assert!(memory.rss_kib > 0);
        assert!(memory.high_water_kib >= memory.rss_kib);
    }
}
