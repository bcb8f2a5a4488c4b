//! Circuit breakers, one per backend instance: closed until `failure_threshold` consecutive
//! failures, then open (calls skipped) for `open_cooldown`, then half-open (a limited number of
//! trial calls) until enough trials succeed or one fails. With shared state (Redis) the
//! breakers stay local and synchronous: what they learn is published as [`BreakerEvent`]s
//! through a bounded channel (never waited on), and what other replicas learned arrives
//! through [`Breakers::open_from_peer`] and [`Breakers::close_from_peer`].

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::config::CircuitBreakerConfig;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { inflight: u32, successes: u32 },
}

/// The breakers of every configured instance.
#[derive(Debug)]
pub struct Breakers {
    config: CircuitBreakerConfig,
    states: BTreeMap<String, Mutex<State>>,
    /// Where transitions go when replicas share breakers (set once at startup).
    events: OnceLock<mpsc::Sender<BreakerEvent>>,
}

/// What one replica's breaker learned, for the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakerEvent {
    /// A call failed in a way that says the instance is unhealthy.
    Failed(String),
    /// A call succeeded after failures: the consecutive count starts again.
    Recovered(String),
    /// The breaker opened here (for the configured cooldown).
    Opened(String),
    /// The breaker closed here after successful trials.
    Closed(String),
}

/// Permission to call an instance; report the outcome with [`Breakers::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Normal call.
    Allowed,
    /// A half-open trial call.
    Trial,
    /// The breaker is open.
    Rejected,
}

impl Breakers {
    /// Breakers for `instances`, all closed.
    pub fn new(config: CircuitBreakerConfig, instances: impl IntoIterator<Item = String>) -> Self {
        let states = instances
            .into_iter()
            .map(|i| (i, Mutex::new(State::Closed { failures: 0 })))
            .collect();
        Self {
            config,
            states,
            events: OnceLock::new(),
        }
    }

    /// Publishes what these breakers learn to `events` from now on (once; later calls are
    /// ignored). Events are dropped when the channel is full: a breaker never waits.
    pub fn publish_to(&self, events: mpsc::Sender<BreakerEvent>) {
        let _ = self.events.set(events);
    }

    fn publish(&self, event: impl FnOnce() -> BreakerEvent) {
        if let Some(tx) = self.events.get() {
            let _ = tx.try_send(event());
        }
    }

    /// Another replica opened `instance`'s breaker, for `remaining` more: open it here too
    /// (an open breaker keeps its later deadline).
    pub fn open_from_peer(&self, instance: &str, remaining: Duration) {
        if !self.config.enabled {
            return;
        }
        let Some(Ok(mut state)) = self.states.get(instance).map(Mutex::lock) else {
            return;
        };
        let until = Instant::now() + remaining;
        match *state {
            State::Open { until: mine } if mine >= until => {}
            _ => {
                if !matches!(*state, State::Open { .. }) {
                    tracing::warn!(instance, "circuit breaker opened by another replica");
                }
                *state = State::Open { until };
            }
        }
    }

    /// Another replica closed `instance`'s breaker after successful trials.
    pub fn close_from_peer(&self, instance: &str) {
        let Some(Ok(mut state)) = self.states.get(instance).map(Mutex::lock) else {
            return;
        };
        if !matches!(*state, State::Closed { .. }) {
            tracing::info!(instance, "circuit breaker closed by another replica");
        }
        *state = State::Closed { failures: 0 };
    }

    /// The configured instances.
    pub fn instances(&self) -> impl Iterator<Item = &str> {
        self.states.keys().map(String::as_str)
    }

    /// The settings.
    pub fn config(&self) -> &CircuitBreakerConfig {
        &self.config
    }

