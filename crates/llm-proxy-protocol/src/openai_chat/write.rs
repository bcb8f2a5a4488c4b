//! The two OpenAI Chat objects the proxy prints on every request, written straight to bytes
//! (`json_out`): each message of an upstream request, and the non-streamed answer to a client.
//! A long conversation is mostly text full of newlines, and `serde_json` escapes a string by
//! looking every byte up in a table; here the runs between escapes are copied whole. The bytes
//! are exactly what `serde_json` prints for the same values, field order and skipped `None`s
//! included (tested below against `serde_json::to_vec`).

use crate::json_out::{self, WriteJson};

use super::types::{
    ChatCompletionResponse, ChatMessage, Choice, MessageContent, ToolCall, WireUsage,
};

impl WriteJson for ChatMessage {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"role\":");
        json_out::string(out, &self.role);
        match &self.content {
            Some(MessageContent::Text(text)) => {
                out.extend_from_slice(b",\"content\":");
                json_out::string(out, text);
            }
            // Parts are rare in requests (images, audio) and hold client-given values.
            Some(parts @ MessageContent::Parts(_)) => {
                out.extend_from_slice(b",\"content\":");
                json_out::value(out, parts);
            }
            None => {}
        }
        if let Some(name) = &self.name {
            out.extend_from_slice(b",\"name\":");
            json_out::string(out, name);
        }
        if let Some(calls) = &self.tool_calls {
            out.extend_from_slice(b",\"tool_calls\":");
            json_out::array(out, calls, tool_call);
        }
        if let Some(id) = &self.tool_call_id {
            out.extend_from_slice(b",\"tool_call_id\":");
            json_out::string(out, id);
        }
        if let Some(text) = &self.reasoning_content {
            out.extend_from_slice(b",\"reasoning_content\":");
            json_out::string(out, text);
        }
        if let Some(details) = &self.reasoning_details {
            out.extend_from_slice(b",\"reasoning_details\":");
            json_out::value(out, details);
        }
        if let Some(refusal) = &self.refusal {
            out.extend_from_slice(b",\"refusal\":");
            json_out::string(out, refusal);
        }
        // Flattened, in the map's order, as serde writes it.
        for (key, value) in &self.extra {
            out.push(b',');
            json_out::string(out, key);
            out.push(b':');
            json_out::value(out, value);
        }
        out.push(b'}');
    }
}

fn tool_call(out: &mut Vec<u8>, call: &ToolCall) {
    out.extend_from_slice(b"{\"id\":");
    json_out::string(out, &call.id);
    out.extend_from_slice(b",\"type\":");
    json_out::string(out, &call.kind);
    out.extend_from_slice(b",\"function\":{\"name\":");
    json_out::string(out, &call.function.name);
    out.extend_from_slice(b",\"arguments\":");
    json_out::string(out, &call.function.arguments);
    out.push(b'}');
    if let Some(extra) = &call.extra_content {
        out.extend_from_slice(b",\"extra_content\":");
        json_out::value(out, extra);
    }
    out.push(b'}');
}

impl WriteJson for ChatCompletionResponse {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"id\":");
        json_out::string(out, &self.id);
        out.extend_from_slice(b",\"object\":");
        json_out::string(out, &self.object);
        out.extend_from_slice(b",\"created\":");
        json_out::uint(out, self.created);
        out.extend_from_slice(b",\"model\":");
        json_out::string(out, &self.model);
        out.extend_from_slice(b",\"choices\":");
        json_out::array(out, &self.choices, choice);
        if let Some(usage) = &self.usage {
            out.extend_from_slice(b",\"usage\":");
            write_usage(out, usage);
        }
        if let Some(fingerprint) = &self.system_fingerprint {
            out.extend_from_slice(b",\"system_fingerprint\":");
            json_out::string(out, fingerprint);
        }
        out.push(b'}');
    }
}

fn choice(out: &mut Vec<u8>, choice: &Choice) {
    out.extend_from_slice(b"{\"index\":");
    json_out::uint(out, u64::from(choice.index));
    out.extend_from_slice(b",\"message\":");
    choice.message.write_json(out);
    out.extend_from_slice(b",\"finish_reason\":");
    json_out::opt_string(out, choice.finish_reason.as_deref());
    if let Some(logprobs) = &choice.logprobs {
        out.extend_from_slice(b",\"logprobs\":");
        json_out::value(out, logprobs);
    }
    out.push(b'}');
}

fn write_usage(out: &mut Vec<u8>, usage: &WireUsage) {
    out.extend_from_slice(b"{\"prompt_tokens\":");
    json_out::uint(out, usage.prompt_tokens);
    out.extend_from_slice(b",\"completion_tokens\":");
    json_out::uint(out, usage.completion_tokens);
    out.extend_from_slice(b",\"total_tokens\":");
    json_out::uint(out, usage.total_tokens);
    if let Some(details) = &usage.prompt_tokens_details {
        out.extend_from_slice(b",\"prompt_tokens_details\":");
        let mut fields = Fields::new(out);
        fields.opt_uint(b"cached_tokens", details.cached_tokens);
        fields.opt_uint(b"cache_write_tokens", details.cache_write_tokens);
        fields.close();
    }
    if let Some(details) = &usage.completion_tokens_details {
        out.extend_from_slice(b",\"completion_tokens_details\":");
        let mut fields = Fields::new(out);
        fields.opt_uint(b"reasoning_tokens", details.reasoning_tokens);
        fields.close();
    }
    out.push(b'}');
}

