//! The command table: every name and alias, its one-line summary, format and examples, and the
//! handler it runs; lookup by name and "did you mean" suggestions.

use super::handlers::{self, Handler};

/// One in-chat command.
pub struct CommandSpec {
    /// Canonical name.
    pub name: &'static str,
    /// Other names that run the same command.
    pub aliases: &'static [&'static str],
    /// One line for `!/help`.
    pub summary: &'static str,
    /// Format, without the prefix.
    pub usage: &'static str,
    /// Examples, without the prefix.
    pub examples: &'static [&'static str],
    /// What it does.
    pub(crate) handler: Handler,
}

impl std::fmt::Debug for CommandSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandSpec")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Every command, in the order `!/help` lists them.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "help",
        aliases: &[],
        summary: "List the commands, or show one command's format and examples",
        usage: "help | help(<command>)",
        examples: &["help", "help(set)"],
        handler: handlers::help,
    },
    CommandSpec {
        name: "hello",
        aliases: &[],
        summary: "Say hello and show how to get started",
        usage: "hello",
        examples: &["hello"],
        handler: handlers::hello,
    },
    CommandSpec {
        name: "set",
        aliases: &[],
        summary: "Set session settings (model, backend, temperature, reasoning, project, ...)",
        usage: "set(key=value, ...)  keys: backend, model, temperature, reasoning-effort, \
                thinking-budget, gemini-generation-config, project, project-dir, command-prefix, \
                interactive-mode, redact-api-keys-in-prompts, loop-detection, mode",
        examples: &[
            "set(model=openrouter:anthropic/claude-3.5-sonnet)",
            "set(backend=openai, temperature=0.2)",
            "set(reasoning-effort=high, thinking-budget=16000)",
            "set(gemini-generation-config={\"topK\": 20})",
            "set(project-dir=/home/me/src/app)",
        ],
        handler: handlers::settings::set,
    },
    CommandSpec {
        name: "unset",
        aliases: &[],
        summary: "Remove session settings, back to the configured behaviour",
        usage: "unset(key, ...)  (same keys as set)",
        examples: &["unset(model)", "unset(temperature, reasoning-effort)"],
        handler: handlers::settings::unset,
    },
    CommandSpec {
        name: "model",
        aliases: &[],
        summary: "Use this model (or backend:model, or any selector) for the session",
        usage: "model(<model>) | model(name=<model>) | model() to unset",
        examples: &[
            "model(gpt-4o)",
            "model(openrouter:openai/gpt-4o-mini)",
            "model()",
        ],
        handler: handlers::model,
    },
    CommandSpec {
        name: "backend",
        aliases: &["provider"],
        summary: "Use this backend for the session",
        usage: "backend(<backend>) | backend(name=<backend>) | backend() to unset",
        examples: &["backend(openrouter)", "backend(openai.1)", "backend()"],
        handler: handlers::backend,
    },
    CommandSpec {
        name: "oneoff",
        aliases: &["one-off"],
        summary: "Send only the next request to this backend:model (or selector)",
        usage: "oneoff(<backend:model>) | oneoff() to cancel",
        examples: &["oneoff(anthropic:claude-3-5-haiku-latest)"],
        handler: handlers::oneoff,
    },
    CommandSpec {
        name: "temperature",
        aliases: &[],
        summary: "Set the sampling temperature (0 to 2) for the session",
        usage: "temperature(<number>) | temperature() to unset",
        examples: &["temperature(0.2)", "temperature()"],
        handler: handlers::temperature,
    },
    CommandSpec {
        name: "max",
        aliases: &[],
        summary: "Maximum reasoning (the `high` mode)",
        usage: "max",
        examples: &["max"],
        handler: handlers::reasoning::max,
    },
    CommandSpec {
        name: "medium",
        aliases: &[],
        summary: "Medium reasoning (the `medium` mode)",
        usage: "medium",
        examples: &["medium"],
        handler: handlers::reasoning::medium,
    },
    CommandSpec {
        name: "low",
        aliases: &[],
        summary: "Low reasoning (the `low` mode)",
        usage: "low",
        examples: &["low"],
        handler: handlers::reasoning::low,
    },
    CommandSpec {
        name: "no-think",
        aliases: &[
            "no-thinking",
            "no-reasoning",
            "disable-thinking",
            "disable-reasoning",
        ],
        summary: "Turn reasoning off (the `none` mode)",
        usage: "no-think",
        examples: &["no-think"],
        handler: handlers::reasoning::no_think,
    },
    CommandSpec {
        name: "mode",
        aliases: &[],
        summary: "Apply a named reasoning mode from the reasoning_aliases table",
        usage: "mode(<name>) | mode(mode_name=<name>) | mode to list the modes",
        examples: &["mode(high)", "mode(mode_name=none)"],
        handler: handlers::reasoning::mode,
    },
    CommandSpec {
        name: "project",
        aliases: &[],
        summary: "Show or set the project name",
        usage: "project | project(<name>)",
        examples: &["project", "project(billing-service)"],
        handler: handlers::project,
    },
    CommandSpec {
        name: "pwd",
        aliases: &[],
        summary: "Show the project directory",
        usage: "pwd",
        examples: &["pwd"],
        handler: handlers::pwd,
    },
    CommandSpec {
        name: "loop-detection",
        aliases: &[],
        summary: "Show or switch loop detection for the session",
        usage: "loop-detection | loop-detection(enabled=true|false) | loop-detection(on|off)",
        examples: &["loop-detection(enabled=false)", "loop-detection(on)"],
        handler: handlers::loop_detection,
    },
    CommandSpec {
        name: "block-tools",
        aliases: &["block-tool"],
        summary: "Block tools for the session: their definitions and calls are removed",
        usage: "block-tools(<name>, ...)  names may use * and ?",
        examples: &["block-tools(bash)", "block-tools(web_fetch, mcp__*)"],
        handler: handlers::tools::block,
    },
    CommandSpec {
        name: "allow-tools",
        aliases: &["allow-tool"],
        summary: "Allow tools for the session that a deny-by-default policy would refuse",
        usage: "allow-tools(<name>, ...)  names may use * and ?",
        examples: &["allow-tools(read_file)", "allow-tools(bash)"],
        handler: handlers::tools::allow,
    },
    CommandSpec {
        name: "tool-access",
        aliases: &[],
        summary: "Show the session's blocked and allowed tools, or clear them",
        usage: "tool-access | tool-access(reset)",
        examples: &["tool-access", "tool-access(reset)"],
        handler: handlers::tools::show_or_reset,
    },
    CommandSpec {
        name: "create-failover-route",
        aliases: &[],
        summary: "Create a session failover route",
        usage: "create-failover-route(name=<name>, policy=k|m|km|mk)",
        examples: &["create-failover-route(name=fast, policy=k)"],
        handler: handlers::routes::create,
    },
    CommandSpec {
        name: "delete-failover-route",
        aliases: &[],
        summary: "Delete a session failover route",
        usage: "delete-failover-route(name=<name>)",
        examples: &["delete-failover-route(name=fast)"],
        handler: handlers::routes::delete,
    },
    CommandSpec {
        name: "list-failover-routes",
        aliases: &[],
        summary: "List the session failover routes",
        usage: "list-failover-routes",
        examples: &["list-failover-routes"],
        handler: handlers::routes::list_all,
    },
    CommandSpec {
        name: "route-append",
        aliases: &[],
        summary: "Add a backend:model at the end of a failover route",
        usage: "route-append(name=<name>, element=<backend:model>)",
        examples: &["route-append(name=fast, element=openai:gpt-4o-mini)"],
        handler: handlers::routes::append,
    },
    CommandSpec {
        name: "route-prepend",
        aliases: &[],
        summary: "Add a backend:model at the start of a failover route",
        usage: "route-prepend(name=<name>, element=<backend:model>)",
        examples: &["route-prepend(name=fast, element=anthropic:claude-3-5-haiku-latest)"],
        handler: handlers::routes::prepend,
    },
    CommandSpec {
        name: "route-clear",
        aliases: &[],
        summary: "Remove every element of a failover route",
        usage: "route-clear(name=<name>)",
        examples: &["route-clear(name=fast)"],
        handler: handlers::routes::clear,
    },
    CommandSpec {
        name: "route-list",
        aliases: &[],
        summary: "Show the elements of a failover route",
        usage: "route-list(name=<name>)",
        examples: &["route-list(name=fast)"],
        handler: handlers::routes::list_one,
    },
];

