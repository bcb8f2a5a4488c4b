//! State shared by replicas through Redis (`state.redis_url`), behind the same traits as the
//! in-process state: `link.rs` the connection and its health, `sessions.rs` the
//! [`SessionStore`](crate::session::SessionStore) (with `session_cache.rs`, which local copies
//! are current), `responses.rs` the
//! [`ResponseStore`](crate::responses_store::ResponseStore), `breakers.rs` the circuit
//! breakers' publication and subscription. Without a URL none of this is built.
//!
//! `dedup.rs` extends the request-dedup stage's local cache across replicas (a `SET NX PX`
//! claim per request key; the local cache in front, alone while the link is down).

pub mod breakers;
pub mod dedup;
pub mod link;
pub mod responses;
pub mod session_cache;
pub mod sessions;

pub use link::{RedisDown, RedisLink};
pub use responses::RedisResponseStore;
pub use sessions::RedisSessionStore;
