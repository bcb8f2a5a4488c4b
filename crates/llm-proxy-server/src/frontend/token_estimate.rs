//! The rough token count behind the `count_tokens` endpoints: about four characters per
//! token over the JSON text of what the model would read. Clients use it to decide when to
//! compact a conversation, so it only needs to be in the right range.

use serde_json::Value;

/// Estimated tokens of `parts` (absent parts count nothing); at least 1.
pub fn estimate_tokens(parts: &[Option<&Value>]) -> u64 {
    let chars: usize = parts
        .iter()
        .flatten()
        .map(|v| match v {
            Value::String(s) => s.chars().count(),
            other => other.to_string().chars().count(),
        })
        .sum();
    (chars as u64).div_ceil(4).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn four_characters_per_token_rounded_up() {
        let system = json!("12345678");
        assert_eq!(estimate_tokens(&[Some(&system), None]), 2);
        let messages = json!([{"role": "user", "content": "hi"}]);
        let n = messages.to_string().len() as u64;
        assert_eq!(
            estimate_tokens(&[Some(&system), Some(&messages)]),
            (8 + n).div_ceil(4)
        );
        assert_eq!(estimate_tokens(&[]), 1);
    }
}
