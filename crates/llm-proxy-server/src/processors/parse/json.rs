//! Repair of the malformed JSON models write (tool arguments, structured output): code fences,
//! prose before the value, single quotes, unquoted keys, Python literals, comments, trailing
//! commas, raw control characters in strings, and unclosed strings, arrays and objects. Pure
//! and allocation-bounded by its input, so it is fuzzed directly.

use serde::de::IgnoredAny;

/// Whether `text` is valid JSON as it stands.
pub fn is_valid(text: &str) -> bool {
    serde_json::from_str::<IgnoredAny>(text).is_ok()
}

/// `text` as valid JSON (an object or an array), or `None` when it cannot be repaired. Valid
/// input comes back unchanged; anything after the first complete top-level value is dropped.
pub fn repair(text: &str) -> Option<String> {
    if is_valid(text) {
        return Some(text.to_owned());
    }
    let body = strip_fences(text.trim());
    let start = body.find(['{', '['])?;
    let fixed = rewrite(&body[start..]);
    is_valid(&fixed).then_some(fixed)
}

/// The inside of a Markdown code fence (```` ```json ... ``` ````), or `text` itself.
pub fn strip_fences(text: &str) -> &str {
    let Some(rest) = text.strip_prefix("```") else {
        return text;
    };
    // The info string (`json`) runs to the end of the fence's line.
    let rest = rest.find('\n').map_or("", |nl| &rest[nl + 1..]);
    let rest = rest.trim_end();
    rest.strip_suffix("```").unwrap_or(rest)
}

/// One pass over `src` (starting at `{` or `[`) writing the repaired text.
fn rewrite(src: &str) -> String {
    let mut out = String::with_capacity(src.len() + 16);
    let mut closers: Vec<char> = Vec::new();
    let mut chars = src.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => read_string(c, &mut chars, &mut out),
            '{' => {
                closers.push('}');
                out.push(c);
            }
            '[' => {
                closers.push(']');
                out.push(c);
            }
            '}' | ']' => {
                if !closers.contains(&c) {
                    continue; // a stray closer
                }
                drop_trailing_comma(&mut out);
                // Close whatever is still open inside (a missing `]` before `}`).
                while let Some(open) = closers.pop() {
                    drop_dangling_colon(&mut out);
                    out.push(open);
                    if open == c {
                        break;
                    }
                }
                if closers.is_empty() {
                    return out;
                }
            }
            ',' | ':' => out.push(c),
            '/' if matches!(chars.peek(), Some('/' | '*')) => skip_comment(&mut chars),
            c if c.is_whitespace() => out.push(c),
            _ => {
                let mut token = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || matches!(n, ',' | ':' | '{' | '}' | '[' | ']' | '"') {
                        break;
                    }
                    token.push(n);
                    chars.next();
                }
                push_bare(&token, &mut out);
            }
        }
    }
    drop_trailing_comma(&mut out);
    while let Some(open) = closers.pop() {
        drop_dangling_colon(&mut out);
        out.push(open);
    }
    out
}

/// A quoted string (either quote) written double-quoted, control characters escaped; an
/// unterminated string is closed.
fn read_string(
    quote: char,
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    out: &mut String,
) {
    out.push('"');
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\'') => out.push('\''),
                Some(n) if matches!(n, '"' | '\\' | '/' | 'b' | 'f' | 'n' | 'r' | 't' | 'u') => {
                    out.push('\\');
                    out.push(n);
                }
                // An escape JSON does not know: keep the character, drop the backslash.
                Some(n) => push_char(n, out),
                None => break,
            },
            c if c == quote => {
                out.push('"');
                return;
            }
            '"' => out.push_str("\\\""),
            c => push_char(c, out),
        }
    }
    out.push('"');
}

fn push_char(c: char, out: &mut String) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
        c => out.push(c),
    }
}

