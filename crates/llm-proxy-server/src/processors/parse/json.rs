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

/// An incremental check that text fed so far is the start of a valid JSON object or array,
/// so well-formed arguments can stream on while they arrive and only broken ones are held.
#[derive(Debug, Clone)]
pub struct JsonPrefix {
    closers: Vec<u8>,
    state: PrefixState,
    ok: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PrefixState {
    /// Before the top-level `{` or `[`.
    Top,
    Value,
    /// Right after `[`: a value or `]`.
    FirstValueOrEnd,
    /// Right after `{`: a key or `}`.
    KeyOrEnd,
    Key,
    Colon,
    AfterValue,
    Str {
        key: bool,
        escape: bool,
        hex: u8,
    },
    Literal {
        rest: &'static [u8],
    },
    Number,
    Done,
}

impl Default for JsonPrefix {
    fn default() -> Self {
        Self {
            closers: Vec::new(),
            state: PrefixState::Top,
            ok: true,
        }
    }
}

impl JsonPrefix {
    /// Feeds `text`; whether everything fed so far is still a valid prefix.
    pub fn feed(&mut self, text: &str) -> bool {
        for &b in text.as_bytes() {
            if !self.ok {
                break;
            }
            self.ok = self.byte(b);
        }
        self.ok
    }

    /// Whether a whole value has been fed (trailing whitespace allowed).
    pub fn is_complete(&self) -> bool {
        self.ok && self.state == PrefixState::Done
    }

    fn close(&mut self, b: u8) -> bool {
        if self.closers.pop() != Some(b) {
            return false;
        }
        self.state = if self.closers.is_empty() {
            PrefixState::Done
        } else {
            PrefixState::AfterValue
        };
        true
    }

    fn value(&mut self, b: u8) -> bool {
        use PrefixState as S;
        self.state = match b {
            b'{' => {
                self.closers.push(b'}');
                S::KeyOrEnd
            }
            b'[' => {
                self.closers.push(b']');
                S::FirstValueOrEnd
            }
            b'"' => S::Str {
                key: false,
                escape: false,
                hex: 0,
            },
            b't' => S::Literal { rest: b"rue" },
            b'f' => S::Literal { rest: b"alse" },
            b'n' => S::Literal { rest: b"ull" },
            b'-' | b'0'..=b'9' => S::Number,
            _ => return false,
        };
        true
    }

    fn byte(&mut self, b: u8) -> bool {
        use PrefixState as S;
        let ws = matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        match self.state {
            S::Top
            | S::Value
            | S::KeyOrEnd
            | S::Key
            | S::Colon
            | S::AfterValue
            | S::Done
            | S::FirstValueOrEnd
                if ws =>
            {
                true
            }
            S::Top => matches!(b, b'{' | b'[') && self.value(b),
            S::Value => self.value(b),
            S::FirstValueOrEnd => {
                if b == b']' {
                    self.close(b)
                } else {
                    self.value(b)
                }
            }
            S::KeyOrEnd | S::Key => match b {
                b'}' if self.state == S::KeyOrEnd => self.close(b),
                b'"' => {
                    self.state = S::Str {
                        key: true,
                        escape: false,
                        hex: 0,
                    };
                    true
                }
                _ => false,
            },
            S::Colon => {
                self.state = S::Value;
                b == b':'
            }
            S::AfterValue => match b {
                b',' => {
                    self.state = if self.closers.last() == Some(&b'}') {
                        S::Key
                    } else {
                        S::Value
                    };
                    true
                }
                b'}' | b']' => self.close(b),
                _ => false,
            },
            S::Str { key, escape, hex } => {
                if hex > 0 {
                    self.state = S::Str {
                        key,
                        escape: false,
                        hex: hex - 1,
                    };
                    return b.is_ascii_hexdigit();
                }
                if escape {
                    self.state = S::Str {
                        key,
                        escape: false,
                        hex: if b == b'u' { 4 } else { 0 },
                    };
                    return matches!(
                        b,
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' | b'u'
                    );
                }
                match b {
                    b'"' => {
                        self.state = if key { S::Colon } else { S::AfterValue };
                        true
                    }
                    b'\\' => {
                        self.state = S::Str {
                            key,
                            escape: true,
                            hex: 0,
                        };
                        true
                    }
                    b if b < 0x20 => false,
                    _ => true,
                }
            }
            S::Literal { rest } => match rest.split_first() {
                Some((&want, more)) if want == b => {
                    self.state = if more.is_empty() {
                        S::AfterValue
                    } else {
                        S::Literal { rest: more }
                    };
                    true
                }
                _ => false,
            },
            S::Number => {
                if matches!(b, b'0'..=b'9' | b'+' | b'-' | b'.' | b'e' | b'E') {
                    true
                } else {
                    self.state = S::AfterValue;
                    self.byte(b)
                }
            }
            S::Done => false,
        }
    }
}

/// How much of `text` (a valid JSON prefix) can go on now: all but trailing whitespace and a
/// trailing comma, which a repair may still remove.
pub fn safe_prefix_len(text: &str) -> usize {
    let t = text.trim_end();
    let t = t.strip_suffix(',').unwrap_or(t).trim_end();
    t.len()
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

    #[test]
    fn prefix_check_follows_strict_json() {
        for ok in [
            "{",
            "{\"a\": [1, -2.5e3, true, null, \"x\\u00e9\"]",
            "[]",
            " {\"a\": {}}  ",
        ] {
            assert!(JsonPrefix::default().feed(ok), "{ok}");
        }
        for bad in [
            "{'a'",
            "{\"a\": 1,}",
            "{a: 1}",
            "```",
            "\"str\"",
            "{\"a\": True}",
            "{\"a\" 1}",
            "{} x",
        ] {
            assert!(!JsonPrefix::default().feed(bad), "{bad}");
        }
        let mut p = JsonPrefix::default();
        assert!(p.feed("{\"a\":") && !p.is_complete());
        assert!(p.feed(" 1}") && p.is_complete());
        assert_eq!(safe_prefix_len("{\"a\": 1, "), "{\"a\": 1".len());
    }
}
