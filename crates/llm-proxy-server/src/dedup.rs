//! Request dedup: an identical request (same client key, session, client protocol, stream
//! flag, model, messages and tools) arriving while the first is in flight, or within the window after it succeeded, is refused
//! (429) instead of paying for a second upstream call — agents in retry storms send exactly
//! that. A request that failed, whatever the error, is forgotten at once so the client's retry
//! goes through: errors are never cached.
//!
//! The key is a keyed 64-bit hash over the request's fields, fed directly (no serialization
//! of the text; only JSON values such as tool schemas go through a counting writer). The
//! cache is bounded; expired entries are swept when it is full and at most every 30 seconds
//! on insert, so there is no background task.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use llm_proxy_api::model::{ChatRequest, MediaSource, Part};

use crate::config::DedupConfig;
use crate::context::RequestContext;
use crate::finish::{FinishHook, Finished};

/// How often expired entries are swept on insert.
/// Seed of the request key's hash (the same in every replica).
const KEY_SEED: u64 = 0x6c6c_6d2d_7072_6f78;

const SWEEP_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
enum Entry {
    /// The first request is still running.
    InFlight { since: Instant },
    /// It succeeded (or its client left after the call started) at this time.
    Done { at: Instant },
}

#[derive(Debug)]
struct Inner {
    /// By request key, hashed again with a per-process seed (the keys' own seed is fixed).
    entries: HashMap<u64, Entry, foldhash::fast::RandomState>,
    last_sweep: Instant,
}

/// The cache of recent requests, shared by every request.
#[derive(Debug)]
pub struct DedupCache {
    window: Duration,
    /// In-flight entries older than this are taken as lost (the proxy's own request timeout
    /// plus the window).
    in_flight_limit: Duration,
    max_entries: usize,
    /// Least time between two sweeps of a full cache.
    full_sweep_gap: Duration,
    /// Fixed seed: replicas sharing Redis must compute the same key for the same request.
    hasher: foldhash::quality::FixedState,
    inner: Mutex<Inner>,
}

/// Who sent a request: the label of its client key (multi-user mode) and its protocol. The
/// same conversation through two protocols, or from two keys, is two clients, not a retry.
#[derive(Debug, Clone, Copy, Default)]
pub struct Client<'a> {
    /// The authenticated key's label.
    pub key_label: Option<&'a str>,
    /// The client protocol's label.
    pub protocol: &'a str,
}

/// Whether a request may go on.
#[derive(Debug)]
pub enum Admission {
    /// It may; the ticket records how it ends.
    Go(Ticket),
    /// An identical request is in flight or just succeeded.
    Duplicate {
        /// When a repeat would be accepted (at the earliest).
        retry_after: Duration,
    },
}

