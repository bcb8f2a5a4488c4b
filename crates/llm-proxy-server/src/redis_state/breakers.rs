//! Circuit breakers shared by replicas. Each replica keeps its own breakers (admission never
//! waits on Redis); this module publishes what they learn and applies what the others
//! learned. A failure is counted in `llm-proxy:breaker:<instance>:failures` (INCR with an
//! expiry, so old failures fade); when the shared count reaches `failure_threshold`, or a
//! replica opens its breaker, `llm-proxy:breaker:<instance>:open` is set for the cooldown and
//! the opening is announced on the `llm-proxy:breakers` channel; every replica subscribed
//! opens its own breaker for what remains of it. A breaker closed after successful trials is
//! announced the same way. When the subscription (re)starts, the open keys are read again, so
//! a replica that was cut off catches up.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;

use super::link::{PROBE_EVERY, RedisLink};
use crate::routing::breaker::{BreakerEvent, Breakers};

/// Events queued beyond this are dropped (the local breakers still work).
const MAX_QUEUED: usize = 256;

/// Counts one failure of `KEYS[1]` (the counter, kept `ARGV[1]` ms); when it reaches
/// `ARGV[2]`, sets `KEYS[2]` (open) for `ARGV[3]` ms, clears the counter and returns 1.
const FAILED: &str = r"
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if n >= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// How long a failure counts towards opening on any replica: failures further apart than
/// this are not "consecutive".
fn failure_window(cooldown: Duration) -> Duration {
    cooldown.max(Duration::from_secs(60))
}

/// Starts publishing `breakers`' events to Redis and applying other replicas'. The tasks end
/// with the link and the breakers.
pub fn spawn(link: &Arc<RedisLink>, breakers: &Arc<Breakers>) {
    let (tx, rx) = mpsc::channel(MAX_QUEUED);
    breakers.publish_to(tx);
    // A random id, so a replica ignores its own announcements.
    let origin = format!("{:016x}", fastrand::u64(..));
    tokio::spawn(publish(
        Arc::downgrade(link),
        breakers.config().clone(),
        rx,
        origin.clone(),
    ));
    tokio::spawn(subscribe(
        Arc::downgrade(link),
        Arc::downgrade(breakers),
        origin,
    ));
}

fn channel(link: &RedisLink) -> String {
    link.key(&["breakers"])
}

async fn publish(
    link: Weak<RedisLink>,
    config: crate::config::CircuitBreakerConfig,
    mut rx: mpsc::Receiver<BreakerEvent>,
    origin: String,
) {
    let script = redis::Script::new(FAILED);
    let cooldown_ms = u64::try_from(config.open_cooldown.as_millis()).unwrap_or(u64::MAX);
    let window_ms =
        u64::try_from(failure_window(config.open_cooldown).as_millis()).unwrap_or(u64::MAX);
    while let Some(event) = rx.recv().await {
        let Some(link) = link.upgrade() else { return };
        let chan = channel(&link);
        match event {
            BreakerEvent::Failed(instance) => {
                let mut call = script.key(link.key(&["breaker", &instance, "failures"]));
                call.key(link.key(&["breaker", &instance, "open"]))
                    .arg(window_ms)
                    .arg(config.failure_threshold)
                    .arg(cooldown_ms);
                let opened = link
                    .run("breaker_failure", |mut c| async move {
                        call.invoke_async::<i64>(&mut c).await
                    })
                    .await;
                if opened == Ok(1) {
                    announce(
                        &link,
                        &chan,
                        &format!("open {origin} {cooldown_ms} {instance}"),
                    )
                    .await;
                }
            }
            BreakerEvent::Opened(instance) => {
                let open = link.key(&["breaker", &instance, "open"]);
                let failures = link.key(&["breaker", &instance, "failures"]);
                let set = link
                    .run("breaker_open", |mut c| async move {
                        redis::pipe()
                            .cmd("SET")
                            .arg(open)
                            .arg("1")
                            .arg("PX")
                            .arg(cooldown_ms)
                            .ignore()
                            .del(failures)
                            .ignore()
                            .query_async::<()>(&mut c)
                            .await
                    })
                    .await;
                if set.is_ok() {
                    announce(
                        &link,
                        &chan,
                        &format!("open {origin} {cooldown_ms} {instance}"),
                    )
                    .await;
                }
            }
            BreakerEvent::Recovered(instance) => {
                let failures = link.key(&["breaker", &instance, "failures"]);
                let _ = link
                    .run("breaker_recovered", |mut c| async move {
                        redis::AsyncCommands::del::<_, ()>(&mut c, failures).await
                    })
                    .await;
            }
            BreakerEvent::Closed(instance) => {
                let open = link.key(&["breaker", &instance, "open"]);
                let failures = link.key(&["breaker", &instance, "failures"]);
                let cleared = link
                    .run("breaker_closed", |mut c| async move {
                        redis::AsyncCommands::del::<_, ()>(&mut c, &[open, failures]).await
                    })
                    .await;
                if cleared.is_ok() {
                    announce(&link, &chan, &format!("closed {origin} 0 {instance}")).await;
                }
            }
        }
    }
}

