//! The connection to Redis and its health: one auto-reconnecting connection shared by every
//! store, a bounded time per command, and the up/down state the stores read to fall back to
//! local state at once (no request waits on a Redis that is down). While down, a background
//! probe pings every [`PROBE_EVERY`]; when Redis answers again the stores are told to
//! resynchronise ([`RedisLink::recoveries`]). Failures are logged once per [`COMPLAIN_EVERY`]
//! and counted in `/metrics`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use llm_proxy_api::scrub::Scrubber;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

/// Longest a command may take before Redis is taken for down.
pub const OP_TIMEOUT: Duration = Duration::from_millis(500);
/// How often a down Redis is probed.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);
/// At most one warning per this interval while Redis stays unreachable.
pub const COMPLAIN_EVERY: Duration = Duration::from_secs(30);

const UP: &str = "llm_proxy_redis_up";
const ERRORS: &str = "llm_proxy_redis_errors_total";
/// Operations served from local state because Redis was down, by store.
pub const FALLBACKS: &str = "llm_proxy_redis_fallbacks_total";

/// Redis could not be used for this operation (down, timed out, or it refused the command);
/// the caller falls back to local state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisDown;

/// The shared connection.
pub struct RedisLink {
    client: redis::Client,
    conn: RwLock<Option<ConnectionManager>>,
    up: AtomicBool,
    last_complaint: Mutex<Option<Instant>>,
    /// Bumped each time Redis becomes reachable (first connection included).
    recovered: watch::Sender<u64>,
    /// Key prefix of everything this proxy stores.
    prefix: String,
    scrubber: Scrubber,
    /// Session invalidations received from other replicas (see `session_cache.rs`).
    session_invalidations: AtomicU64,
    /// Times the session invalidation channel was (re)subscribed.
    session_subscriptions: AtomicU64,
    _stop: DropGuard,
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLink")
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

impl RedisLink {
    /// A link to `url` (no I/O yet: the connection is made by a background task, so a proxy
    /// starts, and serves from local state, while Redis is down). Needs a Tokio runtime.
    /// `scrubber` masks the URL's password in anything logged.
    pub fn start(url: &str, scrubber: Scrubber) -> Result<Arc<Self>, String> {
        let client = redis::Client::open(url)
            .map_err(|e| format!("state.redis_url: {}", scrubber.scrub(&e.to_string())))?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "state.redis_url: Redis needs a Tokio runtime".to_owned())?;
        let stop = CancellationToken::new();
        let link = Arc::new(Self {
            client,
            conn: RwLock::new(None),
            up: AtomicBool::new(false),
            last_complaint: Mutex::new(None),
            recovered: watch::Sender::new(0),
            prefix: "llm-proxy:".to_owned(),
            scrubber,
            session_invalidations: AtomicU64::new(0),
            session_subscriptions: AtomicU64::new(0),
            _stop: stop.clone().drop_guard(),
        });
        metrics::gauge!(UP).set(0.0);
        runtime.spawn(probe(Arc::downgrade(&link), stop));
        Ok(link)
    }

    /// Whether the last command (or probe) reached Redis.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// `key` under this proxy's prefix.
    pub fn key(&self, parts: &[&str]) -> String {
        let mut key = self.prefix.clone();
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                key.push(':');
            }
            key.push_str(part);
        }
        key
    }

    /// The client (for a pub/sub connection of one's own).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// Changes each time Redis becomes reachable: stores push what they kept locally meanwhile.
    pub fn recoveries(&self) -> watch::Receiver<u64> {
        self.recovered.subscribe()
    }

    /// Session invalidations this replica received from others (tests and diagnostics).
    pub fn session_invalidations(&self) -> u64 {
        self.session_invalidations.load(Ordering::Relaxed)
    }

    /// Times this replica (re)subscribed to session invalidations (tests and diagnostics).
    pub fn session_subscriptions(&self) -> u64 {
        self.session_subscriptions.load(Ordering::Relaxed)
    }

    pub(super) fn note_session_invalidation(&self) {
        self.session_invalidations.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn note_session_subscription(&self) {
        self.session_subscriptions.fetch_add(1, Ordering::Relaxed);
    }

    /// Waits until Redis has been reached once (tests, and a caller that prefers to).
    pub async fn connected(&self) {
        let mut rx = self.recoveries();
        let _ = rx.wait_for(|n| *n > 0).await;
    }

    /// Runs `op` on the connection unless Redis is known to be down; within [`OP_TIMEOUT`].
    pub async fn run<T, F, Fut>(&self, what: &'static str, op: F) -> Result<T, RedisDown>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if !self.is_up() {
            return Err(RedisDown);
        }
        let Some(conn) = self.connection() else {
            return Err(RedisDown);
        };
        match tokio::time::timeout(OP_TIMEOUT, op(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let unreachable = e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal();
                self.failed(what, &e.to_string(), unreachable);
                Err(RedisDown)
            }
            Err(_) => {
                self.failed(what, "timed out", true);
                Err(RedisDown)
            }
        }
    }

    fn connection(&self) -> Option<ConnectionManager> {
        self.conn
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn failed(&self, what: &'static str, why: &str, unreachable: bool) {
        metrics::counter!(ERRORS, "op" => what).increment(1);
        if unreachable && self.up.swap(false, Ordering::Relaxed) {
            metrics::gauge!(UP).set(0.0);
        }
        let mut last = self
            .last_complaint
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.is_none_or(|t| t.elapsed() >= COMPLAIN_EVERY) {
            *last = Some(Instant::now());
            let why = self.scrubber.scrub(why);
            if unreachable {
                tracing::warn!(
                    op = what,
                    "Redis unreachable ({why}): serving from local state until it is back"
                );
            } else {
                tracing::warn!(op = what, "Redis refused a command: {why}");
            }
        }
    }

    fn mark_up(&self) {
        if !self.up.swap(true, Ordering::Relaxed) {
            metrics::gauge!(UP).set(1.0);
            *self
                .last_complaint
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = None;
            tracing::info!("Redis reachable: shared state in use");
            self.recovered.send_modify(|n| *n += 1);
        }
    }
}

/// Connects, then pings every [`PROBE_EVERY`] while Redis is down; ends with the link.
async fn probe(link: Weak<RedisLink>, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(PROBE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let Some(link) = link.upgrade() else { return };
        if link.is_up() {
            continue;
        }
        let conn = match link.connection() {
            Some(conn) => conn,
            None => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(OP_TIMEOUT)
                    .set_response_timeout(OP_TIMEOUT)
                    .set_number_of_retries(1);
                let made = tokio::time::timeout(
                    OP_TIMEOUT * 2,
                    ConnectionManager::new_with_config(link.client.clone(), config),
                )
                .await;
                match made {
                    Ok(Ok(conn)) => {
                        *link.conn.write().unwrap_or_else(PoisonError::into_inner) =
                            Some(conn.clone());
                        conn
                    }
                    Ok(Err(e)) => {
                        link.failed("connect", &e.to_string(), true);
                        continue;
                    }
                    Err(_) => {
                        link.failed("connect", "timed out", true);
                        continue;
                    }
                }
            }
        };
        let mut conn = conn;
        let pong = tokio::time::timeout(
            OP_TIMEOUT,
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await;
        match pong {
            Ok(Ok(_)) => link.mark_up(),
            Ok(Err(e)) => link.failed("ping", &e.to_string(), true),
            Err(_) => link.failed("ping", "timed out", true),
        }
    }
}
