//! Sessions: what one conversation has asked the proxy to remember (`!/set(...)` and friends).
//! `state.rs` is the state itself; `id.rs` finds which session a request belongs to,
//! `store.rs` is the store trait (`memory.rs` its in-process store), and `apply.rs` applies
//! the state to a request (parameters, route override).

pub mod apply;
pub mod id;
pub mod memory;
pub mod state;
pub mod store;

pub use apply::{apply_to_request, route_for};
pub use id::{SessionId, SessionSource, client_label_of_key};
pub use memory::MemoryStore;
pub use state::{FailoverRoute, KeptTurn, SessionState};
pub use store::{SessionConfig, SessionStore, SessionStoreError};
