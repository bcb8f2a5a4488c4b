//! CPU time spent by a process or one thread, from `/proc/<pid>/stat` and
//! `/proc/self/task/<tid>/stat` (user + system): the figure a shared, noisy machine moves least,
//! since time spent waiting for a core is not counted. Linux only; `None` elsewhere.

use std::time::Duration;

/// The kernel reports these times in `USER_HZ` ticks, 100 per second on every Linux build.
const TICKS_PER_SECOND: u64 = 100;

/// User + system CPU time of process `pid` (all its threads, past and present).
pub fn process(pid: u32) -> Option<Duration> {
    stat_cpu(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// User + system CPU time of thread `tid` of this process.
pub fn thread(tid: u32) -> Option<Duration> {
    stat_cpu(&std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?)
}

/// The calling thread's id (`/proc/thread-self` names it).
pub fn current_thread_id() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// utime + stime of a `stat` line. The command name (field 2) is in parentheses and may hold
/// spaces or parentheses itself: fields are counted after its last `)`.
fn stat_cpu(stat: &str) -> Option<Duration> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: state is field 3, utime field 14, stime field 15.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = utime.checked_add(stime)?;
    Some(Duration::from_millis(
        ticks.saturating_mul(1000) / TICKS_PER_SECOND,
    ))
}

/// CPU used between two readings, per request, in milliseconds.
pub fn per_request_ms(
    before: Option<Duration>,
    after: Option<Duration>,
    requests: usize,
) -> Option<f64> {
    let used = after?.checked_sub(before?)?;
    (requests > 0).then(|| used.as_secs_f64() * 1000.0 / requests as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utime_and_stime_after_an_awkward_name() {
        let stat = "4242 (llm proxy) (x)) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 9 0 1000 0 0";
        assert_eq!(stat_cpu(stat), Some(Duration::from_millis(3250)));
        assert_eq!(stat_cpu("garbage"), None);
    }

    #[test]
    fn reads_own_process_and_thread() {
        let tid = current_thread_id().unwrap();
        // Burn a little CPU so the readings are not both zero on a fast machine.
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        assert_ne!(x, 1);
        let own = process(std::process::id()).unwrap();
        let this = thread(tid).unwrap();
        assert!(own >= this, "{own:?} < {this:?}");
    }

    #[test]
    fn per_request_needs_both_readings_and_requests() {
        let s = Duration::from_millis;
        assert_eq!(per_request_ms(Some(s(100)), Some(s(300)), 1000), Some(0.2));
        assert_eq!(per_request_ms(None, Some(s(300)), 1000), None);
        assert_eq!(per_request_ms(Some(s(100)), Some(s(300)), 0), None);
    }
}