/// An object whose every field may be absent (a comma only between written fields).
struct Fields<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Fields<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, first: true }
    }

    fn opt_uint(&mut self, key: &[u8], n: Option<u64>) {
        let Some(n) = n else { return };
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key);
        self.out.extend_from_slice(b"\":");
        json_out::uint(self.out, n);
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

/// The client's non-streamed answer as JSON bytes.
pub fn response_bytes(response: &ChatCompletionResponse) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    response.write_json(&mut out);
    out
}

/// One upstream request message, appended to `out`.
pub(crate) fn message(out: &mut Vec<u8>, message: &ChatMessage) {
    message.write_json(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn messages() -> Vec<ChatMessage> {
        let text = "line one\nline \"two\"\t\\ end\u{1}é🦀";
        let mut extra = serde_json::Map::new();
        extra.insert("cache_control".to_owned(), json!({"type": "ephemeral"}));
        extra.insert("odd \"key\"\n".to_owned(), json!([1, 2.5, null]));
        vec![
            ChatMessage {
                role: "user".to_owned(),
                content: Some(MessageContent::Text(text.to_owned())),
                ..ChatMessage::default()
            },
            ChatMessage {
                role: "system".to_owned(),
                ..ChatMessage::default()
            },
            serde_json::from_value(json!({
                "role": "user",
                "content": [
                    {"type": "text", "text": text, "cache_control": {"type": "ephemeral"}},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA==", "detail": "low"}},
                    {"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}}
                ],
                "name": "n\"ame"
            }))
            .unwrap(),
            ChatMessage {
                role: "assistant".to_owned(),
                content: None,
                tool_calls: Some(vec![
                    ToolCall {
                        id: "call_1".to_owned(),
                        kind: "function".to_owned(),
                        function: super::super::types::FunctionCall {
                            name: "Read".to_owned(),
                            arguments: "{\"file_path\":\"/src/a.rs\"}".to_owned(),
                        },
                        extra_content: Some(json!({"google": {"thought_signature": "c2ln"}})),
                    },
                    ToolCall {
                        id: String::new(),
                        kind: "function".to_owned(),
                        function: super::super::types::FunctionCall {
                            name: "f".to_owned(),
                            arguments: String::new(),
                        },
                        extra_content: None,
                    },
                ]),
                reasoning_content: Some("thinking\nhard".to_owned()),
                reasoning_details: serde_json::from_value(json!([
                    {"type": "reasoning.text", "text": "t", "signature": "s", "index": 0}
                ]))
                .unwrap(),
                refusal: Some("no \"way\"".to_owned()),
                extra: extra.clone(),
                ..ChatMessage::default()
            },
            ChatMessage {
                role: "tool".to_owned(),
                content: Some(MessageContent::Text("42\n".to_owned())),
                tool_call_id: Some("call_1".to_owned()),
                extra,
                ..ChatMessage::default()
            },
        ]
    }

    #[test]
    fn messages_are_the_bytes_serde_json_writes() {
        for m in messages() {
            let mut out = Vec::new();
            message(&mut out, &m);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&m).unwrap()
            );
        }
    }

    #[test]
    fn answers_are_the_bytes_serde_json_writes() {
        let full: ChatCompletionResponse = serde_json::from_value(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 17, "model": "m\"x",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi\n"},
                         "finish_reason": "stop", "logprobs": {"content": [], "refusal": null}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3,
                      "prompt_tokens_details": {"cached_tokens": 1, "cache_write_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": 2}},
            "system_fingerprint": "fp"
        }))
        .unwrap();
        let mut cases = vec![full.clone()];
        let mut bare = full.clone();
        bare.usage = None;
        bare.system_fingerprint = None;
        bare.choices[0].finish_reason = None;
        bare.choices[0].logprobs = None;
        cases.push(bare);
        let mut partial = full;
        let usage = partial.usage.as_mut().unwrap();
        usage.prompt_tokens_details.as_mut().unwrap().cached_tokens = None;
        usage
            .completion_tokens_details
            .as_mut()
            .unwrap()
            .reasoning_tokens = None;
        partial.choices = messages()
            .into_iter()
            .enumerate()
            .map(|(i, message)| Choice {
                index: i as u32,
                message,
                finish_reason: Some("tool_calls".to_owned()),
                logprobs: None,
            })
            .collect();
        cases.push(partial);
        let mut cleared = cases[0].clone();
        cleared.choices.clear();
        let usage = cleared.usage.as_mut().unwrap();
        usage
            .prompt_tokens_details
            .as_mut()
            .unwrap()
            .cache_write_tokens = None;
        usage.prompt_tokens_details.as_mut().unwrap().cached_tokens = None;
        cases.push(cleared);
        for case in cases {
            let written = response_bytes(&case);
            assert_eq!(
                String::from_utf8(written.clone()).unwrap(),
                serde_json::to_string(&case).unwrap()
            );
            serde_json::from_slice::<Value>(&written).unwrap();
        }
    }
}
