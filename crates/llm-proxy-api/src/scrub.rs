//! Credential scrubbing: one [`Scrubber`], built once at startup from every configured secret
//! (an Aho-Corasick automaton) plus key-shaped patterns (one regex compiled once per process),
//! masks text that came from an upstream before it reaches a client, a log line or a capture.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, LazyLock};

use aho_corasick::{AhoCorasick, MatchKind};
use regex::bytes::{Captures, Regex};
use serde_json::Value;

use crate::config::{BackendInstanceConfig, mask_secret};
use crate::error::BackendError;

/// Shorter configured values are not searched for: they would mangle ordinary text (`true`,
/// `json`) and are no real credentials.
pub const MIN_SECRET_LEN: usize = 8;

/// Query parameters whose values are credentials.
pub const SECRET_QUERY_PARAMS: [&str; 5] = ["key", "api_key", "apikey", "token", "access_token"];

/// Key-shaped strings, whoever they belong to. Named groups mark the part to mask when only
/// part of a match is the secret (the token after `Bearer`, a query value, a URL password).
const SHAPES: &str = r#"(?x)
    (?-u:\b)sk-(?:ant-|or-|proj-)?[A-Za-z0-9_\-]{16,}
  | (?-u:\b)AIza[0-9A-Za-z_\-]{20,}
  | (?-u:\b)(?i:bearer)\s+(?P<bearer>[A-Za-z0-9._~+/\-]{8,}=*)
  | [?&](?i:key|api_key|apikey|token|access_token)=(?P<query>[^&\s"'<>\\]+)
  | [A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@"'<>]+:(?P<password>[^/\s@"'<>]+)@
"#;

static SHAPE_REGEX: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(SHAPES).ok());

/// Masks configured secrets and key-shaped strings. Cheap to clone (shared automaton).
#[derive(Clone, Default)]
pub struct Scrubber {
    exact: Option<Arc<Exact>>,
}

struct Exact {
    automaton: AhoCorasick,
    /// The masked form of each pattern, by pattern index.
    masks: Vec<String>,
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrubber")
            .field("secrets", &self.exact.as_ref().map_or(0, |e| e.masks.len()))
            .finish()
    }
}

impl Scrubber {
    /// A scrubber for `secrets` (blank and short values ignored, duplicates merged) and the
    /// key shapes. `Scrubber::default()` knows only the shapes.
    pub fn new<I, S>(secrets: I) -> Result<Self, BackendError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut values: Vec<String> = secrets
            .into_iter()
            .map(|s| s.as_ref().trim().to_owned())
            .filter(|s| s.len() >= MIN_SECRET_LEN)
            .collect();
        values.sort();
        values.dedup();
        if values.is_empty() {
            return Ok(Self::default());
        }
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&values)
            .map_err(|e| BackendError::config(format!("cannot build the secret scrubber: {e}")))?;
        let masks = values.iter().map(|v| mask_secret(v)).collect();
        Ok(Self {
            exact: Some(Arc::new(Exact { automaton, masks })),
        })
    }

    /// `text` with every secret masked (borrowed when there was none).
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match self.scrub_bytes(text.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            // Masks are UTF-8 and replace whole UTF-8 matches, so this stays valid.
            Cow::Owned(bytes) => Cow::Owned(
                String::from_utf8(bytes)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
            ),
        }
    }

    /// Scrubs `text` in place.
    pub fn scrub_in_place(&self, text: &mut String) {
        if let Cow::Owned(clean) = self.scrub(text) {
            *text = clean;
        }
    }

    /// `data` with every secret masked (borrowed when there was none).
    pub fn scrub_bytes<'a>(&self, data: &'a [u8]) -> Cow<'a, [u8]> {
        let exact = match &self.exact {
            Some(exact) if exact.automaton.is_match(data) => {
                let mut out = Vec::with_capacity(data.len());
                exact
                    .automaton
                    .replace_all_with_bytes(data, &mut out, |m, _, out| {
                        out.extend_from_slice(exact.masks[m.pattern().as_usize()].as_bytes());
                        true
                    });
                Cow::Owned(out)
            }
            _ => Cow::Borrowed(data),
        };
        match mask_shapes(&exact) {
            Some(masked) => Cow::Owned(masked),
            None => exact,
        }
    }

    /// The error with its message, code and parameter scrubbed.
    #[must_use]
    pub fn scrub_error(&self, mut error: BackendError) -> BackendError {
        self.scrub_in_place(&mut error.message);
        if let Some(code) = &mut error.code {
            self.scrub_in_place(code);
        }
        if let Some(param) = &mut error.param {
            self.scrub_in_place(param);
        }
        error
    }
}

