//! The one token estimate, for `[max_context]` routing and the `count_tokens` endpoints: about
//! four bytes per token over what the model reads (text, reasoning, tool calls and results,
//! tool definitions), or the client's own count. Clients use it to decide when to compact a
//! conversation, so it only needs to be in the right range.

use llm_proxy_api::model::{ChatRequest, Part};

/// Rough prompt size in tokens (four bytes of what the model reads per token), or the client's
/// own count from `extra_body.request_context_tokens`.
pub fn estimate_tokens(req: &ChatRequest) -> u64 {
    if let Some(n) = req
        .extra
        .get("extra_body")
        .and_then(|e| e.get("request_context_tokens"))
        .and_then(serde_json::Value::as_u64)
    {
        return n;
    }
    let mut chars = 0usize;
    for m in &req.messages {
        for p in &m.content {
            chars += match p {
                Part::Text(t) => t.text.len(),
                Part::Reasoning(b) => b.text.len(),
                Part::ToolCall(c) => c.arguments.len() + c.name.len(),
                Part::ToolResult(r) => r.joined_text().len(),
                Part::Image(_) | Part::Audio(_) => 1000,
                Part::Opaque(o) => o.value.to_string().len(),
            };
        }
    }
    for t in &req.tools {
        chars += t.name.len()
            + t.description.as_ref().map_or(0, String::len)
            + t.parameters.to_string().len();
    }
    (chars as u64).div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_estimate_prefers_the_client_count() {
        let mut req = ChatRequest {
            messages: vec![llm_proxy_api::Message::text(
                llm_proxy_api::Role::User,
                "x".repeat(400),
            )],
            ..ChatRequest::default()
        };
        assert_eq!(estimate_tokens(&req), 100);
        req.extra.insert(
            "extra_body".into(),
            serde_json::json!({"request_context_tokens": 5}),
        );
        assert_eq!(estimate_tokens(&req), 5);
    }

    #[test]
    fn every_part_the_model_reads_counts() {
        let mut req = ChatRequest {
            messages: vec![
                llm_proxy_api::Message::text(llm_proxy_api::Role::System, "12345678"),
                llm_proxy_api::Message::text(llm_proxy_api::Role::User, "abcd"),
            ],
            ..ChatRequest::default()
        };
        assert_eq!(estimate_tokens(&req), 3);
        req.tools.push(llm_proxy_api::model::ToolDefinition {
            name: "f".into(),
            description: Some("d".into()),
            parameters: serde_json::json!({"type": "object"}),
            strict: None,
            cache_control: None,
        });
        // "f" + "d" + `{"type":"object"}`
        assert_eq!(estimate_tokens(&req), (12 + 2 + 17_u64).div_ceil(4));
        assert_eq!(estimate_tokens(&ChatRequest::default()), 0);
    }
}
