//! Session id resolution: which conversation a request belongs to, from what the client named
//! (headers, body fields, Claude Code's `metadata.user_id`, Codex's headers, a frontend's own
//! field) or, failing that, a fingerprint of who sent it and how the conversation began.
//!
//! Gemini CLI (checked in `@google/gemini-cli-core` 0.61) names no session on the Gemini API
//! (only its Code Assist endpoint gets a `session_id`); it sends a per-install
//! `x-gemini-api-privileged-user-id` (with usage statistics on), which is not a conversation
//! but keeps two installs apart in the fingerprint, and any header set in
//! `GEMINI_CLI_CUSTOM_HEADERS` (so `x-session-id` works).

use http::{HeaderMap, HeaderValue};
use llm_proxy_api::model::{ChatRequest, Part, Role};
use ring::digest::{Context, SHA256};
use serde_json::Value;
use xxhash_rust::xxh3::Xxh3;

/// The longest client-named id kept as written; longer ones are hashed.
pub const MAX_ID_BYTES: usize = 256;

/// Hex digits kept of a hash (128 bits).
const HASH_HEX: usize = 32;

/// Where a session id came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionSource {
    /// The `x-session-id` header.
    Header,
    /// Body `session_id`, `extra_body.session_id` or `metadata.session_id`.
    Body,
    /// Claude Code's `metadata.user_id` (JSON with `session_id`, or `user_…_session_<id>`).
    ClaudeCodeUserId,
    /// Codex CLI's `session_id` / `conversation_id` (`session-id` / `thread-id` today) headers.
    CodexHeader,
    /// A field the client's own protocol names the conversation with (Responses
    /// `prompt_cache_key`), found by the frontend.
    FrontendHint,
    /// No id named: a hash of the client key, user agent and first user message.
    Fingerprint,
}

impl SessionSource {
    /// A short label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Header => "header",
            Self::Body => "body",
            Self::ClaudeCodeUserId => "claude_code_user_id",
            Self::CodexHeader => "codex_header",
            Self::FrontendHint => "frontend_hint",
            Self::Fingerprint => "fingerprint",
        }
    }
}

/// A resolved session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionId {
    /// The key the session store files the state under: namespaced by the client key's hash
    /// when the request carried one, so two clients never share a session by accident.
    pub key: String,
    /// The id as the client named it (hashed when it was too long or held control
    /// characters), or the fingerprint.
    pub id: String,
    /// Where it came from.
    pub source: SessionSource,
}

/// A stable label for an authenticated client key, derived from the key (a hash; the key
/// itself is never kept). Unlike the key's position in `auth.api_keys`, it stays with the
/// key when the list is edited, so a session kept across restarts (a shared store) never
/// moves to another client.
pub fn client_label_of_key(key: &str) -> String {
    hash_hex(&[b"llm-proxy client key", key.as_bytes()])
}

/// The session a request belongs to; first match wins: `x-session-id` header; body
/// `session_id`, `extra_body.session_id`, `metadata.session_id`; Claude Code's
/// `metadata.user_id`; Codex's `session_id` / `conversation_id` headers; the frontend's
/// `hint`; else a fingerprint. `client` is a stable label of the authenticated client key
/// (multi-user mode; see [`client_label_of_key`]): the store key is namespaced by its hash,
/// never by the key. `None` only when there is nothing to fingerprint (no user message).
pub fn resolve(
    headers: &HeaderMap,
    req: &ChatRequest,
    hint: Option<&str>,
    client: Option<&str>,
) -> Option<SessionId> {
    let found = Found::scan(headers);
    let (id, source) = match named(&found, req) {
        Some(found) => found,
        None => match hint.and_then(bounded) {
            Some(id) => (id, SessionSource::FrontendHint),
            None => (
                fingerprint(&found, req, client)?,
                SessionSource::Fingerprint,
            ),
        },
    };
    let key = match client {
        Some(c) => format!("k:{}/{id}", hash_hex(&[b"llm-proxy client", c.as_bytes()])),
        None => id.clone(),
    };
    Some(SessionId { key, id, source })
}

