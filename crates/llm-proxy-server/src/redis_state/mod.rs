//! State shared by replicas through Redis (`state.redis_url`), behind the same traits as the
//! in-process state: `link.rs` the connection and its health, `sessions.rs` the
//! [`SessionStore`](crate::session::SessionStore) (with `session_cache.rs`, which local copies
//! are current), `responses.rs` the
//! [`ResponseStore`](crate::responses_store::ResponseStore), `breakers.rs` the circuit
//! breakers' publication and subscription. Without a URL none of this is built.
//!
//! Request dedup (built elsewhere as a request stage with a local bounded cache) would plug in
//! here the same way: a `SET key NX PX ttl` claim per request fingerprint on this link, the
//! local cache in front, and the local cache alone while the link is down.

pub mod breakers;
pub mod link;
pub mod responses;
pub mod session_cache;
pub mod sessions;

pub use link::{RedisDown, RedisLink};
pub use responses::RedisResponseStore;
pub use sessions::RedisSessionStore;
