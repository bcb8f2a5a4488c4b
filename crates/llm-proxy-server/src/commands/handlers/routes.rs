//! Session failover routes: `create-failover-route`, `delete-failover-route`,
//! `list-failover-routes`, `route-append`, `route-prepend`, `route-clear`, `route-list`.

use std::fmt::Write as _;

use super::{Invocation, bind};
use crate::commands::CommandEnv;
use crate::routing::selector::Selector;
use crate::session::{FailoverRoute, SessionState};

/// Policy letters accepted (validated, kept for display).
const POLICIES: [&str; 4] = ["k", "m", "km", "mk"];

/// Route names: what a user can type back in `name=`.
fn check_name(name: &str) -> Result<&str, String> {
    let name = name.trim();
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(format!(
            "Route name '{name}' must be 1 to 64 letters, digits, '-', '_' or '.'."
        ));
    }
    Ok(name)
}

fn required<'a>(value: Option<&'a str>, what: &str, usage: &str) -> Result<&'a str, String> {
    value.ok_or_else(|| format!("Missing {what}. Format: {usage}"))
}

fn route_mut<'a>(
    session: &'a mut SessionState,
    name: &str,
) -> Result<&'a mut FailoverRoute, String> {
    session
        .failover_routes
        .get_mut(name)
        .ok_or_else(|| format!("No failover route named '{name}'."))
}

/// `!/create-failover-route(name=…, policy=k|m|km|mk)`; policy defaults to `k`.
pub(crate) fn create(
    inv: &Invocation<'_>,
    session: &mut SessionState,
    _: &CommandEnv,
) -> Result<String, String> {
    let usage = "create-failover-route(name=<name>, policy=k|m|km|mk)";
    let [name, policy] = bind(inv.args, [&["name"], &["policy"]])?;
    let name = check_name(required(name, "name", usage)?)?;
    let policy = policy.unwrap_or("k").trim().to_ascii_lowercase();
    if !POLICIES.contains(&policy.as_str()) {
        return Err(format!(
            "Invalid policy '{policy}': use one of {}.",
            POLICIES.join(", ")
        ));
    }
    if session.failover_routes.contains_key(name) {
        return Err(format!("Failover route '{name}' already exists."));
    }
    session.failover_routes.insert(
        name.to_owned(),
        FailoverRoute {
            policy: policy.clone(),
            elements: Vec::new(),
        },
    );
    Ok(format!(
        "Failover route '{name}' created (policy {policy}). Add elements with {}route-append(name={name}, element=backend:model).",
        inv.prefix
    ))
}

/// `!/delete-failover-route(name=…)`.
pub(crate) fn delete(
    inv: &Invocation<'_>,
    session: &mut SessionState,
    _: &CommandEnv,
) -> Result<String, String> {
    let [name] = bind(inv.args, [&["name"]])?;
    let name = required(name, "name", "delete-failover-route(name=<name>)")?.trim();
    session
        .failover_routes
        .remove(name)
        .map(|_| format!("Failover route '{name}' deleted."))
        .ok_or_else(|| format!("No failover route named '{name}'."))
}

/// `!/list-failover-routes`.
pub(crate) fn list_all(
    inv: &Invocation<'_>,
    session: &mut SessionState,
    _: &CommandEnv,
) -> Result<String, String> {
    bind(inv.args, [])?;
    if session.failover_routes.is_empty() {
        return Ok("No failover routes in this session.".to_owned());
    }
    let mut out = String::from("Failover routes:");
    for (name, route) in &session.failover_routes {
        let _ = write!(
            out,
            "\n- {name} (policy {}): {}",
            route.policy,
            describe(&route.elements)
        );
    }
    Ok(out)
}

fn describe(elements: &[String]) -> String {
    if elements.is_empty() {
        "no elements".to_owned()
    } else {
        elements.join(" -> ")
    }
}

/// `!/route-append(name=…, element=backend:model)`.
pub(crate) fn append(
    inv: &Invocation<'_>,
    session: &mut SessionState,
    env: &CommandEnv,
) -> Result<String, String> {
    add(inv, session, env, false)
}

/// `!/route-prepend(name=…, element=backend:model)`.
pub(crate) fn prepend(
    inv: &Invocation<'_>,
    session: &mut SessionState,
    env: &CommandEnv,
) -> Result<String, String> {
    add(inv, session, env, true)
}

fn add(
    inv: &Invocation<'_>,
    session: &mut SessionState,
    env: &CommandEnv,
    front: bool,
) -> Result<String, String> {
    let usage = if front {
        "route-prepend(name=<name>, element=<backend:model>)"
    } else {
        "route-append(name=<name>, element=<backend:model>)"
    };
    let [name, element] = bind(inv.args, [&["name"], &["element", "model"]])?;
    let name = required(name, "name", usage)?.trim();
    let element = check_element(required(element, "element", usage)?, env)?;
    let route = route_mut(session, name)?;
    if front {
        route.elements.insert(0, element);
    } else {
        route.elements.push(element);
    }
    Ok(format!(
        "Failover route '{name}': {}.",
        describe(&route.elements)
    ))
}

