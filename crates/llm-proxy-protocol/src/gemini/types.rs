//! Our own serde types for the Gemini `generateContent` wire format (v1beta, camelCase). Request
//! types keep unknown fields in flattened maps; snake_case spellings (accepted by Google's JSON
//! parser and used in some of its examples) are read through aliases.

use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::extra_fields::deserialize_keeping_extra;

/// `POST /v1beta/models/{model}:generateContent` body (the model is in the URL).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentRequest {
    #[serde(default)]
    pub contents: Vec<Content>,
    #[serde(
        default,
        alias = "system_instruction",
        skip_serializing_if = "Option::is_none"
    )]
    pub system_instruction: Option<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    #[serde(
        default,
        alias = "tool_config",
        skip_serializing_if = "Option::is_none"
    )]
    pub tool_config: Option<ToolConfig>,
    #[serde(
        default,
        alias = "generation_config",
        skip_serializing_if = "Option::is_none"
    )]
    pub generation_config: Option<GenerationConfig>,
    /// Passed through untouched.
    #[serde(
        default,
        alias = "safety_settings",
        skip_serializing_if = "Option::is_none"
    )]
    pub safety_settings: Option<Vec<Value>>,
    #[serde(
        default,
        alias = "cached_content",
        skip_serializing_if = "Option::is_none"
    )]
    pub cached_content: Option<String>,
    /// Everything else (labels, serviceTier, provider-specific fields).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A turn: a role and its parts.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Content {
    /// `user` or `model` (absent means `user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default)]
    pub parts: Vec<Part>,
}

/// One part of a turn. Gemini parts are a union of data kinds plus metadata (`thought`,
/// `thoughtSignature`), so every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The part is a thought (reasoning summary), not answer text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thought: Option<bool>,
    /// Opaque signature of the model's reasoning; must be sent back on the same part.
    #[serde(
        default,
        alias = "thought_signature",
        skip_serializing_if = "Option::is_none"
    )]
    pub thought_signature: Option<String>,
    #[serde(
        default,
        alias = "inline_data",
        skip_serializing_if = "Option::is_none"
    )]
    pub inline_data: Option<Blob>,
    #[serde(default, alias = "file_data", skip_serializing_if = "Option::is_none")]
    pub file_data: Option<FileData>,
    #[serde(
        default,
        alias = "function_call",
        skip_serializing_if = "Option::is_none"
    )]
    pub function_call: Option<FunctionCall>,
    #[serde(
        default,
        alias = "function_response",
        skip_serializing_if = "Option::is_none"
    )]
    pub function_response: Option<FunctionResponse>,
    #[serde(
        default,
        alias = "executable_code",
        skip_serializing_if = "Option::is_none"
    )]
    pub executable_code: Option<Value>,
    #[serde(
        default,
        alias = "code_execution_result",
        skip_serializing_if = "Option::is_none"
    )]
    pub code_execution_result: Option<Value>,
    /// videoMetadata, partMetadata, mediaResolution, ...
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Part {
    /// A plain text part.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: Some(text.into()),
            ..Self::default()
        }
    }
}

/// Inline media.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Blob {
    #[serde(default, alias = "mime_type")]
    pub mime_type: String,
    /// Base64-encoded bytes.
    #[serde(default)]
    pub data: String,
}

/// Media by URI (Files API, GCS, public URLs).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileData {
    #[serde(default, alias = "mime_type", skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    #[serde(alias = "file_uri")]
    pub file_uri: String,
}

/// A function call predicted by the model.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct FunctionCall {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    /// Arguments as a JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
}

