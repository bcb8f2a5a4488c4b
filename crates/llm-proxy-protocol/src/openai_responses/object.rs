//! The response object as a typed view written straight to bytes (`json_out`): the request
//! fields an answer repeats ([`Echo`], taken once from the request) and the object's own
//! fields, written in sorted key order (the order a `serde_json::Value` object prints) so a
//! view and the `Value` built from it print alike. The output items are the stream renderer's
//! (`stream.rs`).

use std::ops::Range;

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use super::types::{ResponsesRequest, WireUsage};
use crate::json_out::{self, WriteJson};

/// Request fields a response object repeats (`instructions`, `tools`, `tool_choice`, ...), as
/// the request gave them; absent ones print as the API's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Echo {
    pub instructions: Option<String>,
    pub max_output_tokens: Option<u64>,
    /// `{}` when absent.
    pub metadata: Option<Map<String, Value>>,
    pub parallel_tool_calls: bool,
    pub previous_response_id: Option<String>,
    /// Printed only when given.
    pub prompt_cache_key: Option<String>,
    pub reasoning_effort: Option<String>,
    /// `reasoning.summary` (or its older spelling `generate_summary`).
    pub reasoning_summary: Option<String>,
    /// Printed only when given.
    pub service_tier: Option<String>,
    pub store: bool,
    pub temperature: Option<f64>,
    /// `text` as repeated (`format` and `verbosity`); `{"format": {"type": "text"}}` when absent.
    pub text: Option<Value>,
    /// `"auto"` when absent.
    pub tool_choice: Option<Value>,
    /// `[]` when absent.
    pub tools: Option<Vec<Value>>,
    pub top_p: Option<f64>,
    /// `"disabled"` when absent.
    pub truncation: Option<Value>,
    pub user: Option<String>,
}

impl Default for Echo {
    /// What a request naming none of the repeated fields gets.
    fn default() -> Self {
        Self::of(&ResponsesRequest::default())
    }
}

impl Echo {
    /// The fields `req` makes a response object repeat.
    pub fn of(req: &ResponsesRequest) -> Self {
        let (reasoning_effort, reasoning_summary) =
            req.reasoning.as_ref().map_or((None, None), |r| {
                (
                    r.effort.clone(),
                    r.summary.clone().or_else(|| r.generate_summary.clone()),
                )
            });
        let text = req.text.as_ref().map(|t| {
            let mut text = Map::new();
            let format = t.format.as_ref().map_or_else(
                || serde_json::json!({"type": "text"}),
                |f| serde_json::to_value(f).unwrap_or(Value::Null),
            );
            text.insert("format".into(), format);
            if let Some(verbosity) = &t.verbosity {
                text.insert("verbosity".into(), Value::from(verbosity.clone()));
            }
            Value::Object(text)
        });
        Self {
            instructions: req.instructions.clone(),
            max_output_tokens: req.max_output_tokens,
            metadata: req.metadata.clone(),
            parallel_tool_calls: req.parallel_tool_calls.unwrap_or(true),
            previous_response_id: req.previous_response_id.clone(),
            prompt_cache_key: req.prompt_cache_key.clone(),
            reasoning_effort,
            reasoning_summary,
            service_tier: req.service_tier.clone(),
            store: req.store.unwrap_or(true),
            temperature: req.temperature,
            text,
            tool_choice: req.tool_choice.clone(),
            tools: req.tools.clone(),
            top_p: req.top_p,
            truncation: req.extra.get("truncation").cloned(),
            user: req.user.clone(),
        }
    }
}

/// `error` of a failed response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResponseError {
    pub code: String,
    pub message: String,
}

/// A response object borrowed from what the renderer holds; `output` is its items' view.
pub(crate) struct ObjectView<'a, O> {
    pub id: &'a str,
    pub created_at: u64,
    pub model: &'a str,
    pub status: &'static str,
    pub error: Option<&'a ResponseError>,
    /// `incomplete_details.reason`.
    pub incomplete: Option<&'static str>,
    pub echo: &'a Echo,
    pub output: O,
    /// The SDKs' `output_text`, printed when given (non-streamed answers).
    pub output_text: Option<&'a str>,
    pub usage: Option<WireUsage>,
}