/// `data` with key-shaped strings masked, or `None` when it has none.
fn mask_shapes(data: &[u8]) -> Option<Vec<u8>> {
    let regex = SHAPE_REGEX.as_ref()?;
    let mut out: Option<Vec<u8>> = None;
    let mut last = 0;
    for caps in regex.captures_iter(data) {
        let Some(span) = secret_span(&caps) else {
            continue;
        };
        let buf = out.get_or_insert_with(|| Vec::with_capacity(data.len()));
        buf.extend_from_slice(data.get(last..span.start()).unwrap_or_default());
        buf.extend_from_slice(mask_secret(&String::from_utf8_lossy(span.as_bytes())).as_bytes());
        last = span.end();
    }
    let mut out = out?;
    out.extend_from_slice(data.get(last..).unwrap_or_default());
    Some(out)
}

/// The part of a shape match that is the secret; `None` for a `Bearer` followed by a plain
/// lowercase word (`Bearer authentication`), which is prose, not a token.
fn secret_span<'h>(caps: &Captures<'h>) -> Option<regex::bytes::Match<'h>> {
    if let Some(token) = caps.name("bearer") {
        return (!token.as_bytes().iter().all(u8::is_ascii_lowercase)).then_some(token);
    }
    caps.name("query")
        .or_else(|| caps.name("password"))
        .or_else(|| caps.get(0))
}

/// Every secret value one backend instance holds: its API key, every `extra.headers` value,
/// `extra` settings named like a credential, and credentials inside `api_url` (user info,
/// secret query values). The gateway builds its [`Scrubber`] from these for every instance
/// plus its client keys.
pub fn instance_secrets(instance: &BackendInstanceConfig) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    out.extend(instance.api_key.as_ref().map(|k| k.expose().to_owned()));
    if let Some(url) = &instance.api_url {
        out.extend(url_credentials(url));
    }
    for (name, value) in &instance.extra {
        if is_secret_extra_setting(name) {
            collect_strings(value, &mut out);
        }
    }
    out
}

/// Whether a `backends.*.extra` setting holds secrets: `headers` (every value) and settings
/// named like a credential (`*key*`, `*token*`, `*secret*`, `*password*`, `*credential*`).
pub fn is_secret_extra_setting(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "headers"
        || ["key", "token", "secret", "password", "credential"]
            .iter()
            .any(|w| n.contains(w))
}

/// `extra` with every header value and every credential-named setting masked (the values the
/// scrubber treats as secrets), for showing a configuration.
pub fn masked_extra(extra: &serde_json::Map<String, Value>) -> Value {
    fn mask_all(value: &Value) -> Value {
        match value {
            Value::String(s) => Value::String(mask_secret(s)),
            Value::Array(items) => Value::Array(items.iter().map(mask_all).collect()),
            Value::Object(map) => {
                Value::Object(map.iter().map(|(k, v)| (k.clone(), mask_all(v))).collect())
            }
            other => other.clone(),
        }
    }
    Value::Object(
        extra
            .iter()
            .map(|(k, v)| {
                let shown = if is_secret_extra_setting(k) {
                    mask_all(v)
                } else {
                    v.clone()
                };
                (k.clone(), shown)
            })
            .collect(),
    )
}

fn collect_strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

/// Credentials inside a URL: the user name and password of `user:pass@`, and the values of
/// secret query parameters (`key`, `api_key`, `token`, ...).
pub fn url_credentials(url: &str) -> Vec<String> {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for part in [Some(parsed.username()), parsed.password()]
        .into_iter()
        .flatten()
    {
        if !part.is_empty() {
            // Both spellings: as written in the URL and decoded.
            out.push(part.to_owned());
            if let Ok(decoded) = percent_decode(part) {
                out.push(decoded);
            }
        }
    }
    for (name, value) in parsed.query_pairs() {
        if is_secret_query_param(&name) && !value.is_empty() {
            out.push(value.into_owned());
        }
    }
    out
}

/// Whether a query parameter carries a credential.
pub fn is_secret_query_param(name: &str) -> bool {
    SECRET_QUERY_PARAMS
        .iter()
        .any(|p| p.eq_ignore_ascii_case(name))
}