/// The result of a function call, sent by the client.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct FunctionResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    /// The result as a JSON object.
    #[serde(default)]
    pub response: Value,
    /// willContinue, scheduling, parts, ...
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One `tools` entry: function declarations, or another tool kind (googleSearch,
/// codeExecution, urlContext, ...) kept as raw JSON in `extra`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tool {
    #[serde(
        default,
        alias = "function_declarations",
        skip_serializing_if = "Option::is_none"
    )]
    pub function_declarations: Option<Vec<FunctionDeclaration>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A function the model may call.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionDeclaration {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Arguments schema in Google's OpenAPI subset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// Arguments schema as full JSON Schema (alternative to `parameters`).
    #[serde(
        default,
        alias = "parameters_json_schema",
        skip_serializing_if = "Option::is_none"
    )]
    pub parameters_json_schema: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `toolConfig`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolConfig {
    #[serde(
        default,
        alias = "function_calling_config",
        skip_serializing_if = "Option::is_none"
    )]
    pub function_calling_config: Option<FunctionCallingConfig>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `toolConfig.functionCallingConfig`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionCallingConfig {
    /// `AUTO`, `ANY`, `NONE` or `VALIDATED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(
        default,
        alias = "allowed_function_names",
        skip_serializing_if = "Option::is_none"
    )]
    pub allowed_function_names: Option<Vec<String>>,
}

/// `generationConfig`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerationConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, alias = "top_p", skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Google's SDKs send this as a float; written back as an integer when whole.
    #[serde(
        default,
        alias = "top_k",
        skip_serializing_if = "Option::is_none",
        serialize_with = "whole_number"
    )]
    pub top_k: Option<f64>,
    #[serde(
        default,
        alias = "candidate_count",
        skip_serializing_if = "Option::is_none"
    )]
    pub candidate_count: Option<u32>,
    #[serde(
        default,
        alias = "max_output_tokens",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_output_tokens: Option<u64>,
    #[serde(
        default,
        alias = "stop_sequences",
        skip_serializing_if = "Option::is_none"
    )]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(
        default,
        alias = "presence_penalty",
        skip_serializing_if = "Option::is_none"
    )]
    pub presence_penalty: Option<f64>,
    #[serde(
        default,
        alias = "frequency_penalty",
        skip_serializing_if = "Option::is_none"
    )]
    pub frequency_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(
        default,
        alias = "response_mime_type",
        skip_serializing_if = "Option::is_none"
    )]
    pub response_mime_type: Option<String>,
    /// Output schema in Google's OpenAPI subset.
    #[serde(
        default,
        alias = "response_schema",
        skip_serializing_if = "Option::is_none"
    )]
    pub response_schema: Option<Value>,
    /// Output schema as full JSON Schema.
    #[serde(
        default,
        alias = "response_json_schema",
        skip_serializing_if = "Option::is_none"
    )]
    pub response_json_schema: Option<Value>,
    #[serde(
        default,
        alias = "thinking_config",
        skip_serializing_if = "Option::is_none"
    )]
    pub thinking_config: Option<ThinkingConfig>,
    /// responseModalities, speechConfig, mediaResolution, responseLogprobs, ...
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl GenerationConfig {
    /// Whether nothing is set (the field can then be left out).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// `generationConfig.thinkingConfig`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThinkingConfig {
    /// Token budget; `0` disables thinking, `-1` lets the model decide.
    #[serde(
        default,
        alias = "thinking_budget",
        skip_serializing_if = "Option::is_none"
    )]
    pub thinking_budget: Option<i64>,
    #[serde(
        default,
        alias = "include_thoughts",
        skip_serializing_if = "Option::is_none"
    )]
    pub include_thoughts: Option<bool>,
    /// Gemini 3 levels: `minimal`, `low`, `medium`, `high` (any case).
    #[serde(
        default,
        alias = "thinking_level",
        skip_serializing_if = "Option::is_none"
    )]
    pub thinking_level: Option<String>,
}

/// Non-streamed response, and also one frame of a streamed response.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentResponse {
    #[serde(default)]
    pub candidates: Vec<Candidate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_feedback: Option<PromptFeedback>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_metadata: Option<UsageMetadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_id: Option<String>,
}

impl GenerateContentResponse {
    /// Whether the frame carries nothing a response has (an error frame parses as this).
    pub fn is_blank(&self) -> bool {
        self.candidates.is_empty()
            && self.prompt_feedback.is_none()
            && self.usage_metadata.is_none()
            && self.model_version.is_none()
            && self.response_id.is_none()
    }
}