impl DedupCache {
    /// A cache with `config`'s window and bound; `proxy_timeout` bounds how long an in-flight
    /// entry can block its repeats.
    pub fn new(config: &DedupConfig, proxy_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            window: config.window,
            in_flight_limit: proxy_timeout.saturating_add(config.window),
            max_entries: config.max_entries.max(1),
            full_sweep_gap: (config.window / 4).max(Duration::from_millis(10)),
            hasher: foldhash::quality::FixedState::with_seed(KEY_SEED),
            inner: Mutex::new(Inner {
                entries: HashMap::default(),
                last_sweep: Instant::now(),
            }),
        })
    }

    /// The key of `req` as sent by this client (its key's label, if any, and its protocol)
    /// in this session.
    pub fn key(&self, client: Client<'_>, session: Option<&str>, req: &ChatRequest) -> u64 {
        let mut h = self.hasher.build_hasher();
        write_opt(&mut h, client.key_label);
        write_str(&mut h, client.protocol);
        write_opt(&mut h, session);
        hash_request(&mut h, req);
        h.finish()
    }

    /// Admits the request with `key` (and then remembers it as in flight) or refuses it as a
    /// duplicate. A full cache that cannot be swept admits without remembering.
    pub fn admit(self: &Arc<Self>, key: u64) -> Admission {
        let now = Instant::now();
        let Ok(mut inner) = self.inner.lock() else {
            return Admission::Go(Ticket::untracked());
        };
        if let Some(entry) = inner.entries.get(&key).copied() {
            match entry {
                Entry::InFlight { since } if now.duration_since(since) < self.in_flight_limit => {
                    return Admission::Duplicate {
                        retry_after: self.window,
                    };
                }
                Entry::Done { at } if now.duration_since(at) < self.window => {
                    return Admission::Duplicate {
                        retry_after: self.window - now.duration_since(at),
                    };
                }
                _ => {}
            }
        }
        // A full cache is swept at most a few times per window: sweeping it on every request
        // (all entries still young under sustained load) made each admission walk the whole
        // map under the lock and halved throughput at 64 connections.
        let since_sweep = now.duration_since(inner.last_sweep);
        let full = inner.entries.len() >= self.max_entries;
        if since_sweep >= SWEEP_EVERY || (full && since_sweep >= self.full_sweep_gap) {
            self.sweep(&mut inner, now);
        }
        if inner.entries.len() >= self.max_entries && !inner.entries.contains_key(&key) {
            return Admission::Go(Ticket::untracked());
        }
        inner.entries.insert(key, Entry::InFlight { since: now });
        Admission::Go(Ticket {
            cache: Some(self.clone()),
            key,
            resolved: AtomicBool::new(false),
            shared: None,
        })
    }

    fn sweep(&self, inner: &mut Inner, now: Instant) {
        inner.entries.retain(|_, e| match *e {
            Entry::InFlight { since } => now.duration_since(since) < self.in_flight_limit,
            Entry::Done { at } => now.duration_since(at) < self.window,
        });
        inner.last_sweep = now;
    }

    fn resolve(&self, key: u64, succeeded: bool) {
        if let Ok(mut inner) = self.inner.lock() {
            if succeeded {
                inner
                    .entries
                    .insert(key, Entry::Done { at: Instant::now() });
            } else {
                inner.entries.remove(&key);
            }
        }
    }

    /// How long an identical request is refused after a success.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// How long an in-flight entry can block its repeats.
    pub fn in_flight_limit(&self) -> Duration {
        self.in_flight_limit
    }

    /// Number of requests remembered.
    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |i| i.entries.len())
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One admitted request's place in the cache. Resolved by the finish hook when the request
/// ends; one dropped unresolved (the client left before the end was recorded) counts as done,
/// since its upstream call may have been paid for.
#[derive(Debug)]
pub struct Ticket {
    cache: Option<Arc<DedupCache>>,
    key: u64,
    resolved: AtomicBool,
    /// The same claim in the Redis shared by replicas, when there is one.
    shared: Option<crate::redis_state::dedup::SharedClaim>,
}

impl Ticket {
    fn untracked() -> Self {
        Self {
            cache: None,
            key: 0,
            resolved: AtomicBool::new(true),
            shared: None,
        }
    }

    /// Records that the request also holds `claim` in the shared store, resolved with it.
    pub fn share(&mut self, claim: crate::redis_state::dedup::SharedClaim) {
        self.shared = Some(claim);
    }

    /// Records how the request ended: success (or a client that left) keeps the entry for
    /// the window, a failure forgets it.
    pub fn resolve(&self, succeeded: bool) {
        if self.resolved.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(cache) = &self.cache {
            cache.resolve(self.key, succeeded);
        }
        if let Some(claim) = &self.shared {
            claim.resolve(succeeded);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.resolve(true);
    }
}

/// Resolves the request's ticket when it is over.
#[derive(Debug, Default)]
pub struct ReleaseDedup;

impl FinishHook for ReleaseDedup {
    fn name(&self) -> &'static str {
        "request-dedup"
    }

    fn finish(&self, ctx: &RequestContext, finished: &Finished<'_>) {
        if let Some(ticket) = ctx.dedup_ticket() {
            ticket.resolve(matches!(finished.outcome, "ok" | "client_disconnected"));
        }
    }
}

