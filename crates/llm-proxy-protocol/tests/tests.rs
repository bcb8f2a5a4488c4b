//! Golden-fixture tests of every wire format, compared as JSON values.

mod anthropic;
mod cache_usage;
mod gemini;
mod openai_responses;
