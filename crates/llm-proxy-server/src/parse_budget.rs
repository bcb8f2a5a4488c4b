//! The global budget of request bytes being read and parsed at once (`limits.max_parsing_bytes`).
//! Parsing a body briefly costs a multiple of its size; many big bodies at once would multiply
//! that. A request reserves its body size before reading it and gives it back once the body is
//! the canonical request; beyond the budget it waits a bounded time, then gets a 503.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ProxyError;

/// Budget granularity: permits are KiB so a `u32` reservation covers any body.
const UNIT: usize = 1024;

/// What a client is told to wait before retrying when the budget stays full.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Shared by every request.
#[derive(Debug, Clone)]
pub struct ParseBudget {
    permits: Arc<Semaphore>,
    total_units: u32,
    wait: Duration,
}

/// Room reserved in the budget; given back when dropped.
#[derive(Debug)]
pub struct ParsePermit {
    _permit: OwnedSemaphorePermit,
}

impl ParseBudget {
    /// A budget of `max_bytes`; a request waits at most `wait` for room.
    pub fn new(max_bytes: usize, wait: Duration) -> Self {
        let total_units = u32::try_from(max_bytes.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX);
        let total_units =
            total_units.min(u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX));
        Self {
            permits: Arc::new(Semaphore::new(total_units as usize)),
            total_units,
            wait,
        }
    }

    /// Reserves `bytes` (a request larger than the whole budget reserves all of it), waiting
    /// at most the configured time; then [`ProxyError::Overloaded`].
    pub async fn reserve(&self, bytes: usize) -> Result<ParsePermit, ProxyError> {
        let units = u32::try_from(bytes.div_ceil(UNIT).max(1))
            .unwrap_or(u32::MAX)
            .min(self.total_units);
        let acquire = self.permits.clone().acquire_many_owned(units);
        match tokio::time::timeout(self.wait, acquire).await {
            Ok(Ok(permit)) => Ok(ParsePermit { _permit: permit }),
            // Timed out, or the semaphore was closed (never happens): shed the request.
            Ok(Err(_)) | Err(_) => {
                tracing::warn!(
                    bytes,
                    "request parsing budget exhausted; answering 503 (limits.max_parsing_bytes)"
                );
                Err(ProxyError::Overloaded {
                    retry_after: RETRY_AFTER,
                })
            }
        }
    }

    /// Bytes currently free in the budget (rounded down to KiB).
    pub fn available_bytes(&self) -> usize {
        self.permits.available_permits() * UNIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reservations_are_returned_on_drop() {
        let budget = ParseBudget::new(10 * UNIT, Duration::ZERO);
        let a = budget.reserve(6 * UNIT).await.unwrap();
        assert_eq!(budget.available_bytes(), 4 * UNIT);
        drop(a);
        assert_eq!(budget.available_bytes(), 10 * UNIT);
    }

    #[tokio::test]
    async fn a_full_budget_sheds_with_retry_after() {
        let budget = ParseBudget::new(10 * UNIT, Duration::ZERO);
        let _held = budget.reserve(8 * UNIT).await.unwrap();
        let err = budget.reserve(4 * UNIT).await.unwrap_err();
        assert!(matches!(err, ProxyError::Overloaded { .. }), "{err:?}");
        assert_eq!(err.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        // A small one still fits.
        assert!(budget.reserve(UNIT).await.is_ok());
    }

    #[tokio::test]
    async fn a_waiting_request_gets_room_when_another_finishes() {
        let budget = ParseBudget::new(10 * UNIT, Duration::from_secs(3600));
        let held = budget.reserve(10 * UNIT).await.unwrap();
        let waiter = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(5 * UNIT).await.map(drop) }
        });
        tokio::task::yield_now().await;
        drop(held);
        assert!(waiter.await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn an_oversized_request_takes_the_whole_budget_instead_of_waiting_forever() {
        let budget = ParseBudget::new(10 * UNIT, Duration::ZERO);
        let permit = budget.reserve(100 * UNIT).await.unwrap();
        assert_eq!(budget.available_bytes(), 0);
        drop(permit);
    }
}
