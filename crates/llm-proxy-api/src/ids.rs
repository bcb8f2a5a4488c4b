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

/// `prefix` and `n` as 16 lowercase hex digits (`format!("{prefix}{n:016x}")` without the
/// formatting machinery: ids are made on every request).
fn prefixed_hex(prefix: &str, n: u64) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(prefix.len() + 16);
    id.push_str(prefix);
    for shift in (0..16).rev() {
        id.push(char::from(DIGITS[((n >> (shift * 4)) & 0xf) as usize]));
    }
    id
}

/// An id for something a request made (`msg_<hex>` for `req_<hex>`): `prefix` followed by the
/// request id less its `req_`, in one allocation of the right size.
pub fn derived(prefix: &str, request_id: &str) -> String {
    let rest = request_id.strip_prefix("req_").unwrap_or(request_id);
    let mut id = String::with_capacity(prefix.len() + rest.len());
    id.push_str(prefix);
    id.push_str(rest);
    id
}

/// A new proxy request id (`req_<hex>`).
pub fn request_id() -> String {
    prefixed_hex("req_", unique())
}

/// A new response id (`resp_<hex>`), used when the upstream gave none.
pub fn response_id() -> String {
    prefixed_hex("resp_", unique())
}

/// A new tool-call id (`call_<hex>`), for upstreams that give none (Gemini).
pub fn tool_call_id() -> String {
    prefixed_hex("call_", unique())
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

    #[test]
    fn hex_ids_print_as_format_prints_them() {
        for n in [0, 1, 0xabc, u64::MAX, 0x0123_4567_89ab_cdef] {
            assert_eq!(super::prefixed_hex("x_", n), format!("x_{n:016x}"));
        }
        assert_eq!(super::derived("resp_", "req_ab"), "resp_ab");
        assert_eq!(super::derived("msg_", "other"), "msg_other");
    }
}
