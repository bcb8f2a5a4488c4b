//! Gemini generateContent wire format (work in progress).