/// One candidate answer.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_ratings: Option<Vec<Value>>,
    /// finishMessage, citationMetadata, groundingMetadata, avgLogprobs, ...
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Why a prompt was blocked (a blocked prompt has no candidates).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptFeedback {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_ratings: Option<Vec<Value>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Token counts.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageMetadata {
    /// Prompt tokens, cached ones included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_token_count: Option<u64>,
    /// Answer tokens, thoughts excluded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidates_token_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_token_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thoughts_token_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_content_token_count: Option<u64>,
    /// Tokens of tool results fed back by server-side tools (search, code execution).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_use_prompt_token_count: Option<u64>,
    /// promptTokensDetails, candidatesTokensDetails, ...
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Writes a whole float as an integer (`40`, not `40.0`), so values Google's SDKs type as
/// floats look the way the API documents them.
fn whole_number<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(f) if f.fract() == 0.0 && *f >= 0.0 && *f < 9.0e15 => s.serialize_u64(*f as u64),
        Some(f) => s.serialize_f64(*f),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn camel_and_snake_case_spellings_parse() {
        let req: GenerateContentRequest = serde_json::from_value(json!({
            "system_instruction": {"parts": [{"text": "sys"}]},
            "contents": [{"role": "user", "parts": [
                {"inline_data": {"mime_type": "image/png", "data": "QQ=="}},
                {"text": "hi"}
            ]}],
            "generationConfig": {"maxOutputTokens": 5, "top_k": 40.0, "responseModalities": ["TEXT"]},
            "labels": {"a": "b"}
        }))
        .unwrap();
        assert_eq!(
            req.system_instruction.unwrap().parts[0].text.as_deref(),
            Some("sys")
        );
        let blob = req.contents[0].parts[0].inline_data.as_ref().unwrap();
        assert_eq!(blob.mime_type, "image/png");
        let gc = req.generation_config.unwrap();
        assert_eq!(gc.max_output_tokens, Some(5));
        assert_eq!(gc.top_k, Some(40.0));
        assert_eq!(gc.extra.get("responseModalities"), Some(&json!(["TEXT"])));
        assert_eq!(req.extra.get("labels"), Some(&json!({"a": "b"})));
    }

    #[test]
    fn whole_top_k_serialises_as_integer() {
        let gc = GenerationConfig {
            top_k: Some(40.0),
            ..GenerationConfig::default()
        };
        assert_eq!(serde_json::to_value(&gc).unwrap(), json!({"topK": 40}));
        let gc = GenerationConfig {
            top_k: Some(2.5),
            ..GenerationConfig::default()
        };
        assert_eq!(serde_json::to_value(&gc).unwrap(), json!({"topK": 2.5}));
    }

    #[test]
    fn parts_keep_unknown_fields_and_round_trip() {
        let v = json!({"text": "x", "thoughtSignature": "c2ln", "videoMetadata": {"fps": 1}});
        let p: Part = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(p.thought_signature.as_deref(), Some("c2ln"));
        assert_eq!(serde_json::to_value(&p).unwrap(), v);
    }

    #[test]
    fn error_frames_parse_as_blank_responses() {
        let r: GenerateContentResponse =
            serde_json::from_value(json!({"error": {"code": 500, "message": "x"}})).unwrap();
        assert!(r.is_blank());
    }
}

deserialize_keeping_extra!(GenerateContentRequest "a generateContent request object" {
    contents: "contents" => optional,
    system_instruction: "systemInstruction" | "system_instruction" => optional,
    tools: "tools" => optional,
    tool_config: "toolConfig" | "tool_config" => optional,
    generation_config: "generationConfig" | "generation_config" => optional,
    safety_settings: "safetySettings" | "safety_settings" => optional,
    cached_content: "cachedContent" | "cached_content" => optional,
});

deserialize_keeping_extra!(Part "a part object" {
    text: "text" => optional,
    thought: "thought" => optional,
    thought_signature: "thoughtSignature" | "thought_signature" => optional,
    inline_data: "inlineData" | "inline_data" => optional,
    file_data: "fileData" | "file_data" => optional,
    function_call: "functionCall" | "function_call" => optional,
    function_response: "functionResponse" | "function_response" => optional,
    executable_code: "executableCode" | "executable_code" => optional,
    code_execution_result: "codeExecutionResult" | "code_execution_result" => optional,
});