/// One `backend:model` leaf with a configured backend.
fn check_element(value: &str, env: &CommandEnv) -> Result<String, String> {
    let value = value.trim();
    let parsed = crate::routing::selector::parse_within(value, env.selector_limits())
        .map_err(|e| format!("Invalid element '{value}': {e}."))?;
    let Selector::Single(leaf) = &parsed else {
        return Err(format!(
            "Element '{value}' must be one backend:model, not a composite selector."
        ));
    };
    let Some(backend) = &leaf.backend else {
        return Err(format!(
            "Element '{value}' must name its backend (backend:model)."
        ));
    };
    if !env.knows_backend(&backend.id()) {
        return Err(env.unknown_backend(&backend.id()));
    }
    Ok(value.to_owned())
}

/// `!/route-clear(name=…)`.
pub(crate) fn clear(
    inv: &Invocation<'_>,
    session: &mut SessionState,
    _: &CommandEnv,
) -> Result<String, String> {
    let [name] = bind(inv.args, [&["name"]])?;
    let name = required(name, "name", "route-clear(name=<name>)")?.trim();
    route_mut(session, name)?.elements.clear();
    Ok(format!("Failover route '{name}' cleared."))
}

/// `!/route-list(name=…)`.
pub(crate) fn list_one(
    inv: &Invocation<'_>,
    session: &mut SessionState,
    _: &CommandEnv,
) -> Result<String, String> {
    let [name] = bind(inv.args, [&["name"]])?;
    let name = required(name, "name", "route-list(name=<name>)")?.trim();
    let route = route_mut(session, name)?;
    Ok(format!(
        "Failover route '{name}' (policy {}): {}.",
        route.policy,
        describe(&route.elements)
    ))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run_line;
    use super::*;

    fn env() -> CommandEnv {
        CommandEnv::for_tests()
    }

    #[test]
    fn create_validates_name_policy_and_duplicates() {
        let mut s = SessionState::default();
        run_line(
            "!/create-failover-route(name=fast, policy=km)",
            &mut s,
            &env(),
        )
        .unwrap();
        assert_eq!(s.failover_routes["fast"].policy, "km");
        run_line("!/create-failover-route(slow)", &mut s, &env()).unwrap();
        assert_eq!(s.failover_routes["slow"].policy, "k");
        assert!(
            run_line("!/create-failover-route(name=fast)", &mut s, &env())
                .unwrap_err()
                .contains("already exists")
        );
        assert!(
            run_line("!/create-failover-route(name=x, policy=zz)", &mut s, &env())
                .unwrap_err()
                .contains("Invalid policy")
        );
        assert!(
            run_line("!/create-failover-route(policy=k)", &mut s, &env())
                .unwrap_err()
                .contains("Missing name")
        );
        assert!(run_line("!/create-failover-route(name=a b)", &mut s, &env()).is_err());
    }

    #[test]
    fn append_prepend_list_clear_delete() {
        let mut s = SessionState::default();
        run_line("!/create-failover-route(name=r)", &mut s, &env()).unwrap();
        run_line(
            "!/route-append(name=r, element=openai:gpt-4o)",
            &mut s,
            &env(),
        )
        .unwrap();
        run_line("!/route-append(r, openrouter:x/y)", &mut s, &env()).unwrap();
        run_line(
            "!/route-prepend(name=r, element=anthropic:claude-3-5-haiku-latest)",
            &mut s,
            &env(),
        )
        .unwrap();
        assert_eq!(
            s.failover_routes["r"].elements,
            [
                "anthropic:claude-3-5-haiku-latest",
                "openai:gpt-4o",
                "openrouter:x/y"
            ]
        );
        let listing = run_line("!/route-list(name=r)", &mut s, &env()).unwrap();
        assert!(listing.contains("anthropic:claude-3-5-haiku-latest -> openai:gpt-4o"));
        let all = run_line("!/list-failover-routes", &mut s, &env()).unwrap();
        assert!(all.contains("- r (policy k)"), "{all}");
        run_line("!/route-clear(name=r)", &mut s, &env()).unwrap();
        assert!(s.failover_routes["r"].elements.is_empty());
        run_line("!/delete-failover-route(name=r)", &mut s, &env()).unwrap();
        assert!(s.failover_routes.is_empty());
        assert!(
            run_line("!/list-failover-routes", &mut s, &env())
                .unwrap()
                .starts_with("No failover routes")
        );
    }

    #[test]
    fn elements_must_be_single_explicit_known_leaves() {
        let mut s = SessionState::default();
        run_line("!/create-failover-route(name=r)", &mut s, &env()).unwrap();
        for (line, expect) in [
            (
                "!/route-append(name=r, element=gpt-4o)",
                "must name its backend",
            ),
            ("!/route-append(name=r, element=a:m|b:m)", "not a composite"),
            ("!/route-append(name=r, element=nope:m)", "Unknown backend"),
            (
                "!/route-append(name=missing, element=openai:m)",
                "No failover route",
            ),
            ("!/route-append(name=r)", "Missing element"),
        ] {
            let err = run_line(line, &mut s, &env()).unwrap_err();
            assert!(err.contains(expect), "{line}: {err}");
        }
        for line in [
            "!/route-clear(name=missing)",
            "!/route-list(name=missing)",
            "!/delete-failover-route(name=missing)",
        ] {
            assert!(run_line(line, &mut s, &env()).is_err(), "{line}");
        }
    }
}
