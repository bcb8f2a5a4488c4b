//! Automatic prompt-cache breakpoints for an Anthropic upstream request whose client could not
//! place any (OpenAI chat, Responses, Gemini): Anthropic caches only up to blocks marked with
//! `cache_control`, so without marks such clients would never hit the cache.
//!
//! Places, while fewer than [`MAX_BREAKPOINTS`] blocks carry a mark (the client's own count):
//! the last message, the end of the system prompt, the end of the tools, and the previous user
//! turn. The places depend only on the conversation's shape, so the mark on this request's last
//! message is the previous-turn mark of the next request: the prefix cached now is read back.

use serde_json::{Map, Value, json};

use super::types::{
    AnthropicRequest, ContentBlock, InputMessage, MessageContent, SystemBlock, SystemPrompt,
    TextBlock, ToolResultContent,
};

/// Most blocks Anthropic accepts with `cache_control` in one request.
pub const MAX_BREAKPOINTS: usize = 4;

/// The mark added: the default five-minute cache.
fn mark() -> Value {
    json!({"type": "ephemeral"})
}

/// Adds breakpoints to `req` (see the module docs); returns how many were added.
pub fn add_auto_breakpoints(req: &mut AnthropicRequest) -> usize {
    let mut budget = MAX_BREAKPOINTS.saturating_sub(count_breakpoints(req));
    let mut added = 0;
    let last = req.messages.len().checked_sub(1);
    let previous_user =
        last.and_then(|last| req.messages[..last].iter().rposition(|m| m.role == "user"));
    // In order of value when the client left fewer than four.
    let places = [
        Place::Message(last),
        Place::System,
        Place::Tools,
        Place::Message(previous_user),
    ];
    for place in places {
        if budget == 0 {
            break;
        }
        let outcome = match place {
            Place::Message(Some(i)) => mark_message(&mut req.messages[i]),
            Place::Message(None) => Outcome::Unmarkable,
            Place::System => mark_system(&mut req.system),
            Place::Tools => match req.tools.as_mut().and_then(|t| t.last_mut()) {
                Some(tool) => mark_slot(&mut tool.cache_control),
                None => Outcome::Unmarkable,
            },
        };
        if outcome == Outcome::Added {
            budget -= 1;
            added += 1;
        }
    }
    added
}

#[derive(Debug, Clone, Copy)]
enum Place {
    Message(Option<usize>),
    System,
    Tools,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Added,
    AlreadyMarked,
    Unmarkable,
}

fn mark_slot(slot: &mut Option<Value>) -> Outcome {
    if slot.is_some() {
        return Outcome::AlreadyMarked;
    }
    *slot = Some(mark());
    Outcome::Added
}

fn mark_system(system: &mut Option<SystemPrompt>) -> Outcome {
    if let Some(SystemPrompt::Text(text)) = system {
        if text.is_empty() {
            return Outcome::Unmarkable;
        }
        *system = Some(SystemPrompt::Blocks(vec![SystemBlock {
            kind: "text".to_owned(),
            text: std::mem::take(text),
            cache_control: None,
            extra: Map::new(),
        }]));
    }
    match system {
        Some(SystemPrompt::Blocks(blocks)) => match blocks.last_mut() {
            Some(b) if !b.text.is_empty() => mark_slot(&mut b.cache_control),
            _ => Outcome::Unmarkable,
        },
        _ => Outcome::Unmarkable,
    }
}

/// Marks the last block of `m` that may carry a mark (not thinking, not empty text).
fn mark_message(m: &mut InputMessage) -> Outcome {
    if let MessageContent::Text(text) = &mut m.content {
        if text.is_empty() {
            return Outcome::Unmarkable;
        }
        m.content = MessageContent::Blocks(vec![ContentBlock::Text(TextBlock::new(
            std::mem::take(text),
        ))]);
    }
    let MessageContent::Blocks(blocks) = &mut m.content else {
        return Outcome::Unmarkable;
    };
    for block in blocks.iter_mut().rev() {
        let slot = match block {
            ContentBlock::Text(t) if t.text.is_empty() => continue,
            ContentBlock::Text(t) => &mut t.cache_control,
            ContentBlock::Image(i) => &mut i.cache_control,
            ContentBlock::ToolUse(u) => &mut u.cache_control,
            ContentBlock::ToolResult(r) => &mut r.cache_control,
            ContentBlock::Document(d) => {
                if d.contains_key("cache_control") {
                    return Outcome::AlreadyMarked;
                }
                d.insert("cache_control".to_owned(), mark());
                return Outcome::Added;
            }
            // Thinking cannot be marked; blocks we do not model are left as they came.
            ContentBlock::Thinking(_)
            | ContentBlock::RedactedThinking(_)
            | ContentBlock::Other(_) => continue,
        };
        return mark_slot(slot);
    }
    Outcome::Unmarkable
}

/// Blocks of `req` that already carry `cache_control`, wherever Anthropic counts them.
pub fn count_breakpoints(req: &AnthropicRequest) -> usize {
    let tools = req
        .tools
        .iter()
        .flatten()
        .filter(|t| t.cache_control.is_some())
        .count();
    let system = match &req.system {
        Some(SystemPrompt::Blocks(blocks)) => {
            blocks.iter().filter(|b| b.cache_control.is_some()).count()
        }
        _ => 0,
    };
    let messages: usize = req
        .messages
        .iter()
        .map(|m| match &m.content {
            MessageContent::Blocks(blocks) => count_in_blocks(blocks),
            MessageContent::Text(_) => 0,
        })
        .sum();
    tools + system + messages
}

