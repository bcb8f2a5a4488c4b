//! Golden-fixture tests of every wire format, compared as JSON values.

mod anthropic;
mod gemini;
mod openai_responses;
