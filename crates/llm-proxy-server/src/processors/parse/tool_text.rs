//! Recognising tool calls a model wrote as text: `<tool_call>{json}</tool_call>` (Hermes/Qwen,
//! also with a Qwen3-Coder `<function=name>` body), `TOOL CALL: name {json}`, XML tool tags
//! (`<read_file><path>a</path></read_file>`, namespaced `<ns:read_file>`), `<invoke name=..>`
//! blocks (optionally in `<function_calls>`, optionally namespaced), DeepSeek DSML markup
//! (`<｜DSML｜invoke name=..>`) and tool-call tokens (`<｜tool▁call▁begin｜>`), and a bare JSON
//! object naming a tool at the start of the answer. Only tools the request defined count;
//! anything else is text. Pure: [`scan`] looks at the start of a text buffer and says how much
//! of it is text, a tool call, or must wait for more.

use serde_json::{Map, Value};

use super::json;

/// The tools a request defined: names and argument schemas.
#[derive(Debug, Clone, Default)]
pub struct ToolSet {
    tools: Vec<(String, Value)>,
}

impl ToolSet {
    /// Tools by `(name, parameters schema)`.
    pub fn new(tools: impl IntoIterator<Item = (String, Value)>) -> Self {
        Self {
            tools: tools.into_iter().collect(),
        }
    }

    /// Whether no tool is defined.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    fn schema(&self, name: &str) -> Option<&Value> {
        self.tools.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }

    /// The declared JSON type of `name`'s property `param`.
    fn param_type(&self, name: &str, param: &str) -> Option<&str> {
        self.schema(name)?
            .get("properties")?
            .get(param)?
            .get("type")?
            .as_str()
    }
}

/// A tool call found in text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextToolCall {
    /// A tool the request defined.
    pub name: String,
    /// Its arguments as a JSON object.
    pub arguments: String,
}

/// What the start of a text buffer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The first `n` bytes (> 0) are plain text.
    Text(usize),
    /// The buffer may start a tool call; more text is needed to tell.
    Hold,
    /// The first `consumed` bytes are these tool calls.
    Calls {
        /// Bytes the calls took.
        consumed: usize,
        /// The calls, in order.
        calls: Vec<TextToolCall>,
    },
}

const TOOL_CALL_PREFIX: &str = "TOOL CALL:";
/// Longest tag name worth waiting for.
const MAX_TAG_NAME: usize = 128;
const DSML: &str = "｜DSML｜";
const DS_CALLS_BEGIN: &str = "<｜tool▁calls▁begin｜>";
const DS_CALLS_END: &str = "<｜tool▁calls▁end｜>";
const DS_CALL_BEGIN: &str = "<｜tool▁call▁begin｜>";
const DS_CALL_END: &str = "<｜tool▁call▁end｜>";
const DS_SEP: &str = "<｜tool▁sep｜>";

/// Looks at the start of `text`. `at_start`: nothing but whitespace and tool calls came before
/// in this answer (a bare JSON call is only taken there). `complete`: no more text follows.
pub fn scan(text: &str, tools: &ToolSet, at_start: bool, complete: bool) -> Step {
    if text.is_empty() {
        return Step::Text(0);
    }
    let first = at_start.then(|| bare_start(text)).flatten();
    let next = next_candidate(text);
    let pos = match (first, next) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => match a.or(b) {
            Some(p) => p,
            None => return Step::Text(text.len()),
        },
    };
    if pos > 0 {
        return Step::Text(pos);
    }
    let outcome = if first == Some(0) {
        bare_json(text, tools, complete)
    } else if text.starts_with('T') {
        tool_call_line(text, tools, complete)
    } else {
        tag(text, tools, complete)
    };
    match outcome {
        Found::Calls(consumed, calls) => Step::Calls { consumed, calls },
        Found::More if !complete => Step::Hold,
        // Not a call: its first character is text; scanning goes on after it.
        Found::More | Found::No => Step::Text(text.chars().next().map_or(1, char::len_utf8)),
    }
}

