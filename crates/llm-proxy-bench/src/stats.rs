//! Percentile summaries of latency samples (nanoseconds in, microseconds out).

use serde::Serialize;

/// Nearest-rank percentiles of one set of samples, in microseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Summary {
    pub count: usize,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl Summary {
    /// Sorts `samples_ns` in place; `None` when there are no samples.
    pub fn of(samples_ns: &mut [u64]) -> Option<Self> {
        if samples_ns.is_empty() {
            return None;
        }
        samples_ns.sort_unstable();
        let total: u128 = samples_ns.iter().map(|&s| u128::from(s)).sum();
        let mean_ns = total as f64 / samples_ns.len() as f64;
        Some(Self {
            count: samples_ns.len(),
            p50_us: to_us(percentile(samples_ns, 50.0)),
            p90_us: to_us(percentile(samples_ns, 90.0)),
            p99_us: to_us(percentile(samples_ns, 99.0)),
            max_us: to_us(percentile(samples_ns, 100.0)),
            mean_us: mean_ns / 1_000.0,
        })
    }

    /// `self - baseline` at each percentile: the latency a hop adds.
    pub fn minus(&self, baseline: &Self) -> Added {
        Added {
            p50_us: self.p50_us - baseline.p50_us,
            p90_us: self.p90_us - baseline.p90_us,
            p99_us: self.p99_us - baseline.p99_us,
            max_us: self.max_us - baseline.max_us,
        }
    }
}

/// Difference of two summaries at each percentile, in microseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Added {
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

/// p50/p99 of values that arrive as floats (the proxy's overhead header, in ms).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FloatSummary {
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl FloatSummary {
    pub fn of(values: &mut [f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        values.sort_unstable_by(f64::total_cmp);
        Some(Self {
            count: values.len(),
            p50: percentile(values, 50.0),
            p99: percentile(values, 99.0),
            max: percentile(values, 100.0),
        })
    }
}

/// Nearest-rank percentile of sorted, non-empty `sorted`.
fn percentile<T: Copy>(sorted: &[T], pct: f64) -> T {
    let rank = (pct / 100.0 * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    sorted[index]
}

fn to_us(ns: u64) -> f64 {
    ns as f64 / 1_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut samples: Vec<u64> = (1..=100).rev().map(|v| v * 1_000).collect();
        let summary = Summary::of(&mut samples).unwrap();
        assert_eq!(summary.count, 100);
        assert_eq!(summary.p50_us, 50.0);
        assert_eq!(summary.p90_us, 90.0);
        assert_eq!(summary.p99_us, 99.0);
        assert_eq!(summary.max_us, 100.0);
        assert_eq!(summary.mean_us, 50.5);
    }

    #[test]
    fn single_sample_is_every_percentile() {
        let summary = Summary::of(&mut [7_000]).unwrap();
        assert_eq!(summary.p50_us, 7.0);
        assert_eq!(summary.p99_us, 7.0);
        assert!(Summary::of(&mut []).is_none());
    }

    #[test]
    fn added_is_the_difference_per_percentile() {
        let direct = Summary::of(&mut [10_000, 20_000]).unwrap();
        let proxy = Summary::of(&mut [15_000, 30_000]).unwrap();
        let added = proxy.minus(&direct);
        assert_eq!(added.p50_us, 5.0);
        assert_eq!(added.max_us, 10.0);
    }

    #[test]
    fn float_summary_sorts_and_ranks() {
        let mut values = vec![0.3, 0.1, 0.2];
        let summary = FloatSummary::of(&mut values).unwrap();
        assert_eq!(summary.p50, 0.2);
        assert_eq!(summary.max, 0.3);
    }
}