fn percent_decode(text: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
}

/// `url` with user info and secret query values masked, for showing a configured URL.
/// Unparseable text is returned with key shapes masked.
pub fn mask_url_credentials(url: &str) -> String {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return Scrubber::default().scrub(url).into_owned();
    };
    if !parsed.username().is_empty() {
        let _ = parsed.set_username("****");
    }
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("****"));
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_query_param(&k) {
                    "****".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

#[cfg(test)]
mod tests {
    use crate::config::{BackendInstanceConfig, Secret};

    use super::*;

    #[test]
    fn the_shape_regex_compiles() {
        assert!(SHAPE_REGEX.is_some());
    }

    #[test]
    fn configured_secrets_are_masked_longest_first() {
        let s =
            Scrubber::new(["plain-secret-value", "plain-secret-value-longer", "", "abc"]).unwrap();
        assert_eq!(
            s.scrub("a plain-secret-value-longer and plain-secret-value; abc"),
            "a plai… and ****; abc"
        );
        assert!(matches!(s.scrub("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn key_shapes_are_masked_without_configuration() {
        let s = Scrubber::default();
        for (text, leaked) in [
            ("key sk-abcdefghijklmnopqrstuvwx", "abcdefghij"),
            ("key sk-ant-api03-abcdefghijklmnopqrstu", "abcdefghij"),
            ("key sk-or-v1-0123456789abcdef0123", "0123456789"),
            ("key AIzaSyA0123456789abcdefghijklmnop", "0123456789"),
            ("failed for key Bearer tok_0123456789", "0123456789"),
            ("GET /v1?alt=sse&key=abc123secret", "abc123secret"),
            ("https://user:hunter2pass@host/v1", "hunter2pass"),
        ] {
            let out = s.scrub(text);
            assert!(!out.contains(leaked), "{text} -> {out}");
        }
        assert!(
            s.scrub("GET /v1?alt=sse&key=abc123secret")
                .contains("alt=sse&key=****")
        );
        assert_eq!(
            s.scrub("Bearer authentication failed"),
            "Bearer authentication failed"
        );
        assert_eq!(s.scrub("max_tokens=5&task-list"), "max_tokens=5&task-list");
    }

    #[test]
    fn errors_are_scrubbed_in_every_text_field() {
        let s = Scrubber::new(["configured-secret-1"]).unwrap();
        let e = BackendError::from_upstream_status(401, "bad key configured-secret-1")
            .with_code("configured-secret-1")
            .with_param("Bearer configured-secret-1");
        let e = s.scrub_error(e);
        let all = format!("{} {:?} {:?}", e.message, e.code, e.param);
        assert!(!all.contains("configured-secret-1"), "{all}");
        assert_eq!(e.kind, crate::ErrorKind::Authentication, "fields kept");
    }

    #[test]
    fn every_secret_of_an_instance_is_collected() {
        let mut a = BackendInstanceConfig::new("openai", "openai");
        a.api_key = Some(Secret::new("sk-from-config-000"));
        a.api_url = Some("https://bob:p%40ssword-9@h.test/v1?key=url-query-key-1&alt=sse".into());
        a.extra = serde_json::json!({
            "headers": {"X-Custom-Auth": "header-secret-1"},
            "refresh_token": "plugin-token-1",
            "title": "not-secret-title"
        })
        .as_object()
        .cloned()
        .unwrap();
        let secrets = instance_secrets(&a);
        for expected in [
            "sk-from-config-000",
            "bob",
            "p%40ssword-9",
            "p@ssword-9",
            "url-query-key-1",
            "header-secret-1",
            "plugin-token-1",
        ] {
            assert!(secrets.iter().any(|s| s == expected), "{expected}");
        }
        assert!(!secrets.iter().any(|s| s == "not-secret-title"));
        assert!(!secrets.iter().any(|s| s == "sse"));
    }

    #[test]
    fn url_credentials_are_masked_for_display() {
        let shown = mask_url_credentials("https://bob:pw-secret@h.test/v1?key=k-secret&alt=sse");
        assert!(!shown.contains("pw-secret"), "{shown}");
        assert!(!shown.contains("k-secret"), "{shown}");
        assert!(!shown.contains("bob"), "{shown}");
        assert!(shown.contains("alt=sse"), "{shown}");
        assert_eq!(
            mask_url_credentials("https://api.test/v1"),
            "https://api.test/v1"
        );
    }
}