enum Found {
    Calls(usize, Vec<TextToolCall>),
    More,
    No,
}

/// Where a bare JSON call may start: the first non-blank character, `{` or a code fence.
fn bare_start(text: &str) -> Option<usize> {
    let trimmed = text.trim_start();
    let at = text.len() - trimmed.len();
    if trimmed.starts_with('{') || trimmed.starts_with("```") || "```".starts_with(trimmed) {
        Some(at)
    } else {
        None
    }
}

/// The next place a tagged or `TOOL CALL:` call could start (a `<` not right after a
/// backtick, or `TOOL CALL:`, or a prefix of it ending the buffer).
fn next_candidate(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut lt = None;
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'<', &bytes[from..]) {
        let at = from + i;
        if at == 0 || bytes[at - 1] != b'`' {
            lt = Some(at);
            break;
        }
        from = at + 1;
    }
    let line = text.find(TOOL_CALL_PREFIX).or_else(|| {
        (1..TOOL_CALL_PREFIX.len())
            .rev()
            .find(|&n| text.ends_with(&TOOL_CALL_PREFIX[..n]))
            .map(|n| text.len() - n)
    });
    match (lt, line) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `TOOL CALL: name {json}` or `TOOL CALL: {"name": .., "arguments": ..}`.
fn tool_call_line(text: &str, tools: &ToolSet, complete: bool) -> Found {
    let Some(rest) = text.strip_prefix(TOOL_CALL_PREFIX) else {
        return if TOOL_CALL_PREFIX.starts_with(text) {
            Found::More
        } else {
            Found::No
        };
    };
    let after = rest.trim_start_matches([' ', '\t']);
    let head = TOOL_CALL_PREFIX.len() + rest.len() - after.len();
    if after.starts_with('{') {
        return match bare_json(after, tools, complete) {
            Found::Calls(n, calls) => Found::Calls(head + n, calls),
            other => other,
        };
    }
    let name_len = after
        .find(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.')))
        .unwrap_or(after.len());
    if name_len == after.len() {
        return if name_len < MAX_TAG_NAME {
            Found::More
        } else {
            Found::No
        };
    }
    let name = &after[..name_len];
    if tools.schema(name).is_none() {
        return Found::No;
    }
    let args_part = &after[name_len..];
    let args_trimmed = args_part.trim_start();
    let lead = head + name_len + args_part.len() - args_trimmed.len();
    if args_trimmed.is_empty() {
        return Found::More;
    }
    if !args_trimmed.starts_with('{') {
        return Found::No;
    }
    match balanced_object(args_trimmed) {
        Some(end) => match arguments_from_text(&args_trimmed[..end]) {
            Some(arguments) => Found::Calls(
                lead + end,
                vec![TextToolCall {
                    name: name.to_owned(),
                    arguments,
                }],
            ),
            None => Found::No,
        },
        None if complete => match arguments_from_text(args_trimmed) {
            Some(arguments) => Found::Calls(
                text.len(),
                vec![TextToolCall {
                    name: name.to_owned(),
                    arguments,
                }],
            ),
            None => Found::No,
        },
        None => Found::More,
    }
}

/// A bare JSON object (optionally in a code fence) naming a defined tool, at `text`'s first
/// non-blank character.
fn bare_json(text: &str, tools: &ToolSet, complete: bool) -> Found {
    let trimmed = text.trim_start();
    let lead = text.len() - trimmed.len();
    if let Some(after_ticks) = trimmed.strip_prefix("```") {
        let Some(nl) = after_ticks.find('\n') else {
            return if after_ticks.len() < 32 {
                Found::More
            } else {
                Found::No
            };
        };
        let body = &after_ticks[nl + 1..];
        let Some(close) = body.find("```") else {
            return if complete { Found::No } else { Found::More };
        };
        let inner = body[..close].trim();
        if !inner.starts_with('{') || balanced_object(inner) != Some(inner.len()) {
            return Found::No;
        }
        return match call_from_object(inner, tools) {
            Some(call) => Found::Calls(lead + 3 + nl + 1 + close + 3, vec![call]),
            None => Found::No,
        };
    }
    if "```".starts_with(trimmed) {
        return Found::More;
    }
    match balanced_object(trimmed) {
        Some(end) => match call_from_object(&trimmed[..end], tools) {
            Some(call) => Found::Calls(lead + end, vec![call]),
            None => Found::No,
        },
        None if complete => match call_from_object(trimmed, tools) {
            Some(call) => Found::Calls(text.len(), vec![call]),
            None => Found::No,
        },
        None => Found::More,
    }
}

/// The call a JSON object describes: `{"name", "arguments"|"parameters"|"args"|"input"}`,
/// `{"tool"|"tool_name", ...}` or `{"function": {"name", "arguments"}}`.
fn call_from_object(text: &str, tools: &ToolSet) -> Option<TextToolCall> {
    let value: Value = serde_json::from_str(&json::repair(text)?).ok()?;
    let obj = value.as_object()?;
    let obj = match obj.get("function") {
        Some(Value::Object(f)) => f,
        _ => obj,
    };
    let name = ["name", "tool", "tool_name", "function"]
        .iter()
        .find_map(|k| obj.get(*k)?.as_str())?;
    tools.schema(name)?;
    let args = ["arguments", "parameters", "args", "input"]
        .iter()
        .find_map(|k| obj.get(*k))?;
    let arguments = match args {
        Value::Object(_) => args.to_string(),
        Value::String(s) => arguments_from_text(s)?,
        _ => return None,
    };
    Some(TextToolCall {
        name: name.to_owned(),
        arguments,
    })
}

/// A JSON object's text as compact, valid JSON (repaired when needed).
fn arguments_from_text(text: &str) -> Option<String> {
    let value: Value = serde_json::from_str(&json::repair(text)?).ok()?;
    value.is_object().then(|| value.to_string())
}

/// End (exclusive) of the JSON object starting `text` (at `{`), strings respected.
fn balanced_object(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string: Option<u8> = None;
    let mut escaped = false;
    for (i, b) in text.bytes().enumerate() {
        if let Some(q) = in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == q {
                in_string = None;
            }
            continue;
        }
        match b {
            b'"' | b'\'' => in_string = Some(b),
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// A call written as tags.
fn tag(text: &str, tools: &ToolSet, complete: bool) -> Found {
    if text.starts_with(DS_CALLS_BEGIN) || text.starts_with(DS_CALL_BEGIN) {
        return deepseek_tokens(text, tools);
    }
    if DS_CALLS_BEGIN.starts_with(text) {
        return Found::More;
    }
    // A tag name starts with a letter, `_` or DeepSeek's `｜`; `a < b` is prose at once.
    if !text[1..].is_empty()
        && !text[1..].starts_with(|c: char| c.is_alphabetic() || c == '_' || c == '｜')
    {
        return Found::No;
    }
    let Some(open) = open_tag(text) else {
        return if text.len() < MAX_TAG_NAME && !text[1..].contains(['>', '<', '\n']) {
            Found::More
        } else {
            Found::No
        };
    };
    let local = local_name(open.name);
    let close = close_tag(open.name);
    let body_start = open.end;
    let (body, consumed) = match text[body_start..].find(&close) {
        Some(at) => (
            &text[body_start..body_start + at],
            body_start + at + close.len(),
        ),
        None if complete && matches!(local, "tool_call" | "function_calls") => {
            (&text[body_start..], text.len())
        }
        None => {
            // Only a tag that can start a call is worth waiting for.
            let known = matches!(local, "tool_call" | "function_calls" | "invoke")
                || local.starts_with("function=")
                || tools.schema(local).is_some();
            return if known && !complete {
                Found::More
            } else {
                Found::No
            };
        }
    };
    let calls = match local {
        "tool_call" => {
            let inner = body.trim();
            if inner.starts_with('<') {
                tagged_calls(inner, tools)
            } else {
                call_from_object(json::strip_fences(inner), tools).map(|c| vec![c])
            }
        }
        "function_calls" => tagged_calls(body, tools),
        "invoke" => invoke_call(open.attr("name"), body, tools).map(|c| vec![c]),
        l if l.starts_with("function=") => {
            params_call(&l["function=".len()..], body, tools).map(|c| vec![c])
        }
        name if tools.schema(name).is_some() => params_call(name, body, tools).map(|c| vec![c]),
        _ => None,
    };
    match calls {
        Some(calls) if !calls.is_empty() => Found::Calls(consumed, calls),
        _ => Found::No,
    }
}

/// Every `<invoke>` / `<function=..>` call inside `body`; `None` if any is malformed.
fn tagged_calls(body: &str, tools: &ToolSet) -> Option<Vec<TextToolCall>> {
    let mut calls = Vec::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let open = open_tag(rest)?;
        let close = close_tag(open.name);
        let at = rest[open.end..].find(&close)?;
        let inner = &rest[open.end..open.end + at];
        let local = local_name(open.name);
        let call = if local == "invoke" {
            invoke_call(open.attr("name"), inner, tools)?
        } else if let Some(name) = local.strip_prefix("function=") {
            params_call(name, inner, tools)?
        } else {
            return None;
        };
        calls.push(call);
        rest = rest[open.end + at + close.len()..].trim_start();
    }
    Some(calls)
}

/// `<invoke name="x">` with `<parameter name="p">v</parameter>` children.
fn invoke_call(name: Option<&str>, body: &str, tools: &ToolSet) -> Option<TextToolCall> {
    params_call(name?, body, tools)
}

/// A call to `name` whose arguments are child elements: `<p>v</p>`, `<parameter name="p">v`
/// or `<parameter=p>v`, each `</...>`-closed. DSML's `string="true"` keeps a value a string.
fn params_call(name: &str, body: &str, tools: &ToolSet) -> Option<TextToolCall> {
    tools.schema(name)?;
    let mut args = Map::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let open = open_tag(rest)?;
        let close = close_tag(open.name);
        let at = rest[open.end..].find(&close)?;
        let raw = &rest[open.end..open.end + at];
        let local = local_name(open.name);
        let (param, forced_string) = if local == "parameter" {
            (open.attr("name")?, open.attr("string").map(|s| s == "true"))
        } else if let Some(p) = local.strip_prefix("parameter=") {
            (p, None)
        } else {
            (local, None)
        };
        let value = param_value(tools.param_type(name, param), forced_string, raw);
        args.insert(param.to_owned(), value);
        rest = rest[open.end + at + close.len()..].trim_start();
    }
    Some(TextToolCall {
        name: name.to_owned(),
        arguments: Value::Object(args).to_string(),
    })
}

/// A parameter's text as the JSON value its schema (or DSML's `string` flag) asks for.
fn param_value(declared: Option<&str>, forced_string: Option<bool>, raw: &str) -> Value {
    let raw = raw.strip_prefix('\n').unwrap_or(raw);
    let raw = raw.strip_suffix('\n').unwrap_or(raw);
    let text = unescape_xml(raw);
    let wants_json = match forced_string {
        Some(s) => !s,
        None => {
            !matches!(declared, Some("string") | None) || {
                // Undeclared: only structured values are taken as JSON.
                declared.is_none() && text.trim_start().starts_with(['{', '['])
            }
        }
    };
    if wants_json && let Ok(v) = serde_json::from_str::<Value>(text.trim()) {
        return v;
    }
    Value::String(text)
}

fn unescape_xml(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// DeepSeek tool-call tokens: `<｜tool▁call▁begin｜>name<｜tool▁sep｜>{json}<｜tool▁call▁end｜>`
/// (or `function<｜tool▁sep｜>name\n```json ...```), optionally wrapped in the calls tokens.
fn deepseek_tokens(text: &str, tools: &ToolSet) -> Found {
    let (body, consumed) = if let Some(inner) = text.strip_prefix(DS_CALLS_BEGIN) {
        match inner.find(DS_CALLS_END) {
            Some(at) => (&inner[..at], DS_CALLS_BEGIN.len() + at + DS_CALLS_END.len()),
            None => return Found::More,
        }
    } else {
        match text.find(DS_CALL_END) {
            Some(at) => (&text[..at + DS_CALL_END.len()], at + DS_CALL_END.len()),
            None => return Found::More,
        }
    };
    let mut calls = Vec::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let Some(after) = rest.strip_prefix(DS_CALL_BEGIN) else {
            return Found::No;
        };
        let Some(end) = after.find(DS_CALL_END) else {
            return Found::No;
        };
        let Some((left, right)) = after[..end].split_once(DS_SEP) else {
            return Found::No;
        };
        let (name, args) = if left.trim() == "function" {
            match right.split_once('\n') {
                Some((n, a)) => (n.trim(), a),
                None => return Found::No,
            }
        } else {
            (left.trim(), right)
        };
        if tools.schema(name).is_none() {
            return Found::No;
        }
        let Some(arguments) = arguments_from_text(args) else {
            return Found::No;
        };
        calls.push(TextToolCall {
            name: name.to_owned(),
            arguments,
        });
        rest = after[end + DS_CALL_END.len()..].trim_start();
    }
    if calls.is_empty() {
        Found::No
    } else {
        Found::Calls(consumed, calls)
    }
}

/// An opening tag at the start of `text`.
struct OpenTag<'a> {
    /// Full name (`ns:invoke`, `｜DSML｜invoke`, `function=read_file`).
    name: &'a str,
    /// The attributes' text.
    attrs: &'a str,
    /// Byte just past `>`.
    end: usize,
}

