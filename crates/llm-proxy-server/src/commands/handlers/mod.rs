//! What each command does to the session state, and the answer it gives. A handler gets the
//! parsed arguments, the session (a scratch copy the stage commits only when every command of
//! the line succeeded) and the startup-built environment; `Ok` and `Err` are both texts shown to
//! the user, `Err` meaning nothing was changed.

pub mod reasoning;
pub mod routes;
pub mod settings;
pub mod tools;

use std::fmt::Write as _;

use super::CommandEnv;
use super::parse::Arg;
use super::registry::{COMMANDS, closest, lookup};
use crate::session::SessionState;

/// One command run.
pub(crate) struct Invocation<'a> {
    /// Its arguments.
    pub args: &'a [Arg],
    /// The prefix in effect, for help texts.
    pub prefix: &'a str,
    /// The model the client asked for (matched by reasoning modes when the session has none).
    pub request_model: &'a str,
}

/// A command implementation.
pub(crate) type Handler =
    fn(&Invocation<'_>, &mut SessionState, &CommandEnv) -> Result<String, String>;

/// A parameter name as compared: lowercase, `_` and spaces read as `-`.
pub(crate) fn normalise(name: &str) -> String {
    name.trim()
        .chars()
        .map(|c| match c {
            '_' | ' ' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Binds arguments to parameters. `params[i]` lists the key names parameter `i` accepts
/// (normalised); positional arguments fill the parameters in order. Empty values are `None`.
pub(crate) fn bind<'a, const N: usize>(
    args: &'a [Arg],
    params: [&[&str]; N],
) -> Result<[Option<&'a str>; N], String> {
    let mut out: [Option<&'a str>; N] = [None; N];
    let mut seen = [false; N];
    let mut next_positional = 0;
    for arg in args {
        let index = match &arg.key {
            Some(key) => {
                let key_n = normalise(key);
                params
                    .iter()
                    .position(|names| names.contains(&key_n.as_str()))
                    .ok_or_else(|| {
                        let expected: Vec<&str> = params.iter().map(|names| names[0]).collect();
                        if expected.is_empty() {
                            format!("Unknown parameter '{key}': this command takes none.")
                        } else {
                            format!(
                                "Unknown parameter '{key}' (expected: {}).",
                                expected.join(", ")
                            )
                        }
                    })?
            }
            None => {
                while next_positional < N && seen[next_positional] {
                    next_positional += 1;
                }
                if next_positional >= N {
                    return Err(if N == 0 {
                        format!("This command takes no arguments (got '{}').", arg.value)
                    } else {
                        format!("Too many arguments (unexpected '{}').", arg.value)
                    });
                }
                next_positional
            }
        };
        if seen[index] {
            return Err(format!("Parameter '{}' given twice.", params[index][0]));
        }
        seen[index] = true;
        out[index] = Some(arg.value.as_str()).filter(|v| !v.is_empty());
    }
    Ok(out)
}

/// Parses on/off style booleans.
pub(crate) fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" | "enable" | "enabled" => Some(true),
        "off" | "false" | "no" | "0" | "disable" | "disabled" => Some(false),
        _ => None,
    }
}

fn on_off(v: bool) -> &'static str {
    if v { "on" } else { "off" }
}

/// `!/help`, `!/help(<command>)`.
pub(crate) fn help(
    inv: &Invocation<'_>,
    _: &mut SessionState,
    _: &CommandEnv,
) -> Result<String, String> {
    let [topic] = bind(inv.args, [&["command", "name", "topic"]])?;
    let p = inv.prefix;
    let Some(topic) = topic else {
        let mut out = String::from("Available commands:\n");
        for spec in COMMANDS {
            let _ = write!(out, "- {p}{} - {}", spec.name, spec.summary);
            if !spec.aliases.is_empty() {
                let _ = write!(out, " (also {})", spec.aliases.join(", "));
            }
            out.push('\n');
        }
        let _ = write!(
            out,
            "Type {p}help(<command>) for a command's format and examples."
        );
        return Ok(out);
    };
    let topic = topic.trim_start_matches(p);
    let Some(spec) = lookup(topic) else {
        return Err(not_found(topic, p, "Command"));
    };
    let mut out = format!("{p}{} - {}\nFormat: ", spec.name, spec.summary);
    for (i, form) in spec.usage.split(" | ").enumerate() {
        if i > 0 {
            out.push_str(" | ");
        }
        let _ = write!(out, "{p}{form}");
    }
    if !spec.aliases.is_empty() {
        let _ = write!(out, "\nAliases: {}", spec.aliases.join(", "));
    }
    out.push_str("\nExamples:");
    for example in spec.examples {
        let _ = write!(out, "\n  {p}{example}");
    }
    Ok(out)
}

/// "Command 'x' not found." with the closest names.
pub(crate) fn not_found(name: &str, prefix: &str, what: &str) -> String {
    let mut out = format!("{what} '{name}' not found.");
    let near = closest(name);
    if !near.is_empty() {
        let list: Vec<String> = near.iter().map(|n| format!("{prefix}{n}")).collect();
        let _ = write!(out, " Did you mean: {}?", list.join(", "));
    }
    let _ = write!(out, " Type {prefix}help for the list of commands.");
    out
}

/// `!/hello`.
pub(crate) fn hello(
    inv: &Invocation<'_>,
    _: &mut SessionState,
    _: &CommandEnv,
) -> Result<String, String> {
    bind(inv.args, [])?;
    let p = inv.prefix;
    Ok(format!(
        "Hello, this is llm-proxy. Type commands at the end of a message:\n\
         - {p}help lists every command\n\
         - {p}set(model=backend:model) switches the model for this session\n\
         - {p}unset(model) goes back to the configured model"
    ))
}

/// `!/model(x)`, `!/model(name=x)`; empty unsets.
pub(crate) fn model(
    inv: &Invocation<'_>,
    session: &mut SessionState,
    env: &CommandEnv,
) -> Result<String, String> {
    let [name] = bind(inv.args, [&["name", "model"]])?;
    match name {
        Some(value) => settings::set_model(value, session, env),
        None => {
            session.model = None;
            Ok("Model override removed.".to_owned())
        }
    }
}

/// `!/backend(x)`, `!/backend(name=x)`; empty unsets.
pub(crate) fn backend(
    inv: &Invocation<'_>,
    session: &mut SessionState,
    env: &CommandEnv,
) -> Result<String, String> {
    let [name] = bind(
        inv.args,
        [&["name", "backend", "provider", "provider-name"]],
    )?;
    match name {
        Some(value) => settings::set_backend(value, session, env),
        None => {
            session.backend = None;
            Ok("Backend override removed.".to_owned())
        }
    }
}

/// `!/oneoff(backend:model)`: the next request only; empty cancels.
pub(crate) fn oneoff(
    inv: &Invocation<'_>,
    session: &mut SessionState,
    env: &CommandEnv,
) -> Result<String, String> {
    let [route] = bind(inv.args, [&["route", "model", "selector", "name"]])?;
    let Some(route) = route else {
        session.oneoff = None;
        return Ok("One-off route cancelled.".to_owned());
    };
    env.refuse_under_static_route()?;
    let selector = settings::check_selector(route, env)?;
    session.oneoff = Some(selector);
    Ok(format!(
        "The next request goes to {route}; later ones go back to the session's route."
    ))
}

/// `!/temperature(x)`; empty unsets.
pub(crate) fn temperature(
    inv: &Invocation<'_>,
    session: &mut SessionState,
    _: &CommandEnv,
) -> Result<String, String> {
    let [value] = bind(inv.args, [&["value", "temperature"]])?;
    match value {
        Some(v) => {
            session.temperature = Some(settings::parse_temperature(v)?);
            Ok(format!("Temperature set to {v}."))
        }
        None => {
            session.temperature = None;
            Ok("Temperature override removed.".to_owned())
        }
    }
}

/// `!/project` shows, `!/project(x)` sets.
pub(crate) fn project(
    inv: &Invocation<'_>,
    session: &mut SessionState,
    _: &CommandEnv,
) -> Result<String, String> {
    let [name] = bind(inv.args, [&["name", "project"]])?;
    match name {
        Some(name) => {
            session.project = Some(name.to_owned());
            Ok(format!("Project set to {name}."))
        }
        None if inv.args.is_empty() => Ok(match &session.project {
            Some(p) => format!("Project: {p}"),
            None => "No project set.".to_owned(),
        }),
        None => Err("Give a project name, e.g. project(my-app).".to_owned()),
    }
}

/// `!/pwd`.
pub(crate) fn pwd(
    inv: &Invocation<'_>,
    session: &mut SessionState,
    _: &CommandEnv,
) -> Result<String, String> {
    bind(inv.args, [])?;
    Ok(match &session.project_dir {
        Some(dir) => dir.clone(),
        None => format!(
            "No project directory set. Set one with {}set(project-dir=/absolute/path).",
            inv.prefix
        ),
    })
}

/// `!/loop-detection` shows; `(enabled=…)` or `(on|off)` switches.
pub(crate) fn loop_detection(
    inv: &Invocation<'_>,
    session: &mut SessionState,
    _: &CommandEnv,
) -> Result<String, String> {
    let [enabled] = bind(inv.args, [&["enabled", "enable", "value"]])?;
    let Some(value) = enabled else {
        return Ok(match session.loop_detection {
            Some(v) => format!("Loop detection is {} for this session.", on_off(v)),
            None => "Loop detection follows the proxy configuration.".to_owned(),
        });
    };
    let v = parse_bool(value)
        .ok_or_else(|| format!("Expected on/off or true/false for enabled, got '{value}'."))?;
    session.loop_detection = Some(v);
    Ok(format!(
        "Loop detection {}.",
        if v { "enabled" } else { "disabled" }
    ))
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::commands::parse::trailing_commands;

    /// Runs `line` (one command) against `session` and returns its answer.
    pub fn run_line(
        line: &str,
        session: &mut SessionState,
        env: &CommandEnv,
    ) -> Result<String, String> {
        let found = trailing_commands(line, "!/", false).unwrap();
        let command = &found.commands[0];
        let spec = lookup(&command.name).unwrap();
        (spec.handler)(
            &Invocation {
                args: &command.args,
                prefix: "!/",
                request_model: "gpt-4o",
            },
            session,
            env,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::run_line;
    use super::*;

    fn env() -> CommandEnv {
        CommandEnv::for_tests()
    }

    #[test]
    fn help_lists_every_command() {
        let text = run_line("!/help", &mut SessionState::default(), &env()).unwrap();
        for spec in COMMANDS {
            assert!(
                text.contains(&format!("!/{} - ", spec.name)),
                "{}",
                spec.name
            );
        }
    }

    #[test]
    fn help_for_one_command_shows_format_and_examples() {
        let text = run_line("!/help(set)", &mut SessionState::default(), &env()).unwrap();
        assert!(text.contains("Format: !/set(key=value, ...)"), "{text}");
        assert!(text.contains("!/set(model=openrouter:"), "{text}");
        let text = run_line("!/help(no-thinking)", &mut SessionState::default(), &env()).unwrap();
        assert!(text.starts_with("!/no-think - "), "{text}");
    }

    #[test]
    fn help_for_unknown_command_says_so() {
        let err = run_line("!/help(sett)", &mut SessionState::default(), &env()).unwrap_err();
        assert!(err.starts_with("Command 'sett' not found."), "{err}");
        assert!(err.contains("!/set"), "{err}");
    }

    #[test]
    fn hello_mentions_help_set_unset() {
        let text = run_line("!/hello", &mut SessionState::default(), &env()).unwrap();
        for word in ["!/help", "!/set", "!/unset"] {
            assert!(text.contains(word));
        }
        assert!(run_line("!/hello(x)", &mut SessionState::default(), &env()).is_err());
    }

    #[test]
    fn model_positional_and_named_set_empty_unsets() {
        let mut s = SessionState::default();
        run_line("!/model(gpt-4o-mini)", &mut s, &env()).unwrap();
        assert_eq!(s.model.as_deref(), Some("gpt-4o-mini"));
        run_line("!/model(name=openai:gpt-4o)", &mut s, &env()).unwrap();
        assert_eq!(s.model.as_deref(), Some("openai:gpt-4o"));
        run_line("!/model()", &mut s, &env()).unwrap();
        assert_eq!(s.model, None);
        run_line("!/model(x)", &mut s, &env()).unwrap();
        run_line("!/model(name=)", &mut s, &env()).unwrap();
        assert_eq!(s.model, None);
    }

    #[test]
    fn model_and_backend_refused_under_static_route() {
        let env = CommandEnv::for_tests().with_static_route("openai:gpt-4o");
        let mut s = SessionState::default();
        for line in [
            "!/model(gpt-4o-mini)",
            "!/backend(openai)",
            "!/oneoff(openai:gpt-4o-mini)",
        ] {
            let err = run_line(line, &mut s, &env).unwrap_err();
            assert!(err.contains("static_route"), "{line}: {err}");
        }
        assert_eq!(s, SessionState::default());
    }

    #[test]
    fn backend_sets_validates_and_unsets() {
        let mut s = SessionState::default();
        run_line("!/backend(openrouter)", &mut s, &env()).unwrap();
        assert_eq!(s.backend.as_deref(), Some("openrouter"));
        run_line("!/provider(openai.1)", &mut s, &env()).unwrap();
        assert_eq!(s.backend.as_deref(), Some("openai.1"));
        let err = run_line("!/backend(nope)", &mut s, &env()).unwrap_err();
        assert!(err.contains("Unknown backend 'nope'"), "{err}");
        assert!(err.contains("openrouter"), "{err}");
        run_line("!/backend", &mut s, &env()).unwrap();
        assert_eq!(s.backend, None);
    }

    #[test]
    fn oneoff_sets_a_validated_selector() {
        let mut s = SessionState::default();
        run_line("!/oneoff(openai:gpt-4o-mini)", &mut s, &env()).unwrap();
        assert_eq!(s.oneoff.as_deref(), Some("openai:gpt-4o-mini"));
        assert!(run_line("!/oneoff(a:m|b:m^c:m)", &mut s, &env()).is_err());
        assert!(run_line("!/one-off()", &mut s, &env()).is_ok());
        assert_eq!(s.oneoff, None);
    }

    #[test]
    fn temperature_sets_checks_range_and_unsets() {
        let mut s = SessionState::default();
        run_line("!/temperature(0.3)", &mut s, &env()).unwrap();
        assert_eq!(s.temperature, Some(0.3));
        assert!(run_line("!/temperature(3)", &mut s, &env()).is_err());
        assert!(run_line("!/temperature(hot)", &mut s, &env()).is_err());
        assert_eq!(s.temperature, Some(0.3));
        run_line("!/temperature()", &mut s, &env()).unwrap();
        assert_eq!(s.temperature, None);
    }

    #[test]
    fn project_and_pwd() {
        let mut s = SessionState::default();
        assert_eq!(
            run_line("!/project", &mut s, &env()).unwrap(),
            "No project set."
        );
        run_line("!/project(billing)", &mut s, &env()).unwrap();
        assert_eq!(s.project.as_deref(), Some("billing"));
        assert_eq!(
            run_line("!/project", &mut s, &env()).unwrap(),
            "Project: billing"
        );
        assert!(
            run_line("!/pwd", &mut s, &env())
                .unwrap()
                .starts_with("No project directory")
        );
        s.project_dir = Some("/tmp".to_owned());
        assert_eq!(run_line("!/pwd", &mut s, &env()).unwrap(), "/tmp");
    }

    #[test]
    fn loop_detection_named_and_positional() {
        let mut s = SessionState::default();
        run_line("!/loop-detection(enabled=false)", &mut s, &env()).unwrap();
        assert_eq!(s.loop_detection, Some(false));
        run_line("!/loop-detection(on)", &mut s, &env()).unwrap();
        assert_eq!(s.loop_detection, Some(true));
        assert!(
            run_line("!/loop-detection", &mut s, &env())
                .unwrap()
                .contains("on")
        );
        assert!(run_line("!/loop-detection(maybe)", &mut s, &env()).is_err());
        assert!(run_line("!/loop-detection(x=1)", &mut s, &env()).is_err());
    }

    #[test]
    fn bind_rejects_duplicates_unknown_and_extra() {
        let args = |line: &str| {
            crate::commands::parse::trailing_commands(line, "!/", false)
                .unwrap()
                .commands
                .remove(0)
                .args
        };
        let a = args("!/x(name=a, element=b)");
        assert_eq!(
            bind(&a, [&["name"], &["element"]]).unwrap(),
            [Some("a"), Some("b")]
        );
        let a = args("!/x(a, b)");
        assert_eq!(
            bind(&a, [&["name"], &["element"]]).unwrap(),
            [Some("a"), Some("b")]
        );
        let a = args("!/x(element=b, a)");
        assert_eq!(
            bind(&a, [&["name"], &["element"]]).unwrap(),
            [Some("a"), Some("b")]
        );
        let a = args("!/x(Name=a, name=b)");
        assert!(bind(&a, [&["name"]]).unwrap_err().contains("twice"));
        let a = args("!/x(colour=a)");
        assert!(
            bind(&a, [&["name"]])
                .unwrap_err()
                .contains("Unknown parameter 'colour'")
        );
        let a = args("!/x(a, b)");
        assert!(bind(&a, [&["name"]]).unwrap_err().contains("Too many"));
    }
}
