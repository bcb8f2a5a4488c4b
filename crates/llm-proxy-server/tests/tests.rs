//! Integration tests of the gateway: the real router on 127.0.0.1:0 against mock upstreams.

mod common;
mod errors;
mod openai_chat;
mod routing;
mod streaming;