impl<'a> OpenTag<'a> {
    /// A `key="value"` (or `'value'`) attribute.
    fn attr(&self, key: &str) -> Option<&'a str> {
        let mut rest = self.attrs;
        while let Some(at) = rest.find(key) {
            let before_ok = at == 0 || rest[..at].ends_with(char::is_whitespace);
            let after = rest[at + key.len()..].trim_start();
            if before_ok && let Some(v) = after.strip_prefix('=') {
                let v = v.trim_start();
                let q = v.chars().next()?;
                if q == '"' || q == '\'' {
                    let inner = &v[1..];
                    return inner.find(q).map(|end| &inner[..end]);
                }
            }
            rest = &rest[at + key.len()..];
        }
        None
    }
}

fn open_tag(text: &str) -> Option<OpenTag<'_>> {
    let rest = text.strip_prefix('<')?;
    let gt = rest.find('>')?;
    let inside = &rest[..gt];
    if inside.is_empty() || inside.starts_with(['/', ' ', '!', '?']) || inside.contains('<') {
        return None;
    }
    let name_end = inside.find(char::is_whitespace).unwrap_or(inside.len());
    let name = &inside[..name_end];
    if name.len() > MAX_TAG_NAME || name.ends_with('/') {
        return None;
    }
    Some(OpenTag {
        name,
        attrs: &inside[name_end..],
        end: 1 + gt + 1,
    })
}