/// The command named `name` (case-insensitive, `_` read as `-`), aliases included.
pub fn lookup(name: &str) -> Option<&'static CommandSpec> {
    COMMANDS.iter().find(|spec| {
        names_match(spec.name, name) || spec.aliases.iter().any(|a| names_match(a, name))
    })
}

fn names_match(known: &str, typed: &str) -> bool {
    known.len() == typed.len()
        && known
            .bytes()
            .zip(typed.bytes())
            .all(|(k, t)| k == t.to_ascii_lowercase() || (k == b'-' && t == b'_'))
}

/// Up to three command names closest to `typed` (edit distance, then containment).
pub fn closest(typed: &str) -> Vec<&'static str> {
    let typed = typed.to_ascii_lowercase().replace('_', "-");
    let limit = (typed.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, &'static str)> = Vec::new();
    for spec in COMMANDS {
        let best = std::iter::once(spec.name)
            .chain(spec.aliases.iter().copied())
            .map(|name| {
                if name.contains(typed.as_str()) || typed.contains(name) {
                    1
                } else {
                    edit_distance(&typed, name)
                }
            })
            .min()
            .unwrap_or(usize::MAX);
        if best <= limit {
            scored.push((best, spec.name));
        }
    }
    scored.sort();
    scored.into_iter().take(3).map(|(_, name)| name).collect()
}

/// Edit distance over chars counting an adjacent swap as one edit (optimal string alignment),
/// so `hepl` is closer to `help` than to `hello`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for (i, row) in d.chunks_mut(width).enumerate() {
        row[0] = i;
    }
    for (j, cell) in d.iter_mut().take(width).enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_well_formed() {
        let mut all: Vec<&str> = Vec::new();
        for spec in COMMANDS {
            all.push(spec.name);
            all.extend(spec.aliases);
        }
        for name in &all {
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{name}"
            );
        }
        let mut sorted = all.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), all.len());
    }

    #[test]
    fn lookup_by_name_alias_case_and_underscore() {
        assert_eq!(lookup("set").unwrap().name, "set");
        assert_eq!(lookup("SET").unwrap().name, "set");
        assert_eq!(lookup("no_thinking").unwrap().name, "no-think");
        assert_eq!(lookup("disable-reasoning").unwrap().name, "no-think");
        assert_eq!(lookup("provider").unwrap().name, "backend");
        assert!(lookup("bogus").is_none());
    }

    #[test]
    fn closest_matches_typos() {
        assert_eq!(closest("hepl")[0], "help");
        assert!(closest("modle").contains(&"model"));
        assert_eq!(closest("pdw")[0], "pwd");
        let near = closest("route");
        assert_eq!(near.len(), 3);
        assert!(near.iter().all(|n| n.contains("route")), "{near:?}");
        assert!(closest("zzzzzzzz").is_empty());
    }

    #[test]
    fn edit_distance_basics() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
        assert_eq!(edit_distance("hepl", "help"), 1);
    }
}