    /// Whether `instance` may be called now.
    pub fn admit(&self, instance: &str) -> Admission {
        if !self.config.enabled {
            return Admission::Allowed;
        }
        let Some(cell) = self.states.get(instance) else {
            return Admission::Allowed;
        };
        let Ok(mut state) = cell.lock() else {
            return Admission::Allowed;
        };
        match *state {
            State::Closed { .. } => Admission::Allowed,
            State::Open { until } if Instant::now() < until => Admission::Rejected,
            State::Open { .. } => {
                *state = State::HalfOpen {
                    inflight: 1,
                    successes: 0,
                };
                Admission::Trial
            }
            State::HalfOpen {
                inflight,
                successes,
            } => {
                if inflight < self.config.half_open_max_inflight {
                    *state = State::HalfOpen {
                        inflight: inflight + 1,
                        successes,
                    };
                    Admission::Trial
                } else {
                    Admission::Rejected
                }
            }
        }
    }

    /// Whether `instance` would be admitted now, without taking a trial slot.
    pub fn is_available(&self, instance: &str) -> bool {
        if !self.config.enabled {
            return true;
        }
        let Some(Ok(state)) = self.states.get(instance).map(Mutex::lock) else {
            return true;
        };
        match *state {
            State::Closed { .. } => true,
            State::Open { until } => Instant::now() >= until,
            State::HalfOpen { inflight, .. } => inflight < self.config.half_open_max_inflight,
        }
    }

    /// Records the outcome of an admitted call. Only failures that say something about the
    /// instance's health (5xx, 429, timeouts, connection errors) should be reported as failures.
    pub fn record(&self, instance: &str, admission: Admission, success: bool) {
        if !self.config.enabled || admission == Admission::Rejected {
            return;
        }
        let Some(Ok(mut state)) = self.states.get(instance).map(Mutex::lock) else {
            return;
        };
        let open = State::Open {
            until: Instant::now() + self.config.open_cooldown,
        };
        let before = *state;
        *state = match (before, success) {
            (State::Closed { failures }, true) => {
                if failures > 0 {
                    self.publish(|| BreakerEvent::Recovered(instance.to_owned()));
                }
                State::Closed { failures: 0 }
            }
            (State::Closed { failures }, false) => {
                self.publish(|| BreakerEvent::Failed(instance.to_owned()));
                if failures + 1 >= self.config.failure_threshold {
                    self.publish(|| BreakerEvent::Opened(instance.to_owned()));
                    tracing::warn!(
                        instance,
                        "circuit breaker opened after {} failures",
                        failures + 1
                    );
                    open
                } else {
                    State::Closed {
                        failures: failures + 1,
                    }
                }
            }
            (
                State::HalfOpen {
                    inflight,
                    successes,
                },
                true,
            ) => {
                if successes + 1 >= self.config.half_open_success_threshold {
                    tracing::info!(instance, "circuit breaker closed");
                    self.publish(|| BreakerEvent::Closed(instance.to_owned()));
                    State::Closed { failures: 0 }
                } else {
                    State::HalfOpen {
                        inflight: inflight.saturating_sub(1),
                        successes: successes + 1,
                    }
                }
            }
            (State::HalfOpen { .. }, false) => {
                tracing::warn!(instance, "circuit breaker re-opened after a failed trial");
                self.publish(|| BreakerEvent::Opened(instance.to_owned()));
                open
            }
            // A call admitted before the breaker opened finished late: nothing to learn.
            (s @ State::Open { .. }, _) => s,
        };
    }

    /// Ends an admitted call whose failure says nothing about the instance's health (the
    /// request's own fault): the failure count is left as it was, and a half-open trial slot
    /// is given back without counting as a success.
    pub fn release(&self, instance: &str, admission: Admission) {
        if !self.config.enabled || admission != Admission::Trial {
            return;
        }
        let Some(Ok(mut state)) = self.states.get(instance).map(Mutex::lock) else {
            return;
        };
        if let State::HalfOpen {
            inflight,
            successes,
        } = *state
        {
            *state = State::HalfOpen {
                inflight: inflight.saturating_sub(1),
                successes,
            };
        }
    }

    /// Closes the breaker (manual reactivation). Returns false for unknown instances.
    pub fn reset(&self, instance: &str) -> bool {
        match self.states.get(instance).map(Mutex::lock) {
            Some(Ok(mut s)) => {
                *s = State::Closed { failures: 0 };
                true
            }
            _ => false,
        }
    }

