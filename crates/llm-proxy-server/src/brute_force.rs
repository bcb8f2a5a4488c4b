//! Brute-force protection for client keys: per client address, `max_failed_attempts` failed
//! authentications within `ttl` block it for `initial_block`, multiplied by
//! `block_multiplier` per repeat up to `max_block`; a success forgets the address. Memory is
//! bounded: at most [`MAX_TRACKED_CLIENTS`] addresses are tracked, expired ones are dropped
//! first and then the least recently seen. IPv6 clients are tracked by their /64 network,
//! which one host can fill with addresses.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::config::BruteForceConfig;

/// Most client addresses tracked at once.
pub const MAX_TRACKED_CLIENTS: usize = 10_000;

/// Where the guard reads the time (injectable for tests).
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// The failed-authentication tracker shared by every request.
pub struct BruteForceGuard {
    config: BruteForceConfig,
    clock: Clock,
    max_tracked: usize,
    clients: Mutex<HashMap<IpAddr, Record>>,
    /// How many addresses are tracked, read without the lock on the success path.
    tracked: AtomicUsize,
}

#[derive(Debug, Default)]
struct Record {
    /// Failures since the last block, oldest first (at most `max_failed_attempts`).
    failures: VecDeque<Instant>,
    /// Blocks so far: each one lasts `block_multiplier` times longer.
    blocks: u32,
    blocked_until: Option<Instant>,
    last_failure: Option<Instant>,
}

impl Record {
    /// Nothing left to remember: no block running and no failure within `ttl` of it.
    fn expired(&self, now: Instant, ttl: Duration) -> bool {
        let last = match (self.blocked_until, self.last_failure) {
            (Some(b), Some(f)) => b.max(f),
            (Some(t), None) | (None, Some(t)) => t,
            (None, None) => return true,
        };
        now.saturating_duration_since(last) >= ttl
    }
}

impl std::fmt::Debug for BruteForceGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BruteForceGuard")
            .field("config", &self.config)
            .field("tracked", &self.tracked.load(Ordering::Relaxed))
            .finish()
    }
}

impl BruteForceGuard {
    /// A guard on the system clock.
    pub fn new(config: BruteForceConfig) -> Self {
        Self::with_clock(config, Arc::new(Instant::now), MAX_TRACKED_CLIENTS)
    }

    /// A guard reading the time from `clock` and tracking at most `max_tracked` addresses.
    pub fn with_clock(config: BruteForceConfig, clock: Clock, max_tracked: usize) -> Self {
        Self {
            config,
            clock,
            max_tracked: max_tracked.max(1),
            clients: Mutex::new(HashMap::new()),
            tracked: AtomicUsize::new(0),
        }
    }

    fn clients(&self) -> MutexGuard<'_, HashMap<IpAddr, Record>> {
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How long `client` is still blocked, if it is.
    pub fn blocked_for(&self, client: IpAddr) -> Option<Duration> {
        if !self.config.enabled || self.tracked.load(Ordering::Acquire) == 0 {
            return None;
        }
        let now = (self.clock)();
        let clients = self.clients();
        let until = clients.get(&tracking_key(client))?.blocked_until?;
        (until > now).then(|| until - now)
    }

    /// A failed authentication from `client`; returns the block it started, if any.
    pub fn record_failure(&self, client: IpAddr) -> Option<Duration> {
        if !self.config.enabled {
            return None;
        }
        let now = (self.clock)();
        let key = tracking_key(client);
        let cfg = &self.config;
        let mut clients = self.clients();
        if !clients.contains_key(&key) && clients.len() >= self.max_tracked {
            make_room(&mut clients, now, cfg.ttl);
        }
        let record = clients.entry(key).or_default();
        if record.expired(now, cfg.ttl) {
            *record = Record::default();
        }
        while record
            .failures
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= cfg.ttl)
        {
            record.failures.pop_front();
        }
        record.failures.push_back(now);
        record.last_failure = Some(now);
        let mut started = None;
        if record.failures.len() >= cfg.max_failed_attempts as usize {
            record.failures.clear();
            let factor = cfg
                .block_multiplier
                .powi(i32::try_from(record.blocks).unwrap_or(i32::MAX));
            let block = Duration::try_from_secs_f64(cfg.initial_block.as_secs_f64() * factor)
                .map_or(cfg.max_block, |d| d.min(cfg.max_block));
            record.blocks = record.blocks.saturating_add(1);
            record.blocked_until = Some(now + block);
            started = Some(block);
        }
        self.tracked.store(clients.len(), Ordering::Release);
        started
    }

    /// A successful authentication from `client`: it starts over.
    pub fn record_success(&self, client: IpAddr) {
        if self.tracked.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut clients = self.clients();
        clients.remove(&tracking_key(client));
        self.tracked.store(clients.len(), Ordering::Release);
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.tracked.load(Ordering::Acquire)
    }
}

/// Drops expired records, then the least recently failed one if still full.
fn make_room(clients: &mut HashMap<IpAddr, Record>, now: Instant, ttl: Duration) {
    let before = clients.len();
    clients.retain(|_, r| !r.expired(now, ttl));
    if clients.len() < before {
        return;
    }
    let oldest = clients
        .iter()
        .min_by_key(|(_, r)| r.last_failure)
        .map(|(k, _)| *k);
    if let Some(k) = oldest {
        clients.remove(&k);
    }
}

