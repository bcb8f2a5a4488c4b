//! Id and clock helpers shared by every crate (request ids, response ids, unix time).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique() -> u64 {
    // Process start time (nanos) in the high bits keeps ids distinct across restarts.
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    base.wrapping_add(
        COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15),
    )
}

/// A new proxy request id (`req_<hex>`).
pub fn request_id() -> String {
    format!("req_{:016x}", unique())
}

/// A new response id (`resp_<hex>`), used when the upstream gave none.
pub fn response_id() -> String {
    format!("resp_{:016x}", unique())
}

/// A new tool-call id (`call_<hex>`), for upstreams that give none (Gemini).
pub fn tool_call_id() -> String {
    format!("call_{:016x}", unique())
}

/// Current unix time in seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_unique() {
        let a = super::request_id();
        let b = super::request_id();
        assert_ne!(a, b);
        assert!(a.starts_with("req_"));
    }
}