fn count_in_blocks(blocks: &[ContentBlock]) -> usize {
    blocks
        .iter()
        .map(|b| match b {
            ContentBlock::Text(t) => usize::from(t.cache_control.is_some()),
            ContentBlock::Image(i) => usize::from(i.cache_control.is_some()),
            ContentBlock::ToolUse(u) => usize::from(u.cache_control.is_some()),
            ContentBlock::ToolResult(r) => {
                let nested = match &r.content {
                    Some(ToolResultContent::Blocks(inner)) => count_in_blocks(inner),
                    _ => 0,
                };
                usize::from(r.cache_control.is_some()) + nested
            }
            ContentBlock::Document(d) => usize::from(d.contains_key("cache_control")),
            ContentBlock::Other(v) => usize::from(v.get("cache_control").is_some()),
            ContentBlock::Thinking(_) | ContentBlock::RedactedThinking(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(body: Value) -> AnthropicRequest {
        serde_json::from_value(body).unwrap()
    }

    fn with_auto(body: Value) -> (Value, usize) {
        let mut req = request(body);
        let added = add_auto_breakpoints(&mut req);
        (serde_json::to_value(&req).unwrap(), added)
    }

    /// Where the breakpoints sit, sorted (for comparing placements).
    fn marks(v: &Value) -> Vec<String> {
        let mut out = llm_proxy_test_support::anthropic::cache_control_paths(v);
        out.sort();
        out
    }

    fn tools() -> Value {
        json!([
            {"name": "a", "input_schema": {"type": "object"}},
            {"name": "b", "input_schema": {"type": "object"}}
        ])
    }

    #[test]
    fn marks_tools_system_last_message_and_previous_user_turn() {
        let (v, added) = with_auto(json!({
            "model": "m",
            "system": "be brief",
            "tools": tools(),
            "messages": [
                {"role": "user", "content": "one"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "t", "signature": "s"},
                    {"type": "tool_use", "id": "t1", "name": "a", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "r"},
                    {"type": "text", "text": ""}
                ]}
            ]
        }));
        assert_eq!(added, 4);
        assert_eq!(
            marks(&v),
            [
                ".messages[0].content[0]",
                ".messages[2].content[0]",
                ".system[0]",
                ".tools[1]"
            ]
        );
        assert_eq!(v["system"][0]["text"], "be brief");
        assert_eq!(v["messages"][0]["content"][0]["text"], "one");
        assert_eq!(v["tools"][1]["cache_control"], json!({"type": "ephemeral"}));
    }

    #[test]
    fn the_clients_own_marks_count_toward_four() {
        let hour = json!({"type": "ephemeral", "ttl": "1h"});
        let (v, added) = with_auto(json!({
            "model": "m",
            "system": [{"type": "text", "text": "s", "cache_control": hour}],
            "tools": tools(),
            "messages": [
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t", "content": [
                        {"type": "text", "text": "x", "cache_control": hour}
                    ]},
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/i.png"}, "cache_control": hour}
                ]},
                {"role": "assistant", "content": "a"},
                {"role": "user", "content": "b"}
            ]
        }));
        // 3 of the client's; one more fits, on the last message.
        assert_eq!(added, 1);
        assert_eq!(marks(&v).len(), 4);
        assert_eq!(
            v["messages"][2]["content"][0]["cache_control"],
            json!({"type": "ephemeral"})
        );
        assert_eq!(v["system"][0]["cache_control"], hour, "client's mark kept");
        assert!(v["tools"][1].get("cache_control").is_none());

        let mut full = request(v);
        assert_eq!(count_breakpoints(&full), MAX_BREAKPOINTS);
        assert_eq!(add_auto_breakpoints(&mut full), 0);
    }

    #[test]
    fn breakpoints_on_earlier_turns_stay_put_as_the_conversation_grows() {
        let mut conversation = vec![json!({"role": "user", "content": "turn one"})];
        let mut earlier: Vec<Vec<String>> = Vec::new();
        for turn in 1..=3 {
            let (v, _) = with_auto(json!({
                "model": "m", "system": "sys", "tools": tools(), "messages": conversation
            }));
            let last = conversation.len() - 1;
            let message_marks: Vec<String> = marks(&v)
                .into_iter()
                .filter(|p| p.starts_with(".messages"))
                .collect();
            assert!(
                message_marks.contains(&format!(".messages[{last}].content[0]")),
                "turn {turn}: the last message is marked: {message_marks:?}"
            );
            if let Some(previous) = earlier.last() {
                // The previous request's last-message mark is still there.
                let previous_last = previous.iter().max().unwrap();
                assert!(
                    message_marks.contains(previous_last),
                    "turn {turn}: {previous_last} kept in {message_marks:?}"
                );
            }
            assert!(marks(&v).contains(&".system[0]".to_owned()));
            assert!(marks(&v).contains(&".tools[1]".to_owned()));
            earlier.push(message_marks);
            conversation.push(json!({"role": "assistant", "content": format!("answer {turn}")}));
            conversation.push(json!({"role": "user", "content": format!("turn {}", turn + 1)}));
        }
    }

    #[test]
    fn nothing_markable_adds_nothing() {
        let (v, added) = with_auto(json!({"model": "m", "system": "", "messages": [
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "s"}]}
        ]}));
        assert_eq!(added, 0);
        assert!(marks(&v).is_empty());
    }

    #[test]
    fn documents_and_unmodelled_blocks() {
        let (v, added) = with_auto(json!({"model": "m", "messages": [
            {"role": "user", "content": [
                {"type": "document", "source": {"type": "url", "url": "https://x.test/a.pdf"}},
                {"type": "container_upload", "file_id": "f"}
            ]}
        ]}));
        assert_eq!(added, 1);
        assert_eq!(marks(&v), [".messages[0].content[0]"]);
    }
}
