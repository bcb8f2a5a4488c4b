//! `!/block-tools(…)`, `!/allow-tools(…)`, `!/tool-access`: the session's own tool access
//! lists (names with `*` / `?` wildcards), applied by the tool access stage and processor on
//! top of the configured policies (see [`crate::tool_access`] for the order).

use super::{Invocation, normalise};
use crate::commands::CommandEnv;
use crate::session::SessionState;

/// Most names a session list holds.
const MAX_NAMES: usize = 64;
/// Longest name pattern.
const MAX_NAME_LEN: usize = 128;

/// The names given, checked: tool names with wildcards only.
fn names(inv: &Invocation<'_>) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for arg in inv.args {
        if let Some(key) = &arg.key {
            return Err(format!(
                "Give tool names only (e.g. bash, web_*), not '{key}={}'.",
                arg.value
            ));
        }
        let name = arg.value.trim();
        if name.is_empty() {
            continue;
        }
        if name.len() > MAX_NAME_LEN
            || !name.chars().all(|c| {
                c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/' | '*' | '?')
            })
        {
            return Err(format!("'{name}' is not a tool name."));
        }
        out.push(name.to_owned());
    }
    if out.is_empty() {
        return Err(format!(
            "Name the tools, e.g. {}block-tools(bash, web_*).",
            inv.prefix
        ));
    }
    Ok(out)
}

/// Adds `new` to `list` (once each, case-insensitively) and removes them from `other`.
fn add(list: &mut Vec<String>, other: &mut Vec<String>, new: Vec<String>) -> Result<(), String> {
    for name in new {
        other.retain(|n| !n.eq_ignore_ascii_case(&name));
        if !list.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
            list.push(name);
        }
    }
    if list.len() > MAX_NAMES {
        return Err(format!("At most {MAX_NAMES} tool names per list."));
    }
    Ok(())
}

fn describe(session: &SessionState) -> String {
    let show = |l: &[String]| {
        if l.is_empty() {
            "none".to_owned()
        } else {
            l.join(", ")
        }
    };
    format!(
        "Tools blocked for this session: {}. Tools allowed for this session: {}.",
        show(&session.blocked_tools),
        show(&session.allowed_tools)
    )
}

/// `!/block-tools(name, …)`.
pub(crate) fn block(
    inv: &Invocation<'_>,
    session: &mut SessionState,
    _: &CommandEnv,
) -> Result<String, String> {
    let new = names(inv)?;
    add(&mut session.blocked_tools, &mut session.allowed_tools, new)?;
    Ok(describe(session))
}

/// `!/allow-tools(name, …)`.
pub(crate) fn allow(
    inv: &Invocation<'_>,
    session: &mut SessionState,
    _: &CommandEnv,
) -> Result<String, String> {
    let new = names(inv)?;
    add(&mut session.allowed_tools, &mut session.blocked_tools, new)?;
    Ok(describe(session))
}

/// `!/tool-access` shows the lists; `!/tool-access(reset)` empties them.
pub(crate) fn show_or_reset(
    inv: &Invocation<'_>,
    session: &mut SessionState,
    _: &CommandEnv,
) -> Result<String, String> {
    match inv.args {
        [] => Ok(describe(session)),
        [arg] if arg.key.is_none() && normalise(&arg.value) == "reset" => {
            session.allowed_tools.clear();
            session.blocked_tools.clear();
            Ok("The session's tool lists were cleared; the configured policies apply.".into())
        }
        _ => Err(format!(
            "Use {p}tool-access to show the session's tool lists, or {p}tool-access(reset) to clear them.",
            p = inv.prefix
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run_line;
    use crate::commands::CommandEnv;
    use crate::session::SessionState;

    #[test]
    fn block_allow_show_and_reset() {
        let env = CommandEnv::for_tests();
        let mut s = SessionState::default();
        run_line("!/block-tools(bash, web_*)", &mut s, &env).unwrap();
        assert_eq!(s.blocked_tools, ["bash", "web_*"]);
        run_line("!/allow-tools(BASH, read_file)", &mut s, &env).unwrap();
        assert_eq!(s.blocked_tools, ["web_*"]);
        assert_eq!(s.allowed_tools, ["BASH", "read_file"]);
        run_line("!/block-tools(web_*)", &mut s, &env).unwrap();
        assert_eq!(s.blocked_tools, ["web_*"]);
        let shown = run_line("!/tool-access", &mut s, &env).unwrap();
        assert!(shown.contains("blocked for this session: web_*"), "{shown}");
        run_line("!/tool-access(reset)", &mut s, &env).unwrap();
        assert!(s.blocked_tools.is_empty() && s.allowed_tools.is_empty());
    }

    #[test]
    fn bad_arguments_are_refused() {
        let env = CommandEnv::for_tests();
        let mut s = SessionState::default();
        assert!(run_line("!/block-tools", &mut s, &env).is_err());
        assert!(run_line("!/block-tools(name=bash)", &mut s, &env).is_err());
        assert!(run_line("!/block-tools(rm -rf)", &mut s, &env).is_err());
        assert!(run_line("!/tool-access(everything)", &mut s, &env).is_err());
        assert_eq!(s, SessionState::default());
    }
}
