//! The two OpenAI Chat objects the proxy prints on every request, written straight to bytes
//! (`json_out`): an upstream request, and the non-streamed answer to a client.
//! A long conversation is mostly text full of newlines, and `serde_json` escapes a string by
//! looking every byte up in a table; here the runs between escapes are copied whole. The bytes
//! are exactly what `serde_json` prints for the same values, field order and skipped `None`s
//! included (tested below against `serde_json::to_vec`).

use crate::json_out::{self, Fields, WriteJson};

use super::types::{
    ChatCompletionRequest, ChatCompletionResponse, ChatMessage, Choice, MessageContent, Stop, Tool,
    ToolCall, WireUsage,
};

impl WriteJson for ChatMessage {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut f = Fields::new(out);
        f.string("role", &self.role);
        match &self.content {
            Some(MessageContent::Text(text)) => f.string("content", text),
            // Parts are rare in requests (images, audio) and hold client-given values.
            Some(parts @ MessageContent::Parts(_)) => f.opt_value("content", Some(parts)),
            None => {}
        }
        f.opt_string("name", self.name.as_deref());
        if let Some(calls) = &self.tool_calls {
            json_out::array(f.key("tool_calls"), calls, tool_call);
        }
        f.opt_string("tool_call_id", self.tool_call_id.as_deref());
        f.opt_string("reasoning_content", self.reasoning_content.as_deref());
        f.opt_value("reasoning_details", self.reasoning_details.as_ref());
        f.opt_string("refusal", self.refusal.as_deref());
        f.extra(&self.extra);
        f.close();
    }
}

fn tool_call(out: &mut Vec<u8>, call: &ToolCall) {
    let mut f = Fields::new(out);
    f.string("id", &call.id);
    f.string("type", &call.kind);
    let mut function = Fields::new(f.key("function"));
    function.string("name", &call.function.name);
    function.string("arguments", &call.function.arguments);
    function.close();
    f.opt_value("extra_content", call.extra_content.as_ref());
    f.close();
}

impl WriteJson for ChatCompletionResponse {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut f = Fields::new(out);
        f.string("id", &self.id);
        f.string("object", &self.object);
        f.uint("created", self.created);
        f.string("model", &self.model);
        json_out::array(f.key("choices"), &self.choices, choice);
        if let Some(usage) = &self.usage {
            write_usage(f.key("usage"), usage);
        }
        f.opt_string("system_fingerprint", self.system_fingerprint.as_deref());
        f.close();
    }
}

fn choice(out: &mut Vec<u8>, choice: &Choice) {
    let mut f = Fields::new(out);
    f.uint("index", u64::from(choice.index));
    choice.message.write_json(f.key("message"));
    json_out::opt_string(f.key("finish_reason"), choice.finish_reason.as_deref());
    f.opt_value("logprobs", choice.logprobs.as_ref());
    f.close();
}

pub(super) fn write_usage(out: &mut Vec<u8>, usage: &WireUsage) {
    let mut f = Fields::new(out);
    f.uint("prompt_tokens", usage.prompt_tokens);
    f.uint("completion_tokens", usage.completion_tokens);
    f.uint("total_tokens", usage.total_tokens);
    if let Some(details) = &usage.prompt_tokens_details {
        let mut d = Fields::new(f.key("prompt_tokens_details"));
        d.opt_uint("cached_tokens", details.cached_tokens);
        d.opt_uint("cache_write_tokens", details.cache_write_tokens);
        d.close();
    }
    if let Some(details) = &usage.completion_tokens_details {
        let mut d = Fields::new(f.key("completion_tokens_details"));
        d.opt_uint("reasoning_tokens", details.reasoning_tokens);
        d.close();
    }
    f.close();
}

