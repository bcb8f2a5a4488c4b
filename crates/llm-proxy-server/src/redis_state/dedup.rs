//! Request dedup across replicas: the local cache ([`crate::dedup`]) decides first; a request
//! it admits also claims its key in Redis (`SET key in-flight NX PX <in-flight limit>`), so an
//! identical request on another replica is refused while this one runs and, once it succeeded,
//! for the window (`SET key done PX <window>`); a failure deletes the claim so the retry goes
//! through anywhere. While Redis is down each replica deduplicates on its own (the claim is
//! skipped, never awaited beyond the link's timeout).

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use redis::SetOptions;

use super::{RedisDown, RedisLink};

/// A request's claim on its key in Redis, resolved with its local ticket.
#[derive(Debug)]
pub struct SharedClaim {
    link: Arc<RedisLink>,
    key: String,
    window: Duration,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Claims `request_key` for a request in flight for at most `in_flight`: `Ok(None)` when an
/// identical request holds it (in flight on another replica, or answered within the window).
pub async fn claim(
    link: &Arc<RedisLink>,
    request_key: u64,
    in_flight: Duration,
    window: Duration,
) -> Result<Option<SharedClaim>, RedisDown> {
    let key = link.key(&["dedup", &format!("{request_key:016x}")]);
    let k = key.clone();
    let set: Option<String> = link
        .run("dedup_claim", |mut c| async move {
            let opts = SetOptions::default()
                .conditional_set(redis::ExistenceCheck::NX)
                .with_expiration(redis::SetExpiry::PX(millis(in_flight)));
            c.set_options(&k, "in-flight", opts).await
        })
        .await?;
    Ok(set.map(|_| SharedClaim {
        link: Arc::clone(link),
        key,
        window,
    }))
}

impl SharedClaim {
    /// Records how the request ended, in the background (a finish hook never waits on Redis):
    /// a success keeps the key for the window, a failure deletes it.
    pub fn resolve(&self, succeeded: bool) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (link, key, window) = (Arc::clone(&self.link), self.key.clone(), self.window);
        runtime.spawn(async move {
            let _ = if succeeded {
                link.run("dedup_done", |mut c| async move {
                    c.pset_ex::<_, _, ()>(&key, "done", millis(window)).await
                })
                .await
            } else {
                link.run(
                    "dedup_forget",
                    |mut c| async move { c.del::<_, ()>(&key).await },
                )
                .await
            };
        });
    }
}
