//! A one-shot signal that many tasks wait on and that is cheap to poll again.
//!
//! Each connection waits for the shutdown to begin, and each request for its grace to end.
//! Those waits are polled whenever their task wakes: about eight times per request.
//! `CancellationToken::cancelled` waits through tokio's `Notify`, whose `Notified` locks the
//! waiter list on every poll to compare wakers. That list, and its lock, is shared by every
//! serving thread, and it cost about 1.3k instructions per request. Here a wait registers its
//! waker once and polls again with one atomic load and a waker comparison. Locks are taken
//! only to register, to register a changed waker, and on drop.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use slab::Slab;

/// Fires once; every [`Wait`] on it then resolves, including those made later.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    fired: AtomicBool,
    waiters: Mutex<Slab<Waker>>,
}

impl Signal {
    /// Fires the signal (idempotent) and wakes every waiter.
    pub(crate) fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        // Under the lock: a waiter that registers checks `fired` under it too, so it is
        // either in this list or sees the signal fired.
        let wakers: Vec<Waker> = self.waiters().drain().collect();
        for waker in wakers {
            waker.wake();
        }
    }

    /// Whether the signal has fired.
    pub(crate) fn fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    /// A wait for the signal.
    pub(crate) fn wait(self: &Arc<Self>) -> Wait {
        Wait {
            signal: Arc::clone(self),
            registered: None,
        }
    }

    fn waiters(&self) -> MutexGuard<'_, Slab<Waker>> {
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.waiters().len()
    }
}

/// Resolves once its [`Signal`] has fired.
#[derive(Debug)]
#[must_use = "a wait does nothing unless polled"]
pub struct Wait {
    signal: Arc<Signal>,
    /// The slot this wait holds in the waiter list, and the waker it put there.
    registered: Option<(usize, Waker)>,
}

impl Future for Wait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.signal.fired() {
            return Poll::Ready(());
        }
        if let Some((_, waker)) = &this.registered
            && waker.will_wake(cx.waker())
        {
            return Poll::Pending;
        }
        let mut waiters = this.signal.waiters();
        if this.signal.fired() {
            return Poll::Ready(());
        }
        let waker = cx.waker().clone();
        match &mut this.registered {
            Some((key, kept)) => {
                waiters[*key] = waker.clone();
                *kept = waker;
            }
            None => this.registered = Some((waiters.insert(waker.clone()), waker)),
        }
        Poll::Pending
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        if let Some((key, _)) = self.registered.take() {
            // Once fired, the list was emptied and never refills: the slot is gone, or (no
            // wait registers after the signal) was never handed to another.
            self.signal.waiters().try_remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counter() -> (Arc<Counter>, Waker) {
        let c = Arc::new(Counter(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    fn poll(wait: &mut Wait, waker: &Waker) -> Poll<()> {
        Pin::new(wait).poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn waiters_registered_before_the_signal_are_woken_and_later_ones_are_ready() {
        let signal = Arc::new(Signal::default());
        let (woken, waker) = counter();
        let mut first = signal.wait();
        let mut second = signal.wait();
        assert!(poll(&mut first, &waker).is_pending());
        assert!(poll(&mut second, &waker).is_pending());
        assert_eq!(signal.waiting(), 2);
        signal.fire();
        assert_eq!(woken.0.load(Ordering::SeqCst), 2);
        assert_eq!(signal.waiting(), 0);
        assert!(poll(&mut first, &waker).is_ready());
        let mut late = signal.wait();
        assert!(poll(&mut late, &waker).is_ready());
        assert_eq!(
            signal.waiting(),
            0,
            "a wait after the signal never registers"
        );
        signal.fire();
        assert_eq!(
            woken.0.load(Ordering::SeqCst),
            2,
            "firing again wakes nobody"
        );
    }

    #[test]
    fn a_wait_registers_once_follows_a_new_waker_and_leaves_on_drop() {
        let signal = Arc::new(Signal::default());
        let (old, old_waker) = counter();
        let (new, new_waker) = counter();
        let mut wait = signal.wait();
        for _ in 0..3 {
            assert!(poll(&mut wait, &old_waker).is_pending());
        }
        assert_eq!(signal.waiting(), 1);
        assert!(poll(&mut wait, &new_waker).is_pending());
        assert_eq!(signal.waiting(), 1, "the slot is reused, not added to");
        let mut other = signal.wait();
        assert!(poll(&mut other, &old_waker).is_pending());
        drop(other);
        assert_eq!(signal.waiting(), 1, "a dropped wait leaves the list");
        signal.fire();
        assert_eq!(old.0.load(Ordering::SeqCst), 0);
        assert_eq!(
            new.0.load(Ordering::SeqCst),
            1,
            "the last waker polled is woken"
        );
        drop(wait);
        assert_eq!(signal.waiting(), 0);
    }

    #[tokio::test]
    async fn a_task_waiting_is_woken_from_another_thread() {
        let signal = Arc::new(Signal::default());
        let waiting = tokio::spawn(signal.wait());
        tokio::task::yield_now().await;
        let firing = signal.clone();
        std::thread::spawn(move || firing.fire()).join().unwrap();
        waiting.await.unwrap();
    }
}