async fn announce(link: &RedisLink, chan: &str, message: &str) {
    let chan = chan.to_owned();
    let message = message.to_owned();
    let _ = link
        .run("breaker_publish", |mut c| async move {
            redis::AsyncCommands::publish::<_, _, ()>(&mut c, chan, message).await
        })
        .await;
}

/// One announcement: `open|closed <origin> <remaining ms> <instance>`.
fn parse(message: &str) -> Option<(&str, &str, u64, &str)> {
    let mut parts = message.splitn(4, ' ');
    let what = parts.next()?;
    let origin = parts.next()?;
    let ms = parts.next()?.parse().ok()?;
    let instance = parts.next()?;
    Some((what, origin, ms, instance))
}

/// Keeps a subscription to the announcements while the link lives; reads the open breakers
/// each time it (re)subscribes.
async fn subscribe(link: Weak<RedisLink>, breakers: Weak<Breakers>, origin: String) {
    loop {
        let Some(strong) = link.upgrade() else { return };
        if !strong.is_up() {
            drop(strong);
            tokio::time::sleep(PROBE_EVERY).await;
            continue;
        }
        let pubsub = tokio::time::timeout(
            super::link::OP_TIMEOUT * 2,
            strong.client().get_async_pubsub(),
        )
        .await;
        let Ok(Ok(mut pubsub)) = pubsub else {
            drop(strong);
            tokio::time::sleep(PROBE_EVERY).await;
            continue;
        };
        if pubsub.subscribe(channel(&strong)).await.is_err() {
            drop(strong);
            tokio::time::sleep(PROBE_EVERY).await;
            continue;
        }
        let Some(shared) = breakers.upgrade() else {
            return;
        };
        catch_up(&strong, &shared).await;
        drop((strong, shared));
        let mut messages = pubsub.into_on_message();
        while let Some(msg) = messages.next().await {
            let Ok(text) = msg.get_payload::<String>() else {
                continue;
            };
            let Some(shared) = breakers.upgrade() else {
                return;
            };
            match parse(&text) {
                Some((_, from, _, _)) if from == origin => {}
                Some(("open", _, ms, instance)) => {
                    shared.open_from_peer(instance, Duration::from_millis(ms));
                }
                Some(("closed", _, _, instance)) => shared.close_from_peer(instance),
                _ => {}
            }
            if link.strong_count() == 0 {
                return;
            }
        }
        // The connection dropped: resubscribe once Redis is back.
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// Opens here every breaker open in Redis, for what remains of its cooldown.
async fn catch_up(link: &RedisLink, breakers: &Breakers) {
    let instances: Vec<String> = breakers.instances().map(str::to_owned).collect();
    for instance in instances {
        let key = link.key(&["breaker", &instance, "open"]);
        let remaining = link
            .run("breaker_catch_up", |mut c| async move {
                redis::AsyncCommands::pttl::<_, i64>(&mut c, key).await
            })
            .await;
        if let Ok(ms) = remaining
            && let Ok(ms) = u64::try_from(ms)
            && ms > 0
        {
            breakers.open_from_peer(&instance, Duration::from_millis(ms));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_parse() {
        assert_eq!(
            parse("open abc 30000 openai:gpt"),
            Some(("open", "abc", 30000, "openai:gpt"))
        );
        assert_eq!(parse("closed abc 0 a b"), Some(("closed", "abc", 0, "a b")));
        assert_eq!(parse("open abc"), None);
        assert_eq!(parse("open abc x y"), None);
    }

    #[test]
    fn old_failures_fade_after_at_least_a_minute() {
        assert_eq!(failure_window(Duration::ZERO), Duration::from_secs(60));
        assert_eq!(
            failure_window(Duration::from_secs(600)),
            Duration::from_secs(600)
        );
    }
}