/// The headers resolution reads, found in one pass over the request's headers: a lookup by
/// name hashes the name, and there were six lookups against the handful of headers a request
/// carries. Each holds the name's first value, as `HeaderMap::get` would.
#[derive(Default)]
struct Found<'h> {
    session_id: Option<&'h HeaderValue>,
    /// Codex's, first match wins: `session_id`, `conversation_id` (older releases),
    /// `session-id`, `thread-id` (0.171).
    codex: [Option<&'h HeaderValue>; 4],
    user_agent: Option<&'h HeaderValue>,
    gemini_user: Option<&'h HeaderValue>,
}

impl<'h> Found<'h> {
    fn scan(headers: &'h HeaderMap) -> Self {
        let mut found = Found::default();
        for (name, value) in headers {
            let slot = match name.as_str() {
                "x-session-id" => &mut found.session_id,
                "session_id" => &mut found.codex[0],
                "conversation_id" => &mut found.codex[1],
                "session-id" => &mut found.codex[2],
                "thread-id" => &mut found.codex[3],
                "user-agent" => &mut found.user_agent,
                "x-gemini-api-privileged-user-id" => &mut found.gemini_user,
                _ => continue,
            };
            slot.get_or_insert(value);
        }
        found
    }
}

/// The id the client named, without the frontend hint or a fingerprint (what `[first]`
/// keyed on before sessions had a store).
fn named(found: &Found<'_>, req: &ChatRequest) -> Option<(String, SessionSource)> {
    if let Some(id) = found.session_id.and_then(header_id) {
        return Some((id, SessionSource::Header));
    }
    let body = [
        req.extra.get("session_id"),
        req.extra
            .get("extra_body")
            .and_then(|e| e.get("session_id")),
        req.metadata.get("session_id"),
    ];
    if let Some(id) = body.into_iter().flatten().find_map(string_id) {
        return Some((id, SessionSource::Body));
    }
    let user_id = req
        .user
        .as_deref()
        .and_then(claude_code_session)
        .or_else(|| match req.metadata.get("user_id") {
            Some(Value::String(s)) => claude_code_session(s),
            Some(Value::Object(o)) => o.get("session_id").and_then(string_id),
            _ => None,
        });
    if let Some(id) = user_id {
        return Some((id, SessionSource::ClaudeCodeUserId));
    }
    // Older Codex releases: `session_id` / `conversation_id`; 0.171 sends `session-id` and
    // `thread-id`.
    found
        .codex
        .iter()
        .find_map(|value| value.and_then(header_id))
        .map(|id| (id, SessionSource::CodexHeader))
}

/// The session id inside Claude Code's `metadata.user_id`: a JSON object with `session_id`
/// (current versions) or `user_<hash>_account_<uuid>_session_<uuid>` (older ones).
fn claude_code_session(user_id: &str) -> Option<String> {
    let trimmed = user_id.trim();
    if trimmed.starts_with('{') {
        let parsed: Value = serde_json::from_str(trimmed).ok()?;
        return parsed.get("session_id").and_then(string_id);
    }
    let (_, session) = trimmed.rsplit_once("_session_")?;
    bounded(session)
}

/// A header's value as an id.
fn header_id(value: &HeaderValue) -> Option<String> {
    value.to_str().ok().and_then(bounded)
}

fn string_id(v: &Value) -> Option<String> {
    v.as_str().and_then(bounded)
}

/// A client-named id as kept: trimmed, empty is none, and one too long or holding control
/// characters is hashed so it is never stored raw.
fn bounded(raw: &str) -> Option<String> {
    let id = raw.trim();
    if id.is_empty() {
        None
    } else if id.len() > MAX_ID_BYTES || id.chars().any(char::is_control) {
        Some(format!(
            "h:{}",
            hash_hex(&[b"llm-proxy session id", id.as_bytes()])
        ))
    } else {
        Some(id.to_owned())
    }
}