fn write_str(h: &mut impl Hasher, s: &str) {
    h.write_usize(s.len());
    h.write(s.as_bytes());
}

fn write_opt(h: &mut impl Hasher, s: Option<&str>) {
    match s {
        Some(s) => {
            h.write_u8(1);
            write_str(h, s);
        }
        None => h.write_u8(0),
    }
}

fn write_json(h: &mut impl Hasher, v: &impl serde::Serialize) {
    struct Feed<'a, H>(&'a mut H);
    impl<H: Hasher> std::io::Write for Feed<'_, H> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.write(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let _ = serde_json::to_writer(Feed(h), v);
    h.write_u8(0xff);
}

fn hash_part(h: &mut impl Hasher, p: &Part) {
    match p {
        Part::Text(t) => {
            h.write_u8(1);
            write_str(h, &t.text);
        }
        Part::Image(i) => {
            h.write_u8(2);
            match &i.source {
                MediaSource::Url { url } => write_str(h, url),
                MediaSource::Base64 { media_type, data } => {
                    write_str(h, media_type);
                    write_str(h, data);
                }
            }
            write_opt(h, i.detail.as_deref());
        }
        Part::Audio(a) => {
            h.write_u8(3);
            write_str(h, &a.format);
            write_str(h, &a.data);
        }
        Part::Reasoning(b) => {
            h.write_u8(4);
            write_str(h, &b.text);
            write_opt(h, b.signature.as_deref());
            write_opt(h, b.redacted.as_deref());
        }
        Part::ToolCall(c) => {
            h.write_u8(5);
            write_str(h, &c.id);
            write_str(h, &c.name);
            write_str(h, &c.arguments);
        }
        Part::ToolResult(r) => {
            h.write_u8(6);
            write_str(h, &r.call_id);
            h.write_u8(u8::from(r.is_error));
            h.write_usize(r.content.len());
            for p in &r.content {
                hash_part(h, p);
            }
        }
        Part::Opaque(o) => {
            h.write_u8(7);
            write_str(h, &o.protocol);
            write_json(h, &o.value);
        }
    }
}