    /// State of every breaker, for diagnostics.
    pub fn snapshot(&self) -> Value {
        let now = Instant::now();
        let map: serde_json::Map<String, Value> = self
            .states
            .iter()
            .map(|(name, cell)| {
                let v = match cell.lock().map(|s| *s) {
                    Ok(State::Closed { failures }) => json!({"state": "closed", "consecutive_failures": failures}),
                    Ok(State::Open { until }) if until > now => json!({"state": "open", "retry_in_seconds": until.duration_since(now).as_secs_f64()}),
                    Ok(State::Open { .. }) => json!({"state": "half_open", "trials_in_flight": 0}),
                    Ok(State::HalfOpen { inflight, successes }) => json!({"state": "half_open", "trials_in_flight": inflight, "trial_successes": successes}),
                    Err(_) => json!({"state": "unknown"}),
                };
                (name.clone(), v)
            })
            .collect();
        Value::Object(map)
    }

    /// The configured cooldown (for messages).
    pub fn cooldown(&self) -> Duration {
        self.config.open_cooldown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breakers(cooldown: Duration) -> Breakers {
        Breakers::new(
            CircuitBreakerConfig {
                open_cooldown: cooldown,
                ..CircuitBreakerConfig::default()
            },
            ["a".to_owned()],
        )
    }

    #[test]
    fn opens_after_threshold_then_half_opens_and_closes() {
        let b = breakers(Duration::ZERO);
        for _ in 0..2 {
            let adm = b.admit("a");
            assert_eq!(adm, Admission::Allowed);
            b.record("a", adm, false);
        }
        assert_eq!(b.snapshot()["a"]["state"], "closed");
        let adm = b.admit("a");
        b.record("a", adm, false);
        // cooldown zero: the next admission is a trial
        let trial = b.admit("a");
        assert_eq!(trial, Admission::Trial);
        assert_eq!(b.admit("a"), Admission::Rejected, "one trial at a time");
        b.record("a", trial, true);
        assert_eq!(b.snapshot()["a"]["state"], "closed");
        assert_eq!(b.admit("a"), Admission::Allowed);
    }

    #[test]
    fn open_rejects_during_cooldown_and_failed_trial_reopens() {
        let b = breakers(Duration::from_secs(3600));
        for _ in 0..3 {
            let adm = b.admit("a");
            b.record("a", adm, false);
        }
        assert_eq!(b.admit("a"), Admission::Rejected);
        assert!(!b.is_available("a"));
        assert_eq!(b.snapshot()["a"]["state"], "open");
        assert!(b.reset("a"));
        assert_eq!(b.admit("a"), Admission::Allowed);

        let b = breakers(Duration::ZERO);
        for _ in 0..3 {
            let adm = b.admit("a");
            b.record("a", adm, false);
        }
        let trial = b.admit("a");
        b.record("a", trial, false);
        assert_eq!(
            b.snapshot()["a"]["state"],
            "half_open",
            "zero cooldown: open expires at once"
        );
    }

    #[test]
    fn released_calls_neither_count_nor_succeed() {
        let b = breakers(Duration::ZERO);
        for _ in 0..2 {
            let adm = b.admit("a");
            b.record("a", adm, false);
        }
        let adm = b.admit("a");
        b.release("a", adm);
        assert_eq!(b.snapshot()["a"]["consecutive_failures"], 2, "not reset");
        let adm = b.admit("a");
        b.record("a", adm, false);
        let trial = b.admit("a");
        assert_eq!(trial, Admission::Trial);
        b.release("a", trial);
        assert_eq!(b.snapshot()["a"]["state"], "half_open", "not closed by it");
        assert_eq!(b.admit("a"), Admission::Trial, "the trial slot came back");
    }

    #[test]
    fn success_resets_the_failure_count() {
        let b = breakers(Duration::from_secs(3600));
        for ok in [false, false, true, false, false] {
            let adm = b.admit("a");
            b.record("a", adm, ok);
        }
        assert_eq!(b.admit("a"), Admission::Allowed);
    }
}
