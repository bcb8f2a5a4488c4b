//! Gemini golden fixtures.
