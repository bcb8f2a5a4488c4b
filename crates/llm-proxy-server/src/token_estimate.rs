//! The one token count of a request as the proxy reports it: for `[max_context]` routing and
//! the `count_tokens` endpoints (Anthropic `count_tokens`, Gemini `countTokens`). It is the
//! counter context-window enforcement uses ([`crate::token_count`]: OpenAI's tokenizers for
//! OpenAI models, an estimate otherwise), or the client's own count when it states one.
//! Clients use it to decide when to compact a conversation.

use llm_proxy_api::model::ChatRequest;

use crate::token_count::{Tokenizer, count};

/// The prompt's size in tokens for its model, or the client's own count from
/// `extra_body.request_context_tokens`.
pub fn estimate_tokens(req: &ChatRequest) -> u64 {
    if let Some(n) = req
        .extra
        .get("extra_body")
        .and_then(|e| e.get("request_context_tokens"))
        .and_then(serde_json::Value::as_u64)
    {
        return n;
    }
    count(req, Tokenizer::for_model(&req.model)).tokens
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
        // Four bytes per token and four per message, for a model whose tokenizer is not public.
        assert_eq!(estimate_tokens(&req), 104);
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
        assert_eq!(estimate_tokens(&req), 3 + 8);
        req.tools.push(llm_proxy_api::model::ToolDefinition {
            name: "f".into(),
            description: Some("d".into()),
            parameters: serde_json::json!({"type": "object"}),
            strict: None,
            cache_control: None,
        });
        // "f" + "d" + `{"type":"object"}`
        assert_eq!(estimate_tokens(&req), (12 + 2 + 17_u64).div_ceil(4) + 8);
        assert_eq!(estimate_tokens(&ChatRequest::default()), 0);
        // OpenAI models are counted with their tokenizer: "12345678" is 3 o200k tokens
        // (digits go in threes), "abcd" 1.
        req.tools.clear();
        req.model = "gpt-4o".into();
        assert_eq!(estimate_tokens(&req), 3 + 1 + 8);
    }
}
