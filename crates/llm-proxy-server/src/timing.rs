//! Overhead accounting: wrappers that add up the time a request spends waiting on its
//! upstream (polls that returned `Pending`), so overhead = elapsed - waited.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::Stream;

/// Accumulated upstream waiting time of one request.
#[derive(Debug, Clone, Default)]
pub struct WaitClock(Arc<AtomicU64>);

impl WaitClock {
    /// A fresh clock at zero.
    pub fn new() -> Self {
        Self::default()
    }

    fn add(&self, d: Duration) {
        self.0.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Total waited so far.
    pub fn waited(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }

    /// Wraps a future.
    pub fn future<F: Future>(&self, inner: F) -> Timed<F> {
        Timed {
            inner: Box::pin(inner),
            clock: self.clone(),
            pending_since: None,
        }
    }

    /// Wraps a stream.
    pub fn stream<S: Stream + Unpin>(&self, inner: S) -> Timed<S> {
        Timed {
            inner: Box::pin(inner),
            clock: self.clone(),
            pending_since: None,
        }
    }
}

/// A future or stream whose `Pending` time is added to a [`WaitClock`].
pub struct Timed<T: ?Sized> {
    inner: Pin<Box<T>>,
    clock: WaitClock,
    pending_since: Option<Instant>,
}

impl<T: ?Sized> Timed<T> {
    fn settle(&mut self) {
        if let Some(since) = self.pending_since.take() {
            self.clock.add(since.elapsed());
        }
    }

    fn mark_pending(&mut self) {
        if self.pending_since.is_none() {
            self.pending_since = Some(Instant::now());
        }
    }
}

impl<F: Future + ?Sized> Future for Timed<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        match self.inner.as_mut().poll(cx) {
            Poll::Ready(v) => {
                self.settle();
                Poll::Ready(v)
            }
            Poll::Pending => {
                self.mark_pending();
                Poll::Pending
            }
        }
    }
}

impl<S: Stream + ?Sized> Stream for Timed<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(v) => {
                self.settle();
                Poll::Ready(v)
            }
            Poll::Pending => {
                self.mark_pending();
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_only_pending_time() {
        let clock = WaitClock::new();
        clock.future(async { 1 }).await;
        assert_eq!(
            clock.waited(),
            Duration::ZERO,
            "ready futures wait for nothing"
        );
        clock
            .future(tokio::time::sleep(Duration::from_millis(20)))
            .await;
        assert!(
            clock.waited() >= Duration::from_millis(15),
            "{:?}",
            clock.waited()
        );
    }
}
