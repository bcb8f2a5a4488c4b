//! Sessions: what one conversation has asked the proxy to remember (`!/set(...)` and friends).
//! `state.rs` is the state itself; id resolution, the store trait and its in-process store,
//! and applying the state to a request live next to it.

pub mod state;

pub use state::{FailoverRoute, SessionState};