/// The closing tag of an element named `name` (`<function=x>` closes with `</function>`).
fn close_tag(name: &str) -> String {
    let base = name.split('=').next().unwrap_or(name);
    format!("</{base}>")
}

/// The name without a namespace prefix (`ns:` or DeepSeek's `｜DSML｜`).
fn local_name(name: &str) -> &str {
    let name = name.strip_prefix(DSML).unwrap_or(name);
    match name.find('=') {
        // `function=a:b` keeps its value whole.
        Some(eq) => match name[..eq].rfind(':') {
            Some(colon) => &name[colon + 1..],
            None => name,
        },
        None => name.rsplit(':').next().unwrap_or(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tools() -> ToolSet {
        ToolSet::new([
            (
                "read_file".to_owned(),
                json!({"type": "object", "properties": {"path": {"type": "string"}, "limit": {"type": "integer"}}}),
            ),
            (
                "get_weather".to_owned(),
                json!({"type": "object", "properties": {"city": {"type": "string"}}}),
            ),
        ])
    }

    /// Scans all of `text` as one complete answer: text pieces and calls in order.
    fn run(text: &str) -> (String, Vec<(String, Value)>) {
        let tools = tools();
        let mut rest = text;
        let mut out = String::new();
        let mut calls = Vec::new();
        let mut at_start = true;
        while !rest.is_empty() {
            match scan(rest, &tools, at_start, true) {
                Step::Text(n) => {
                    out.push_str(&rest[..n]);
                    at_start &= rest[..n].trim().is_empty();
                    rest = &rest[n..];
                }
                Step::Calls { consumed, calls: c } => {
                    calls.extend(
                        c.into_iter()
                            .map(|c| (c.name, serde_json::from_str(&c.arguments).unwrap())),
                    );
                    rest = &rest[consumed..];
                }
                Step::Hold => panic!("hold on complete text"),
            }
        }
        (out, calls)
    }

    fn one_call(text: &str) -> (String, Value) {
        let (t, calls) = run(text);
        assert_eq!(calls.len(), 1, "text {t:?} calls {calls:?}");
        calls.into_iter().next().unwrap()
    }

    /// Test text with closing tags spelled as placeholders: `{/P}` parameter, `{/I}` invoke,
    /// `{D}` DeepSeek's DSML prefix.
    fn t(s: &str) -> String {
        s.replace("{/P}", concat!("</", "parameter>"))
            .replace("{/I}", concat!("</", "invoke>"))
            .replace("{D}", DSML)
    }

    #[test]
    fn every_written_form_becomes_a_call() {
        let want = ("read_file".to_owned(), json!({"path": "a.txt"}));
        for text in [
            "<tool_call>{\"name\": \"read_file\", \"arguments\": {\"path\": \"a.txt\"}}</tool_call>",
            "<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"a.txt\"}}\n</tool_call>",
            "TOOL CALL: read_file {\"path\": \"a.txt\"}",
            "TOOL CALL: {\"name\": \"read_file\", \"arguments\": {\"path\": \"a.txt\"}}",
            "<read_file><path>a.txt</path></read_file>",
            "<read_file>\n<path>a.txt</path>\n</read_file>",
            "<kilo:read_file><path>a.txt</path></kilo:read_file>",
            "<function_calls><invoke name=\"read_file\"><parameter name=\"path\">a.txt{/P}{/I}</function_calls>",
            "<invoke name=\"read_file\"><parameter name=\"path\">a.txt{/P}{/I}",
            "<ns:function_calls><ns:invoke name=\"read_file\"><ns:parameter name=\"path\">a.txt</ns:parameter></ns:invoke></ns:function_calls>",
            "<{D}function_calls>\n<{D}invoke name=\"read_file\">\n<{D}parameter name=\"path\" string=\"true\">a.txt</{D}parameter>\n</{D}invoke>\n</{D}function_calls>",
            "<tool_call>\n<function=read_file>\n<parameter=path>\na.txt\n{/P}\n</function>\n</tool_call>",
            "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>read_file<｜tool▁sep｜>{\"path\": \"a.txt\"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
            "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>read_file\n```json\n{\"path\": \"a.txt\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
            "{\"name\": \"read_file\", \"arguments\": {\"path\": \"a.txt\"}}",
            "  {\"name\": \"read_file\", \"parameters\": {\"path\": \"a.txt\"}}",
            "{\"type\": \"function\", \"function\": {\"name\": \"read_file\", \"arguments\": \"{\\\"path\\\": \\\"a.txt\\\"}\"}}",
            "```json\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"a.txt\"}}\n```",
            // Broken JSON inside a call is repaired.
            "<tool_call>{'name': 'read_file', 'arguments': {'path': 'a.txt',}}</tool_call>",
        ] {
            let text = t(text);
            assert_eq!(one_call(&text), want, "{text}");
        }
    }

    #[test]
    fn parameters_follow_the_schema_types() {
        let (_, args) = one_call(&t(
            "<read_file><path>42</path><limit>10</limit></read_file>",
        ));
        assert_eq!(args, json!({"path": "42", "limit": 10}));
        let (_, args) = one_call(&t(
            "<{D}invoke name=\"read_file\"><{D}parameter name=\"limit\" string=\"false\">5</{D}parameter></{D}invoke>",
        ));
        assert_eq!(args, json!({"limit": 5}));
        let (_, args) = one_call("<read_file><path>a &lt;b&gt; &amp; c</path></read_file>");
        assert_eq!(args, json!({"path": "a <b> & c"}));
    }

    #[test]
    fn prose_around_calls_stays_text_and_several_calls_are_found() {
        let (text, calls) = run(&t(
            "Let me look.\n<tool_call>{\"name\": \"read_file\", \"arguments\": {\"path\": \"a\"}}</tool_call>\n<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}</tool_call>",
        ));
        assert_eq!(text, "Let me look.\n\n");
        assert_eq!(
            calls,
            vec![
                ("read_file".to_owned(), json!({"path": "a"})),
                ("get_weather".to_owned(), json!({"city": "Paris"})),
            ]
        );
        let (_, calls) = run(&t(
            "<function_calls><invoke name=\"read_file\"><parameter name=\"path\">a{/P}{/I}<invoke name=\"get_weather\"><parameter name=\"city\">Oslo{/P}{/I}</function_calls>",
        ));
        assert_eq!(calls.len(), 2);
    }

    #[test]
    fn what_is_not_a_defined_call_stays_text() {
        for text in [
            "Use the `<tool_call>` tag to call tools.",
            "Wrap it like `<tool_call>{\"name\": \"read_file\", \"arguments\": {}}</tool_call>` please",
            "<tool_call>{\"name\": \"delete_everything\", \"arguments\": {}}</tool_call>",
            "{\"name\": \"Alice\", \"age\": 3}",
            "{\"name\": \"read_file\"}",
            "Here: {\"name\": \"read_file\", \"arguments\": {\"path\": \"a\"}}",
            "TOOL CALL: unknown_tool {\"a\": 1}",
            "TOOL CALL: read_file and then nothing",
            "if a < b && c > d { x }",
            "<div><p>html</p></div>",
            "<read_file>no closing tag",
            "<tool_call>not json</tool_call>",
            "x <｜tool▁call▁begin｜>nope<｜tool▁sep｜>{}<｜tool▁call▁end｜>",
            "```rust\nfn main() {}\n```",
            "TOOL",
            "<",
        ] {
            let text = t(text);
            let (out, calls) = run(&text);
            assert!(calls.is_empty(), "{text}: {calls:?}");
            assert_eq!(out, text);
        }
    }

    #[test]
    fn an_unfinished_candidate_waits_for_more_text() {
        let tools = tools();
        for partial in [
            "<tool_ca",
            "<tool_call>{\"name\": \"read_file\"",
            "TOOL CA",
            "TOOL CALL: read_file {\"path\":",
            "<read_file><path>a",
            "{\"name\": \"read_file\", \"argu",
            "``",
            "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>read_file",
        ] {
            assert_eq!(scan(partial, &tools, true, false), Step::Hold, "{partial}");
        }
        // A tag that cannot start a call is text at once.
        assert_eq!(scan("<div>", &tools, true, false), Step::Text(1));
        assert_eq!(scan("a < b", &tools, true, false), Step::Text(2));
        assert_eq!(scan("plain", &tools, true, false), Step::Text(5));
    }
}
