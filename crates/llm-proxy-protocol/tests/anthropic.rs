//! Anthropic golden fixtures.