impl<O: WriteJson> ObjectView<'_, O> {
    /// The object with `output_text`, and where the `,"output_text":...` field is in it:
    /// cutting that range out gives the object without it.
    pub(crate) fn to_vec_marking(&self, output_text: &str) -> (Vec<u8>, Range<usize>) {
        let mut out = Vec::with_capacity(self.size_hint(output_text.len()));
        let field = self.write(&mut out, Some(output_text));
        (out, field)
    }

    /// Room for the object in one allocation when its tools and metadata are small: the fixed
    /// fields (about 800 bytes), the instructions, and the answer's text twice (its message
    /// item and `output_text`). Growing a 1 KiB buffer on every answer cost ~1k instructions.
    pub(crate) fn size_hint(&self, output_text: usize) -> usize {
        1024 + self.echo.instructions.as_ref().map_or(0, String::len) + 2 * output_text
    }

    /// Writes the object, its keys in sorted order (as a `serde_json::Value` object prints
    /// them), with `output_text` when given; returns where the `,"output_text":...` field is
    /// (empty without it).
    pub(crate) fn write(&self, out: &mut Vec<u8>, output_text: Option<&str>) -> Range<usize> {
        let e = self.echo;
        out.extend_from_slice(b"{\"created_at\":");
        json_out::uint(out, self.created_at);
        out.extend_from_slice(b",\"error\":");
        match self.error {
            Some(error) => {
                out.extend_from_slice(b"{\"code\":");
                json_out::string(out, &error.code);
                out.extend_from_slice(b",\"message\":");
                json_out::string(out, &error.message);
                out.push(b'}');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"id\":");
        json_out::string(out, self.id);
        out.extend_from_slice(b",\"incomplete_details\":");
        match self.incomplete {
            Some(reason) => {
                out.extend_from_slice(b"{\"reason\":");
                json_out::string(out, reason);
                out.push(b'}');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"instructions\":");
        json_out::opt_string(out, e.instructions.as_deref());
        out.extend_from_slice(b",\"max_output_tokens\":");
        json_out::opt_uint(out, e.max_output_tokens);
        out.extend_from_slice(b",\"metadata\":");
        json_out::value_or(out, e.metadata.as_ref(), b"{}");
        out.extend_from_slice(b",\"model\":");
        json_out::string(out, self.model);
        out.extend_from_slice(b",\"object\":\"response\",\"output\":");
        self.output.write_json(out);
        let start = out.len();
        if let Some(text) = output_text {
            out.extend_from_slice(b",\"output_text\":");
            json_out::string(out, text);
        }
        let field = start..out.len();
        out.extend_from_slice(b",\"parallel_tool_calls\":");
        json_out::boolean(out, e.parallel_tool_calls);
        out.extend_from_slice(b",\"previous_response_id\":");
        json_out::opt_string(out, e.previous_response_id.as_deref());
        if let Some(key) = &e.prompt_cache_key {
            out.extend_from_slice(b",\"prompt_cache_key\":");
            json_out::string(out, key);
        }
        out.extend_from_slice(b",\"reasoning\":{\"effort\":");
        json_out::opt_string(out, e.reasoning_effort.as_deref());
        out.extend_from_slice(b",\"summary\":");
        json_out::opt_string(out, e.reasoning_summary.as_deref());
        out.push(b'}');
        if let Some(tier) = &e.service_tier {
            out.extend_from_slice(b",\"service_tier\":");
            json_out::string(out, tier);
        }
        out.extend_from_slice(b",\"status\":");
        json_out::string(out, self.status);
        out.extend_from_slice(b",\"store\":");
        json_out::boolean(out, e.store);
        out.extend_from_slice(b",\"temperature\":");
        json_out::value(out, &e.temperature);
        out.extend_from_slice(b",\"text\":");
        json_out::value_or(out, e.text.as_ref(), b"{\"format\":{\"type\":\"text\"}}");
        out.extend_from_slice(b",\"tool_choice\":");
        json_out::value_or(out, e.tool_choice.as_ref(), b"\"auto\"");
        out.extend_from_slice(b",\"tools\":");
        json_out::value_or(out, e.tools.as_ref(), b"[]");
        out.extend_from_slice(b",\"top_p\":");
        json_out::value(out, &e.top_p);
        out.extend_from_slice(b",\"truncation\":");
        json_out::value_or(out, e.truncation.as_ref(), b"\"disabled\"");
        out.extend_from_slice(b",\"usage\":");
        match &self.usage {
            Some(usage) => usage.write_json(out),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"user\":");
        json_out::opt_string(out, e.user.as_deref());
        out.push(b'}');
        field
    }
}

impl<O: WriteJson> WriteJson for ObjectView<'_, O> {
    fn write_json(&self, out: &mut Vec<u8>) {
        self.write(out, self.output_text);
    }
}

impl<O: WriteJson> Serialize for ObjectView<'_, O> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_raw().serialize(serializer)
    }
}

impl WriteJson for WireUsage {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"input_tokens\":");
        json_out::uint(out, self.input_tokens);
        out.extend_from_slice(b",\"input_tokens_details\":{\"cached_tokens\":");
        json_out::uint(out, self.input_tokens_details.cached_tokens);
        out.extend_from_slice(b"},\"output_tokens\":");
        json_out::uint(out, self.output_tokens);
        out.extend_from_slice(b",\"output_tokens_details\":{\"reasoning_tokens\":");
        json_out::uint(out, self.output_tokens_details.reasoning_tokens);
        out.extend_from_slice(b"},\"total_tokens\":");
        json_out::uint(out, self.total_tokens);
        out.push(b'}');
    }
}
