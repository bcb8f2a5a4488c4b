//! Anthropic Messages wire format (work in progress).