/// A hash of the client key, the user agent's product name, Gemini CLI's install id and
/// the first user message: stable across the turns of one conversation (history only grows
/// after it) and different for another client.
fn fingerprint(found: &Found<'_>, req: &ChatRequest, client: Option<&str>) -> Option<String> {
    // What the user typed first: context an agent injects (Claude Code's `<system-reminder>`,
    // Codex's `<environment_context>`, Gemini CLI's `<session_context>` with the date and the
    // directory tree) changes when a conversation is resumed, so it is left out.
    let typed = |p: &&Part| !matches!(p, Part::Text(t) if crate::commands::is_wrapper(&t.text));
    let first = req
        .messages
        .iter()
        .filter(|m| m.role == Role::User)
        .find(|m| m.content.iter().any(|p| typed(&p)))?;
    // XXH3-128, not SHA-256: the fingerprint never leaves the proxy and names a session only
    // within one client's namespace (multi-user keys are prefixed by the client's hash), so
    // it needs spread and stability (XXH3 is a fixed algorithm), not collision resistance
    // against an adversary; SHA-256 was a third of the session stage's instructions.
    let mut hasher = Xxh3::new();
    let field = |hasher: &mut Xxh3, bytes: &[u8]| {
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    field(&mut hasher, b"llm-proxy session fingerprint");
    field(&mut hasher, client.unwrap_or("").as_bytes());
    field(&mut hasher, user_agent_product(found.user_agent).as_bytes());
    field(
        &mut hasher,
        found.gemini_user.map_or(&[][..], HeaderValue::as_bytes),
    );
    for part in first.content.iter().filter(typed) {
        match part {
            Part::Text(t) => field(&mut hasher, t.text.as_bytes()),
            // Not text: its serialized form (self-delimiting JSON), as stable across turns as
            // text, streamed into the hash so an inline image is not copied.
            other => {
                field(&mut hasher, b"part");
                let _ = serde_json::to_writer(DigestWriter(&mut hasher), other);
            }
        }
    }
    Some(format!("fp:{}", hex(&hasher.digest128().to_be_bytes())))
}

/// Feeds what is written into a digest.
struct DigestWriter<'a>(&'a mut Xxh3);

impl std::io::Write for DigestWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The user agent's first product name (`claude-cli` of `claude-cli/2.0.1 (external)`):
/// versions and Gemini CLI's model (`GeminiCLI/0.9/gemini-2.5-pro`) change within one
/// conversation.
fn user_agent_product(user_agent: Option<&HeaderValue>) -> &str {
    user_agent
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split(['/', ' ']).next())
        .unwrap_or("")
}

fn hash_hex(fields: &[&[u8]]) -> String {
    let mut ctx = Context::new(&SHA256);
    for f in fields {
        ctx.update(&(f.len() as u64).to_le_bytes());
        ctx.update(f);
    }
    hex(ctx.finish().as_ref())
}