impl ChatCompletionRequest {
    /// The request with `messages` written by `messages` (the array's items, without its
    /// brackets), so a conversation can be converted one message at a time as it is written.
    pub(crate) fn write_with(&self, out: &mut Vec<u8>, messages: impl FnOnce(&mut Vec<u8>)) {
        let mut f = Fields::new(out);
        f.string("model", &self.model);
        let list = f.key("messages");
        list.push(b'[');
        messages(list);
        list.push(b']');
        f.opt_value("stream", self.stream.as_ref());
        if let Some(options) = &self.stream_options {
            let mut o = Fields::new(f.key("stream_options"));
            o.boolean("include_usage", options.include_usage);
            o.extra(&options.extra);
            o.close();
        }
        if let Some(tools) = &self.tools {
            json_out::array(f.key("tools"), tools, tool);
        }
        f.opt_value("tool_choice", self.tool_choice.as_ref());
        f.opt_value("parallel_tool_calls", self.parallel_tool_calls.as_ref());
        f.opt_value("temperature", self.temperature.as_ref());
        f.opt_value("top_p", self.top_p.as_ref());
        f.opt_value("n", self.n.as_ref());
        match &self.stop {
            Some(Stop::One(stop)) => f.string("stop", stop),
            Some(Stop::Many(stops)) => json_out::array(f.key("stop"), stops, |out, s| {
                json_out::string(out, s);
            }),
            None => {}
        }
        f.opt_uint("max_tokens", self.max_tokens);
        f.opt_uint("max_completion_tokens", self.max_completion_tokens);
        f.opt_value("presence_penalty", self.presence_penalty.as_ref());
        f.opt_value("frequency_penalty", self.frequency_penalty.as_ref());
        f.opt_value("seed", self.seed.as_ref());
        f.opt_value("response_format", self.response_format.as_ref());
        f.opt_string("reasoning_effort", self.reasoning_effort.as_deref());
        f.opt_string("user", self.user.as_deref());
        f.opt_value("metadata", self.metadata.as_ref());
        f.opt_string("prompt_cache_key", self.prompt_cache_key.as_deref());
        f.extra(&self.extra);
        f.close();
    }
}

impl WriteJson for ChatCompletionRequest {
    fn write_json(&self, out: &mut Vec<u8>) {
        self.write_with(out, |out| {
            for (i, m) in self.messages.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                m.write_json(out);
            }
        });
    }
}

fn tool(out: &mut Vec<u8>, t: &Tool) {
    let mut f = Fields::new(out);
    f.string("type", &t.kind);
    let mut function = Fields::new(f.key("function"));
    function.string("name", &t.function.name);
    function.opt_string("description", t.function.description.as_deref());
    function.opt_value("parameters", t.function.parameters.as_ref());
    function.opt_value("strict", t.function.strict.as_ref());
    function.close();
    f.close();
}

/// The client's non-streamed answer as JSON bytes.
pub fn response_bytes(response: &ChatCompletionResponse) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    response.write_json(&mut out);
    out
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
            m.write_json(&mut out);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&m).unwrap()
            );
        }
    }

    #[test]
    fn requests_are_the_bytes_serde_json_writes() {
        let mut extra = serde_json::Map::new();
        extra.insert("logprobs".to_owned(), json!(true));
        extra.insert("verbosity \"x\"".to_owned(), json!({"a": [1, "b\n"]}));
        let full = ChatCompletionRequest {
            model: "gpt-\"4o\"".to_owned(),
            messages: messages(),
            stream: Some(true),
            stream_options: Some(super::super::types::StreamOptions {
                include_usage: true,
                extra: extra.clone(),
            }),
            tools: Some(vec![
                serde_json::from_value(json!({"type": "function", "function": {
                    "name": "Read", "description": "reads\na file",
                    "parameters": {"type": "object"}, "strict": true}}))
                .unwrap(),
                serde_json::from_value(json!({"type": "function", "function": {"name": "f"}}))
                    .unwrap(),
            ]),
            tool_choice: Some(json!({"type": "function", "function": {"name": "Read"}})),
            parallel_tool_calls: Some(false),
            temperature: Some(0.7),
            top_p: Some(1.0),
            n: Some(2),
            stop: Some(Stop::Many(vec!["\n\n".to_owned(), "END".to_owned()])),
            max_tokens: Some(16),
            max_completion_tokens: Some(u64::MAX),
            presence_penalty: Some(-0.5),
            frequency_penalty: Some(0.25),
            seed: Some(-3),
            response_format: serde_json::from_value(json!({"type": "json_schema",
                "json_schema": {"name": "n", "schema": {"type": "object"}, "strict": true}}))
            .unwrap(),
            reasoning_effort: Some("high".to_owned()),
            user: Some("u\t1".to_owned()),
            metadata: Some(extra.clone()),
            prompt_cache_key: Some("llmproxy-abc".to_owned()),
            extra,
        };
        let mut one_stop = full.clone();
        one_stop.stop = Some(Stop::One("\"".to_owned()));
        one_stop.stream_options = Some(Default::default());
        for request in [full, one_stop, ChatCompletionRequest::default()] {
            let mut out = Vec::new();
            request.write_json(&mut out);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&request).unwrap()
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
