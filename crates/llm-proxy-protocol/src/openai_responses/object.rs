//! The response object as a typed view serialized straight to bytes: the request fields an
//! answer repeats ([`Echo`], taken once from the request) and the object's own fields, written
//! in sorted key order (the order a `serde_json::Value` object prints) so a view and the `Value`
//! built from it print alike. The output items are the stream renderer's (`stream.rs`).

use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use super::types::{ResponsesRequest, WireUsage};

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

impl<O: Serialize> ObjectView<'_, O> {
    /// The object twice from one serialization: with `output_text` (for the client) and
    /// without (to store). Both print their keys in the same sorted order as the whole view.
    pub(crate) fn to_vec_with_and_without(
        &self,
        output_text: &str,
    ) -> Result<(Vec<u8>, Vec<u8>), serde_json::Error> {
        let head = serde_json::to_vec(&Half {
            view: self,
            tail: false,
        })?;
        let tail = serde_json::to_vec(&Half {
            view: self,
            tail: true,
        })?;
        // Each half is `{...}` with at least one field: join their insides.
        let inside = |half: &[u8]| half.get(1..half.len() - 1).unwrap_or_default().to_vec();
        let (head, tail) = (inside(&head), inside(&tail));
        let mut stored = Vec::with_capacity(head.len() + tail.len() + 3);
        stored.push(b'{');
        stored.extend_from_slice(&head);
        stored.push(b',');
        stored.extend_from_slice(&tail);
        stored.push(b'}');
        let text = serde_json::to_vec(output_text)?;
        let mut client = Vec::with_capacity(stored.len() + text.len() + 16);
        client.push(b'{');
        client.extend_from_slice(&head);
        client.extend_from_slice(b",\"output_text\":");
        client.extend_from_slice(&text);
        client.push(b',');
        client.extend_from_slice(&tail);
        client.push(b'}');
        Ok((client, stored))
    }

    /// The fields that sort before `output_text`.
    fn head<S: SerializeStruct>(&self, s: &mut S) -> Result<(), S::Error> {
        let e = self.echo;
        s.serialize_field("created_at", &self.created_at)?;
        s.serialize_field("error", &self.error)?;
        s.serialize_field("id", self.id)?;
        s.serialize_field(
            "incomplete_details",
            &self.incomplete.map(|reason| Reason { reason }),
        )?;
        s.serialize_field("instructions", &e.instructions)?;
        s.serialize_field("max_output_tokens", &e.max_output_tokens)?;
        s.serialize_field("metadata", &OrElse(e.metadata.as_ref(), EmptyObject))?;
        s.serialize_field("model", self.model)?;
        s.serialize_field("object", "response")?;
        s.serialize_field("output", &self.output)
    }

    /// The fields that sort after `output_text`.
    fn tail<S: SerializeStruct>(&self, s: &mut S) -> Result<(), S::Error> {
        let e = self.echo;
        s.serialize_field("parallel_tool_calls", &e.parallel_tool_calls)?;
        s.serialize_field("previous_response_id", &e.previous_response_id)?;
        if let Some(key) = &e.prompt_cache_key {
            s.serialize_field("prompt_cache_key", key)?;
        }
        s.serialize_field(
            "reasoning",
            &Reasoning {
                effort: e.reasoning_effort.as_deref(),
                summary: e.reasoning_summary.as_deref(),
            },
        )?;
        if let Some(tier) = &e.service_tier {
            s.serialize_field("service_tier", tier)?;
        }
        s.serialize_field("status", self.status)?;
        s.serialize_field("store", &e.store)?;
        s.serialize_field("temperature", &e.temperature)?;
        s.serialize_field("text", &OrElse(e.text.as_ref(), PlainText))?;
        s.serialize_field("tool_choice", &OrElse(e.tool_choice.as_ref(), "auto"))?;
        s.serialize_field("tools", &OrElse(e.tools.as_ref(), [(); 0]))?;
        s.serialize_field("top_p", &e.top_p)?;
        s.serialize_field("truncation", &OrElse(e.truncation.as_ref(), "disabled"))?;
        s.serialize_field("usage", &self.usage)?;
        s.serialize_field("user", &e.user)
    }
}

impl<O: Serialize> Serialize for ObjectView<'_, O> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Response", 26)?;
        self.head(&mut s)?;
        if let Some(text) = self.output_text {
            s.serialize_field("output_text", text)?;
        }
        self.tail(&mut s)?;
        s.end()
    }
}

/// Half of an object's fields ([`ObjectView::head`] or, with `tail`, [`ObjectView::tail`]) as
/// an object.
struct Half<'v, 'a, O> {
    view: &'v ObjectView<'a, O>,
    tail: bool,
}

impl<O: Serialize> Serialize for Half<'_, '_, O> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Response", 16)?;
        if self.tail {
            self.view.tail(&mut s)?;
        } else {
            self.view.head(&mut s)?;
        }
        s.end()
    }
}

#[derive(Serialize)]
struct Reason {
    reason: &'static str,
}

#[derive(Serialize)]
struct Reasoning<'a> {
    effort: Option<&'a str>,
    summary: Option<&'a str>,
}

/// The given value, or `default`.
struct OrElse<'a, T, D>(Option<&'a T>, D);

impl<T: Serialize, D: Serialize> Serialize for OrElse<'_, T, D> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(value) => value.serialize(serializer),
            None => self.1.serialize(serializer),
        }
    }
}

/// `{}`.
struct EmptyObject;

impl Serialize for EmptyObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_map(Some(0))?.end()
    }
}

/// `{"format": {"type": "text"}}`.
struct PlainText;

impl Serialize for PlainText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Format {
            #[serde(rename = "type")]
            kind: &'static str,
        }
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("format", &Format { kind: "text" })?;
        map.end()
    }
}