/// Lower-case hex of the first `HASH_HEX / 2` bytes (by table: `write!` per byte showed up
/// in the request path's profile).
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(HASH_HEX);
    for &b in bytes.iter().take(HASH_HEX / 2) {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lower_case_and_bounded() {
        assert_eq!(hex(&[0x00, 0xab, 0x0f, 0xf0]), "00ab0ff0");
        assert_eq!(hex(&[0xff; 64]).len(), HASH_HEX);
    }
    use llm_proxy_api::model::Message;
    use serde_json::json;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn conversation(turns: &[(Role, &str)]) -> ChatRequest {
        ChatRequest {
            messages: turns.iter().map(|(r, t)| Message::text(*r, *t)).collect(),
            ..ChatRequest::default()
        }
    }

    fn resolved(h: &HeaderMap, req: &ChatRequest) -> SessionId {
        resolve(h, req, None, None).unwrap()
    }

    #[test]
    fn claude_code_json_user_id_names_the_session() {
        let req = ChatRequest {
            user: Some(
                json!({"device_id": "d1", "account_uuid": "a1", "session_id": "5f0c-uuid"})
                    .to_string(),
            ),
            ..conversation(&[(Role::User, "hi")])
        };
        let s = resolved(&HeaderMap::new(), &req);
        assert_eq!(s.id, "5f0c-uuid");
        assert_eq!(s.key, "5f0c-uuid");
        assert_eq!(s.source, SessionSource::ClaudeCodeUserId);
    }

    #[test]
    fn claude_code_older_user_id_names_the_session() {
        let req = ChatRequest {
            user: Some("user_ab12cd_account_1111-2222_session_3333-4444".into()),
            ..conversation(&[(Role::User, "hi")])
        };
        let s = resolved(&HeaderMap::new(), &req);
        assert_eq!(s.id, "3333-4444");
        assert_eq!(s.source, SessionSource::ClaudeCodeUserId);
        // A plain end-user id names no session.
        let req = ChatRequest {
            user: Some("alice".into()),
            ..conversation(&[(Role::User, "hi")])
        };
        assert_eq!(
            resolved(&HeaderMap::new(), &req).source,
            SessionSource::Fingerprint
        );
    }

    #[test]
    fn the_header_wins_then_body_then_user_id_then_codex_headers() {
        let mut req = conversation(&[(Role::User, "hi")]);
        req.user = Some("user_x_account_y_session_from-user-id".into());
        req.metadata
            .insert("session_id".into(), json!("from-metadata"));
        req.extra.insert(
            "extra_body".into(),
            json!({"session_id": "from-extra-body"}),
        );
        req.extra.insert("session_id".into(), json!("from-body"));
        let all = headers(&[
            ("x-session-id", "from-header"),
            ("session_id", "from-codex"),
            ("conversation_id", "from-codex-conv"),
        ]);
        let s = resolve(&all, &req, Some("hint"), None).unwrap();
        assert_eq!(
            (s.id.as_str(), s.source),
            ("from-header", SessionSource::Header)
        );

        let codex = headers(&[("session_id", "from-codex")]);
        let s = resolve(&codex, &req, Some("hint"), None).unwrap();
        assert_eq!(
            (s.id.as_str(), s.source),
            ("from-body", SessionSource::Body)
        );
        req.extra.remove("session_id");
        assert_eq!(resolved(&codex, &req).id, "from-extra-body");
        req.extra.remove("extra_body");
        assert_eq!(resolved(&codex, &req).id, "from-metadata");
        req.metadata.remove("session_id");
        assert_eq!(resolved(&codex, &req).id, "from-user-id");
        req.user = None;
        let s = resolve(&codex, &req, Some("hint"), None).unwrap();
        assert_eq!(
            (s.id.as_str(), s.source),
            ("from-codex", SessionSource::CodexHeader)
        );
        let conv = headers(&[("conversation_id", "from-codex-conv")]);
        assert_eq!(resolved(&conv, &req).id, "from-codex-conv");
        let current = headers(&[("thread-id", "t-171"), ("session-id", "s-171")]);
        let s = resolve(&current, &req, None, None).unwrap();
        assert_eq!(
            (s.id.as_str(), s.source),
            ("s-171", SessionSource::CodexHeader)
        );
        let s = resolve(&HeaderMap::new(), &req, Some("hint"), None).unwrap();
        assert_eq!(
            (s.id.as_str(), s.source),
            ("hint", SessionSource::FrontendHint)
        );
    }

    #[test]
    fn blank_ids_are_skipped() {
        let mut req = conversation(&[(Role::User, "hi")]);
        req.extra.insert("session_id".into(), json!("  "));
        let h = headers(&[("x-session-id", " "), ("session_id", "codex")]);
        assert_eq!(resolved(&h, &req).id, "codex");
    }

    #[test]
    fn the_fingerprint_is_stable_across_turns_of_one_conversation() {
        let h = headers(&[("user-agent", "claude-cli/2.0.1 (external, cli)")]);
        let first = resolved(&h, &conversation(&[(Role::User, "fix the bug")]));
        let later = conversation(&[
            (Role::System, "be brief"),
            (Role::User, "fix the bug"),
            (Role::Assistant, "done"),
            (Role::User, "now the tests"),
        ]);
        let newer_client = headers(&[("user-agent", "claude-cli/2.0.2 (external, cli)")]);
        let again = resolved(&newer_client, &later);
        assert_eq!(first.source, SessionSource::Fingerprint);
        assert!(first.id.starts_with("fp:"));
        assert_eq!(first, again);
        let other = resolved(&h, &conversation(&[(Role::User, "write docs")]));
        assert_ne!(first.id, other.id, "another conversation");
        let other_agent = headers(&[("user-agent", "opencode/1.0")]);
        assert_ne!(
            first.id,
            resolved(&other_agent, &conversation(&[(Role::User, "fix the bug")])).id
        );
    }

    /// Gemini CLI names no session and rebuilds the `<session_context>` part of its first
    /// message (date, directory tree) when a conversation is resumed with `--resume`.
    #[test]
    fn the_fingerprint_skips_context_the_agent_rebuilds_on_resume() {
        let h = headers(&[(
            "user-agent",
            "GeminiCLI/0.61.0/gemini-2.5-flash (linux; x64)",
        )]);
        let first_message = |tree: &str| {
            let mut m = Message::text(
                Role::User,
                format!("<session_context>\nDirectory Structure:\n{tree}\n</session_context>"),
            );
            m.content
                .push(Part::Text(llm_proxy_api::model::TextPart::new(
                    "fix the bug",
                )));
            m
        };
        let run1 = ChatRequest {
            messages: vec![first_message("/p/\n└───a.rs")],
            ..ChatRequest::default()
        };
        let resumed = ChatRequest {
            messages: vec![
                first_message("/p/\n├───a.rs\n└───b.rs"),
                Message::text(Role::Assistant, "done"),
                Message::text(Role::User, "now the tests"),
            ],
            ..ChatRequest::default()
        };
        assert_eq!(resolved(&h, &run1), resolved(&h, &resumed));
        // Codex-style: a context-only user message before the typed one.
        let codex = |ctx: &str| conversation(&[(Role::User, ctx), (Role::User, "fix the bug")]);
        assert_eq!(
            resolved(
                &h,
                &codex("<environment_context>\n  <cwd>/a</cwd>\n</environment_context>")
            ),
            resolved(
                &h,
                &codex("<environment_context>\n  <cwd>/b</cwd>\n</environment_context>")
            )
        );
        let other = ChatRequest {
            messages: vec![Message::text(Role::User, "write docs")],
            ..ChatRequest::default()
        };
        assert_ne!(resolved(&h, &run1), resolved(&h, &other));
    }

    #[test]
    fn client_keys_keep_sessions_apart() {
        let req = conversation(&[(Role::User, "fix the bug")]);
        let (a, b) = (client_label_of_key("key-a"), client_label_of_key("key-b"));
        let h = HeaderMap::new();
        let sa = resolve(&h, &req, None, Some(&a)).unwrap();
        let sb = resolve(&h, &req, None, Some(&b)).unwrap();
        assert_ne!(sa.id, sb.id, "the fingerprint includes the client");
        assert_ne!(sa.key, sb.key);
        // A named id is namespaced too, by a hash of the client's label.
        let named = headers(&[("x-session-id", "s1")]);
        let na = resolve(&named, &req, None, Some(&a)).unwrap();
        let nb = resolve(&named, &req, None, Some(&b)).unwrap();
        assert_eq!(na.id, "s1");
        assert_ne!(na.key, nb.key);
        assert!(
            na.key.starts_with("k:") && na.key.ends_with("/s1"),
            "{}",
            na.key
        );
        assert!(!na.key.contains(&a));
        assert_eq!(resolve(&named, &req, None, None).unwrap().key, "s1");
        // Any stable label works (e.g. `client-0`).
        let n0 = resolve(&named, &req, None, Some("client-0")).unwrap();
        let n1 = resolve(&named, &req, None, Some("client-1")).unwrap();
        assert_ne!(n0.key, n1.key);
    }

    #[test]
    fn a_client_label_is_a_stable_hash_never_the_key() {
        let a = client_label_of_key("sk-secret-key-a");
        assert_eq!(a, client_label_of_key("sk-secret-key-a"));
        assert_ne!(a, client_label_of_key("sk-secret-key-b"));
        assert_eq!(a.len(), HASH_HEX);
        assert!(!a.contains("secret"));
    }

    #[test]
    fn gemini_cli_installs_get_different_fingerprints() {
        let req = conversation(&[(Role::User, "hello")]);
        let one = headers(&[
            ("user-agent", "GeminiCLI/0.9.0/gemini-2.5-pro (linux; x64)"),
            ("x-gemini-api-privileged-user-id", "install-1"),
        ]);
        let two = headers(&[
            (
                "user-agent",
                "GeminiCLI/0.9.0/gemini-2.5-flash (linux; x64)",
            ),
            ("x-gemini-api-privileged-user-id", "install-2"),
        ]);
        let same_install_other_model = headers(&[
            (
                "user-agent",
                "GeminiCLI/0.9.0/gemini-2.5-flash (linux; x64)",
            ),
            ("x-gemini-api-privileged-user-id", "install-1"),
        ]);
        assert_ne!(resolved(&one, &req).id, resolved(&two, &req).id);
        assert_eq!(
            resolved(&one, &req).id,
            resolved(&same_install_other_model, &req).id
        );
    }

    #[test]
    fn long_or_control_ids_are_hashed_never_kept_raw() {
        let long = "x".repeat(MAX_ID_BYTES + 1);
        let req = conversation(&[(Role::User, "hi")]);
        let s = resolved(&headers(&[("x-session-id", &long)]), &req);
        assert!(s.id.starts_with("h:") && s.id.len() == 2 + HASH_HEX);
        assert!(!s.key.contains(&long));
        let mut req = req;
        req.extra.insert("session_id".into(), json!("a\nb"));
        let s = resolved(&HeaderMap::new(), &req);
        assert!(s.id.starts_with("h:"), "{}", s.id);
        let exact = "y".repeat(MAX_ID_BYTES);
        assert_eq!(
            resolved(&headers(&[("x-session-id", &exact)]), &req).id,
            exact
        );
    }

    #[test]
    fn a_message_without_text_is_fingerprinted_by_its_content() {
        use llm_proxy_api::model::{ImagePart, MediaSource};
        let image = |data: &str| ChatRequest {
            messages: vec![Message {
                role: Role::User,
                content: vec![Part::Image(ImagePart {
                    source: MediaSource::Base64 {
                        media_type: "image/png".into(),
                        data: data.into(),
                    },
                    detail: None,
                    cache_control: None,
                    document: None,
                })],
                name: None,
            }],
            ..ChatRequest::default()
        };
        let h = HeaderMap::new();
        assert_eq!(resolved(&h, &image("AAAA")), resolved(&h, &image("AAAA")));
        assert_ne!(
            resolved(&h, &image("AAAA")).id,
            resolved(&h, &image("BBBB")).id
        );
    }

    #[test]
    fn no_user_message_means_no_fingerprint() {
        let req = conversation(&[(Role::System, "sys")]);
        assert_eq!(resolve(&HeaderMap::new(), &req, None, None), None);
    }
}