/// Feeds what makes two requests the same call into `h`: the model, streamed or not, the
/// messages, the tools and the (small) settings, so only an exact repeat matches.
fn hash_request(h: &mut impl Hasher, req: &ChatRequest) {
    write_str(h, &req.model);
    h.write_u8(u8::from(req.stream));
    write_json(h, &req.sampling);
    write_json(h, &req.max_tokens);
    write_json(h, &req.stop);
    write_json(h, &req.tool_choice);
    write_json(h, &req.response_format);
    write_json(h, &req.reasoning);
    write_json(h, &req.user);
    write_json(h, &req.metadata);
    write_json(h, &req.extra);
    h.write_usize(req.messages.len());
    for m in &req.messages {
        h.write_u8(m.role as u8);
        write_opt(h, m.name.as_deref());
        h.write_usize(m.content.len());
        for p in &m.content {
            hash_part(h, p);
        }
    }
    h.write_usize(req.tools.len());
    for t in &req.tools {
        write_str(h, &t.name);
        write_opt(h, t.description.as_deref());
        write_json(h, &t.parameters);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_proxy_api::{Message, Role};

    const NONE: Client<'static> = Client {
        key_label: None,
        protocol: "openai",
    };

    fn req(text: &str) -> ChatRequest {
        ChatRequest {
            model: "gpt-4o".into(),
            messages: vec![Message::text(Role::User, text)],
            ..ChatRequest::default()
        }
    }

    fn cache(window_secs: u64, max: usize) -> Arc<DedupCache> {
        DedupCache::new(
            &DedupConfig {
                window: Duration::from_secs(window_secs),
                max_entries: max,
            },
            Duration::from_secs(600),
        )
    }

    #[test]
    fn the_key_covers_session_client_model_messages_and_tools() {
        let c = cache(3, 10);
        let base = c.key(NONE, Some("s1"), &req("hi"));
        assert_eq!(base, c.key(NONE, Some("s1"), &req("hi")));
        assert_ne!(base, c.key(NONE, Some("s2"), &req("hi")));
        assert_ne!(base, c.key(NONE, None, &req("hi")));
        assert_ne!(
            base,
            c.key(
                Client {
                    key_label: Some("k"),
                    ..NONE
                },
                Some("s1"),
                &req("hi")
            )
        );
        assert_ne!(base, c.key(NONE, Some("s1"), &req("hi!")));
        let mut other_model = req("hi");
        other_model.model = "gpt-4.1".into();
        assert_ne!(base, c.key(NONE, Some("s1"), &other_model));
        let mut with_tool = req("hi");
        with_tool.tools.push(llm_proxy_api::model::ToolDefinition {
            name: "f".into(),
            description: None,
            parameters: serde_json::json!({"type": "object"}),
            strict: None,
            cache_control: None,
        });
        assert_ne!(base, c.key(NONE, Some("s1"), &with_tool));
        // Field boundaries matter: "ab"+"c" is not "a"+"bc".
        let two = |a: &str, b: &str| ChatRequest {
            messages: vec![Message::text(Role::User, a), Message::text(Role::User, b)],
            ..ChatRequest::default()
        };
        assert_ne!(
            c.key(NONE, None, &two("ab", "c")),
            c.key(NONE, None, &two("a", "bc"))
        );
        let other_protocol = Client {
            protocol: "anthropic",
            ..NONE
        };
        assert_ne!(base, c.key(other_protocol, Some("s1"), &req("hi")));
        let mut streamed = req("hi");
        streamed.stream = true;
        assert_ne!(base, c.key(NONE, Some("s1"), &streamed));
        // Only an exact repeat matches: settings count too.
        let mut warmer = req("hi");
        warmer.sampling.temperature = Some(0.9);
        assert_ne!(base, c.key(NONE, Some("s1"), &warmer));
    }

    #[test]
    fn in_flight_and_recent_successes_block_failures_do_not() {
        let c = cache(3, 10);
        let k = c.key(NONE, None, &req("hi"));
        let Admission::Go(first) = c.admit(k) else {
            panic!("the first request is admitted")
        };
        assert!(matches!(c.admit(k), Admission::Duplicate { .. }));
        first.resolve(false);
        assert!(c.is_empty(), "a failure is forgotten");
        let Admission::Go(second) = c.admit(k) else {
            panic!("admitted again after a failure")
        };
        second.resolve(true);
        match c.admit(k) {
            Admission::Duplicate { retry_after } => assert!(retry_after <= Duration::from_secs(3)),
            Admission::Go(_) => panic!("a fresh success blocks its repeat"),
        }
        // A different request is not affected.
        assert!(matches!(
            c.admit(c.key(NONE, None, &req("other"))),
            Admission::Go(_)
        ));
    }

    #[test]
    fn a_ticket_dropped_unresolved_counts_as_done() {
        let c = cache(3, 10);
        let k = c.key(NONE, None, &req("hi"));
        let Admission::Go(t) = c.admit(k) else {
            panic!("admitted")
        };
        drop(t);
        assert!(matches!(c.admit(k), Admission::Duplicate { .. }));
    }

    #[test]
    fn successes_expire_after_the_window() {
        let c = cache(0, 10);
        let k = c.key(NONE, None, &req("hi"));
        let Admission::Go(t) = c.admit(k) else {
            panic!("admitted")
        };
        t.resolve(true);
        // A zero window: the success is already outside it.
        assert!(matches!(c.admit(k), Admission::Go(_)));
    }

    #[test]
    fn the_cache_is_bounded_and_admits_when_full() {
        let c = cache(3600, 2);
        let mut tickets = Vec::new();
        for i in 0..5 {
            match c.admit(c.key(NONE, None, &req(&i.to_string()))) {
                Admission::Go(t) => tickets.push(t),
                Admission::Duplicate { .. } => panic!("distinct requests are never duplicates"),
            }
        }
        assert_eq!(c.len(), 2);
        // Untracked tickets resolve to nothing.
        drop(tickets);
        assert_eq!(c.len(), 2);
    }
}
