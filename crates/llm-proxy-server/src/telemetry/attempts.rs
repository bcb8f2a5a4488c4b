//! `AttemptLog`: the backend attempts of one request (instance, model, start, end, how each
//! failed), noted by the pipeline when tracing is on, for the trace finish hook to turn into
//! child spans. Plain data, no OpenTelemetry types: the log exists whatever the build, and
//! requests carry none when tracing is off.

use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How an attempt failed: a low-cardinality label and the upstream's status, if it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptError {
    /// `error.type` (an error kind label, `cancelled` for an attempt abandoned mid-flight).
    pub kind: &'static str,
    /// The upstream's HTTP status.
    pub status: Option<u16>,
}

/// One backend attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// Backend instance id (`openai`, `openai.1`).
    pub instance: String,
    /// Upstream model.
    pub model: String,
    /// When the call started.
    pub started: Instant,
    /// When it failed or came back empty; `None`: it served the answer, which ends with the
    /// request.
    pub ended: Option<Instant>,
    /// How it failed.
    pub error: Option<AttemptError>,
}

/// The attempts of one request, in the order they ended.
#[derive(Debug, Default)]
pub struct AttemptLog(Mutex<Vec<Attempt>>);

impl AttemptLog {
    /// Starts noting an attempt; the guard notes it when ended, or as `cancelled` when dropped
    /// first (a parallel race's loser).
    pub fn begin(self: &Arc<Self>, instance: &str, model: &str) -> AttemptGuard {
        AttemptGuard {
            log: self.clone(),
            attempt: Some(Attempt {
                instance: instance.to_owned(),
                model: model.to_owned(),
                started: Instant::now(),
                ended: None,
                error: None,
            }),
        }
    }

    /// The attempts noted so far, taken out of the log.
    pub fn take(&self) -> Vec<Attempt> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }

    fn push(&self, attempt: Attempt) {
        if let Ok(mut v) = self.0.lock() {
            v.push(attempt);
        }
    }
}

/// An attempt in flight.
#[derive(Debug)]
pub struct AttemptGuard {
    log: Arc<AttemptLog>,
    attempt: Option<Attempt>,
}

impl AttemptGuard {
    /// The attempt serves the answer: it ends with the request.
    pub fn serving(mut self) {
        if let Some(a) = self.attempt.take() {
            self.log.push(a);
        }
    }

    /// The attempt ended without serving (it failed, or came back empty).
    pub fn ended(mut self, error: Option<AttemptError>) {
        if let Some(mut a) = self.attempt.take() {
            a.ended = Some(Instant::now());
            a.error = error;
            self.log.push(a);
        }
    }
}

impl Drop for AttemptGuard {
    fn drop(&mut self) {
        if let Some(mut a) = self.attempt.take() {
            a.ended = Some(Instant::now());
            a.error = Some(AttemptError {
                kind: "cancelled",
                status: None,
            });
            self.log.push(a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_noted_served_failed_or_cancelled() {
        let log = Arc::new(AttemptLog::default());
        log.begin("a", "m1").ended(Some(AttemptError {
            kind: "rate_limit",
            status: Some(429),
        }));
        drop(log.begin("b", "m2"));
        log.begin("c", "m3").serving();
        let got = log.take();
        let summary: Vec<_> = got
            .iter()
            .map(|a| {
                (
                    a.instance.as_str(),
                    a.ended.is_some(),
                    a.error.as_ref().map(|e| e.kind),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("a", true, Some("rate_limit")),
                ("b", true, Some("cancelled")),
                ("c", false, None)
            ]
        );
        assert!(log.take().is_empty(), "taken once");
    }
}