/// The address a client is tracked under: IPv4 (also when IPv4-mapped) as is, IPv6 by /64.
fn tracking_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(
                u128::from(v6) & 0xffff_ffff_ffff_ffff_0000_0000_0000_0000,
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock the test moves by hand.
    fn manual_clock() -> (Clock, Arc<Mutex<Instant>>) {
        let now = Arc::new(Mutex::new(Instant::now()));
        let read = now.clone();
        (Arc::new(move || *read.lock().unwrap()), now)
    }

    fn advance(now: &Mutex<Instant>, by: Duration) {
        let mut t = now.lock().unwrap();
        *t += by;
    }

    fn config() -> BruteForceConfig {
        BruteForceConfig {
            enabled: true,
            max_failed_attempts: 3,
            ttl: Duration::from_secs(900),
            initial_block: Duration::from_secs(30),
            block_multiplier: 2.0,
            max_block: Duration::from_secs(100),
        }
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 7));

    #[test]
    fn repeated_failures_block_with_growing_capped_durations() {
        let (clock, now) = manual_clock();
        let guard = BruteForceGuard::with_clock(config(), clock, 100);
        assert_eq!(guard.record_failure(IP), None);
        assert_eq!(guard.record_failure(IP), None);
        assert_eq!(guard.blocked_for(IP), None, "two of three failures");
        assert_eq!(guard.record_failure(IP), Some(Duration::from_secs(30)));
        assert_eq!(guard.blocked_for(IP), Some(Duration::from_secs(30)));
        advance(&now, Duration::from_secs(10));
        assert_eq!(guard.blocked_for(IP), Some(Duration::from_secs(20)));
        advance(&now, Duration::from_secs(20));
        assert_eq!(guard.blocked_for(IP), None, "the block is over");
        for _ in 0..2 {
            assert_eq!(guard.record_failure(IP), None);
        }
        assert_eq!(guard.record_failure(IP), Some(Duration::from_secs(60)));
        advance(&now, Duration::from_secs(60));
        for _ in 0..2 {
            guard.record_failure(IP);
        }
        assert_eq!(
            guard.record_failure(IP),
            Some(Duration::from_secs(100)),
            "capped at max_block"
        );
        let other = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 8));
        assert_eq!(guard.blocked_for(other), None, "per address");
    }

    #[test]
    fn failures_older_than_the_ttl_do_not_count_and_escalation_is_forgotten() {
        let (clock, now) = manual_clock();
        let guard = BruteForceGuard::with_clock(config(), clock, 100);
        guard.record_failure(IP);
        guard.record_failure(IP);
        advance(&now, Duration::from_secs(900));
        assert_eq!(guard.record_failure(IP), None, "the first two expired");
        assert_eq!(guard.record_failure(IP), None);
        assert_eq!(guard.record_failure(IP), Some(Duration::from_secs(30)));
        // A TTL after the block ended, the next block starts from the beginning again.
        advance(&now, Duration::from_secs(30 + 900));
        for _ in 0..2 {
            guard.record_failure(IP);
        }
        assert_eq!(guard.record_failure(IP), Some(Duration::from_secs(30)));
    }

    #[test]
    fn a_success_resets_the_client() {
        let (clock, _) = manual_clock();
        let guard = BruteForceGuard::with_clock(config(), clock, 100);
        guard.record_failure(IP);
        guard.record_failure(IP);
        guard.record_success(IP);
        assert_eq!(guard.tracked(), 0);
        assert_eq!(guard.record_failure(IP), None);
        assert_eq!(guard.record_failure(IP), None);
        assert_eq!(guard.record_failure(IP), Some(Duration::from_secs(30)));
    }

    #[test]
    fn disabled_protection_never_blocks() {
        let (clock, _) = manual_clock();
        let cfg = BruteForceConfig {
            enabled: false,
            ..config()
        };
        let guard = BruteForceGuard::with_clock(cfg, clock, 100);
        for _ in 0..10 {
            assert_eq!(guard.record_failure(IP), None);
        }
        assert_eq!(guard.blocked_for(IP), None);
        assert_eq!(guard.tracked(), 0);
    }

    #[test]
    fn tracked_addresses_are_capped_evicting_expired_then_oldest() {
        let (clock, now) = manual_clock();
        let guard = BruteForceGuard::with_clock(config(), clock, 4);
        let ip = |n: u8| IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, n));
        for n in 0..4 {
            guard.record_failure(ip(n));
            advance(&now, Duration::from_secs(1));
        }
        assert_eq!(guard.tracked(), 4);
        guard.record_failure(ip(10));
        assert_eq!(guard.tracked(), 4, "the oldest made room");
        for _ in 0..2 {
            guard.record_failure(ip(10));
        }
        assert!(guard.blocked_for(ip(10)).is_some());
        for n in 20..60 {
            guard.record_failure(ip(n));
            assert!(guard.tracked() <= 4);
        }
        advance(&now, Duration::from_secs(2000));
        guard.record_failure(ip(99));
        assert_eq!(guard.tracked(), 1, "expired records went first");
    }

    #[test]
    fn ipv6_clients_are_tracked_by_their_64_network() {
        let (clock, _) = manual_clock();
        let guard = BruteForceGuard::with_clock(config(), clock, 100);
        for host in 1..=3u16 {
            let ip = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, host));
            guard.record_failure(ip);
        }
        let sibling = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 9, 9, 9, 9));
        assert!(guard.blocked_for(sibling).is_some());
        let elsewhere = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 3, 0, 0, 0, 1));
        assert_eq!(guard.blocked_for(elsewhere), None);
        let mapped: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
        assert_eq!(tracking_key(mapped), IP);
    }
}