fn skip_comment(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    match chars.next() {
        Some('/') => {
            for c in chars.by_ref() {
                if c == '\n' {
                    break;
                }
            }
        }
        _ => {
            let mut star = false;
            for c in chars.by_ref() {
                if star && c == '/' {
                    break;
                }
                star = c == '*';
            }
        }
    }
}

/// A bare word: a number or literal as JSON has it, Python's literals translated, anything
/// else (an unquoted key or value) quoted.
fn push_bare(token: &str, out: &mut String) {
    match token {
        "true" | "True" => out.push_str("true"),
        "false" | "False" => out.push_str("false"),
        "null" | "None" | "undefined" | "NaN" => out.push_str("null"),
        t if is_number(t) => out.push_str(t),
        t => {
            out.push('"');
            for c in t.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\'' => {}
                    c => push_char(c, out),
                }
            }
            out.push('"');
        }
    }
}

fn is_number(t: &str) -> bool {
    t.starts_with(|c: char| c == '-' || c.is_ascii_digit())
        && matches!(
            serde_json::from_str::<serde_json::Value>(t),
            Ok(serde_json::Value::Number(_))
        )
}

fn drop_trailing_comma(out: &mut String) {
    let end = out.trim_end().len();
    if out[..end].ends_with(',') {
        out.truncate(end - 1);
    }
}

/// A key whose value never came gets `null`.
fn drop_dangling_colon(out: &mut String) {
    let end = out.trim_end().len();
    if out[..end].ends_with(':') {
        out.truncate(end);
        out.push_str("null");
    }
    drop_trailing_comma(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn fixed(s: &str) -> Value {
        serde_json::from_str(&repair(s).unwrap_or_else(|| panic!("not repaired: {s}"))).unwrap()
    }

    #[test]
    fn valid_json_comes_back_unchanged() {
        let s = "{\"a\": [1, 2.5, \"x\"], \"b\": null}";
        assert_eq!(repair(s).as_deref(), Some(s));
    }

    #[test]
    fn common_model_mistakes_are_repaired() {
        assert_eq!(fixed("{\"a\": 1,}"), json!({"a": 1}));
        assert_eq!(fixed("[1, 2, ]"), json!([1, 2]));
        assert_eq!(fixed("{'a': 'it\\'s \"x\"'}"), json!({"a": "it's \"x\""}));
        assert_eq!(
            fixed("{a: True, b: None, c: False}"),
            json!({"a": true, "b": null, "c": false})
        );
        assert_eq!(
            fixed("{\"path\": \"a.txt\", \"n\": [1, 2"),
            json!({"path": "a.txt", "n": [1, 2]})
        );
        assert_eq!(
            fixed("{\"text\": \"unterminated"),
            json!({"text": "unterminated"})
        );
        assert_eq!(fixed("{\"a\": {\"b\": 1}"), json!({"a": {"b": 1}}));
        assert_eq!(fixed("{\"a\":"), json!({"a": null}));
        assert_eq!(fixed("{\"a\": 1, "), json!({"a": 1}));
        assert_eq!(fixed("```json\n{\"a\": 1}\n```"), json!({"a": 1}));
        assert_eq!(
            fixed("Here you go: {\"a\": 1} hope it helps"),
            json!({"a": 1})
        );
        assert_eq!(
            fixed("{\"a\": \"line\nbreak\"}"),
            json!({"a": "line\nbreak"})
        );
        assert_eq!(
            fixed("{\"a\": 1 // one\n, /* two */ \"b\": 2}"),
            json!({"a": 1, "b": 2})
        );
        assert_eq!(
            fixed("{\"a\": [1, {\"b\": 2}}"),
            json!({"a": [1, {"b": 2}]})
        );
    }

    #[test]
    fn what_cannot_be_repaired_is_refused() {
        for s in ["", "plain prose", "{\"a\" \"b\"}", "{a b c}", "]"] {
            assert_eq!(repair(s), None, "{s}");
        }
    }
}
