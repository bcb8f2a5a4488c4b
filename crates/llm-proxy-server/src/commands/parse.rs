//! Finding in-chat commands in text: the trailing `!/name(args)` run of a line, its arguments,
//! and the command prefix rules. Pure string work, no regex, nothing allocated until a prefix
//! is seen.

/// One argument: `key=value`, or a bare token (`key` is `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    /// The key as typed (trimmed), for `k=v` arguments.
    pub key: Option<String>,
    /// The value, trimmed, with one level of surrounding quotes removed.
    pub value: String,
}

/// One command found in a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCommand {
    /// The name as typed (`[A-Za-z0-9_-]+`).
    pub name: String,
    /// Arguments in order; empty for `!/name` and `!/name()`.
    pub args: Vec<Arg>,
}

/// The commands ending a line and where they start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailingCommands {
    /// Byte offset in the line where the first command's prefix starts.
    pub start: usize,
    /// The commands in the order typed.
    pub commands: Vec<ParsedCommand>,
}

/// Checks a command prefix: 2 to 10 printable characters, no whitespace, and a two-character
/// prefix may not repeat one character (`!!` would fire on ordinary text).
///
/// # Errors
///
/// Returns what is wrong, as a sentence.
pub fn validate_prefix(prefix: &str) -> Result<(), &'static str> {
    let n = prefix.chars().count();
    if !(2..=10).contains(&n) {
        return Err("must be 2 to 10 characters long");
    }
    if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters");
    }
    let mut chars = prefix.chars();
    if n == 2 && chars.next() == chars.next() {
        return Err("a two-character prefix may not repeat one character");
    }
    Ok(())
}

/// The last line of `text` holding anything but whitespace, with its byte range in `text`.
pub fn last_non_blank_line(text: &str) -> Option<(usize, &str)> {
    let mut end = text.len();
    loop {
        let start = text[..end].rfind('\n').map_or(0, |i| i + 1);
        let line = &text[start..end];
        if !line.trim().is_empty() {
            return Some((start, line));
        }
        if start == 0 {
            return None;
        }
        end = start - 1;
    }
}

/// How far from the end of a line a command run may start, in bytes, and how many prefix
/// positions are tried: bounds the work on a hostile line full of prefixes to
/// `MAX_CANDIDATES * MAX_RUN_BYTES` steps.
const MAX_RUN_BYTES: usize = 8 * 1024;
const MAX_CANDIDATES: usize = 32;

/// Finds the run of commands that ends `line`: one or more `prefix name(args)` separated by
/// whitespace, reaching the end of the line (trailing whitespace allowed). A prefix must start
/// the line or follow whitespace. With `strict`, the run must also start the line (leading
/// whitespace allowed), so a command after prose on the same line is left alone.
pub fn trailing_commands(line: &str, prefix: &str, strict: bool) -> Option<TrailingCommands> {
    if prefix.is_empty() || !line.contains(prefix) {
        return None;
    }
    let mut window = line.len().saturating_sub(MAX_RUN_BYTES);
    while !line.is_char_boundary(window) {
        window += 1;
    }
    // Prefix positions that may start a run, latest last; only the last few are tried.
    let candidates: Vec<usize> = line[window..]
        .match_indices(prefix)
        .map(|(i, _)| window + i)
        .filter(|&start| {
            let before = &line[..start];
            before.is_empty() || before.ends_with(char::is_whitespace)
        })
        .collect();
    let tried = &candidates[candidates.len().saturating_sub(MAX_CANDIDATES)..];
    // The earliest position from which the rest of the line is commands only.
    for &start in tried {
        if strict && !line[..start].trim().is_empty() {
            return None;
        }
        if let Some(commands) = parse_run(&line[start..], prefix) {
            return Some(TrailingCommands { start, commands });
        }
    }
    None
}

/// Parses `text` as whitespace-separated commands only, or `None`.
fn parse_run(text: &str, prefix: &str) -> Option<Vec<ParsedCommand>> {
    let mut rest = text;
    let mut out = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return (!out.is_empty()).then_some(out);
        }
        let after = rest.strip_prefix(prefix)?;
        let (command, tail) = parse_one(after)?;
        // Commands must be separated by whitespace (or end the line).
        if !tail.is_empty() && !tail.starts_with(char::is_whitespace) {
            return None;
        }
        out.push(command);
        rest = tail;
    }
}

/// Parses `name` or `name(args)` at the start of `text` (after the prefix).
fn parse_one(text: &str) -> Option<(ParsedCommand, &str)> {
    let name_len = text
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
        .count();
    if name_len == 0 {
        return None;
    }
    let name = &text[..name_len];
    let rest = &text[name_len..];
    let Some(inner_start) = rest.strip_prefix('(') else {
        return Some((
            ParsedCommand {
                name: name.to_owned(),
                args: Vec::new(),
            },
            rest,
        ));
    };
    let close = matching_close(inner_start)?;
    let args = split_args(&inner_start[..close])?;
    Some((
        ParsedCommand {
            name: name.to_owned(),
            args,
        },
        &inner_start[close + 1..],
    ))
}

/// Byte index of the `)` closing an argument list whose `(` was just consumed, honouring
/// nested brackets and quotes.
fn matching_close(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' => quote = Some(c),
            '(' | '[' | '{' => depth += 1,
            ')' if depth == 0 => return Some(i),
            ')' | ']' | '}' => depth = depth.checked_sub(1)?,
            _ => {}
        }
    }
    None
}

/// Splits an argument list on top-level commas into `k=v` / bare arguments.
fn split_args(inner: &str) -> Option<Vec<Arg>> {
    let mut args = Vec::new();
    if inner.trim().is_empty() {
        return Some(args);
    }
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut piece_start = 0;
    let mut eq: Option<usize> = None;
    for (i, c) in inner.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' => quote = Some(c),
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.checked_sub(1)?,
            '=' if depth == 0 && eq.is_none() => eq = Some(i),
            ',' if depth == 0 => {
                args.push(make_arg(inner, piece_start, i, eq));
                piece_start = i + 1;
                eq = None;
            }
            _ => {}
        }
    }
    if quote.is_some() || depth != 0 {
        return None;
    }
    args.push(make_arg(inner, piece_start, inner.len(), eq));
    // `!/set(a=1,)`: a trailing comma adds nothing.
    if args
        .last()
        .is_some_and(|a| a.key.is_none() && a.value.is_empty())
    {
        args.pop();
    }
    Some(args)
}

fn make_arg(inner: &str, start: usize, end: usize, eq: Option<usize>) -> Arg {
    if let Some(eq) = eq {
        let key = inner[start..eq].trim();
        // Only a plain name before `=` makes a key: `openrouter:x?temperature=0.5` is a value.
        if !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b' '))
        {
            return Arg {
                key: Some(key.to_owned()),
                value: unquote(inner[eq + 1..end].trim()),
            };
        }
    }
    Arg {
        key: None,
        value: unquote(inner[start..end].trim()),
    }
}

/// Removes one level of matching quotes and their backslash escapes.
fn unquote(value: &str) -> String {
    let bytes = value.as_bytes();
    if value.len() >= 2
        && (bytes[0] == b'"' || bytes[0] == b'\'')
        && bytes[value.len() - 1] == bytes[0]
    {
        let mut out = String::with_capacity(value.len());
        let mut escaped = false;
        for c in value[1..value.len() - 1].chars() {
            if escaped {
                out.push(c);
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else {
                out.push(c);
            }
        }
        return out;
    }
    value.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> Arg {
        Arg {
            key: Some(k.to_owned()),
            value: v.to_owned(),
        }
    }

    fn pos(v: &str) -> Arg {
        Arg {
            key: None,
            value: v.to_owned(),
        }
    }

    fn one(line: &str) -> ParsedCommand {
        let found = trailing_commands(line, "!/", false).unwrap();
        assert_eq!(found.commands.len(), 1, "{line}");
        found.commands.into_iter().next().unwrap()
    }

    #[test]
    fn bare_command() {
        let c = one("!/hello");
        assert_eq!(c.name, "hello");
        assert!(c.args.is_empty());
        assert!(one("!/help()").args.is_empty());
    }

    #[test]
    fn key_value_and_positional_arguments() {
        let c = one("!/set(model=openrouter:anthropic/claude-3-haiku:beta, temperature = 0.5)");
        assert_eq!(
            c.args,
            vec![
                kv("model", "openrouter:anthropic/claude-3-haiku:beta"),
                kv("temperature", "0.5")
            ]
        );
        assert_eq!(one("!/model(gpt-4o)").args, vec![pos("gpt-4o")]);
        assert_eq!(
            one("!/unset(model, backend)").args,
            vec![pos("model"), pos("backend")]
        );
    }

    #[test]
    fn nested_brackets_and_quotes_stay_in_one_value() {
        let c = one(r#"!/set(gemini-generation-config={"a": {"b": [1, 2]}, "c": "x,)"})"#);
        assert_eq!(
            c.args,
            vec![kv(
                "gemini-generation-config",
                r#"{"a": {"b": [1, 2]}, "c": "x,)"}"#
            )]
        );
        let c = one(r#"!/set(project="my, project", x='it\'s')"#);
        assert_eq!(c.args, vec![kv("project", "my, project"), kv("x", "it's")]);
    }

    #[test]
    fn selectors_with_query_and_annotations_are_values() {
        let c = one("!/model(openai:gpt-4o?temperature=0.5)");
        assert_eq!(c.args, vec![pos("openai:gpt-4o?temperature=0.5")]);
        let c = one("!/set(model=[weight=3]a:m^[weight=1]b:m)");
        assert_eq!(c.args, vec![kv("model", "[weight=3]a:m^[weight=1]b:m")]);
        let c = one("!/model(a:m|b:m)");
        assert_eq!(c.args, vec![pos("a:m|b:m")]);
    }

    #[test]
    fn command_must_end_the_line() {
        assert!(trailing_commands("!/hello there", "!/", false).is_none());
        assert!(trailing_commands("!/set(model=x", "!/", false).is_none());
        assert!(trailing_commands("!/set(model=x))", "!/", false).is_none());
        assert!(trailing_commands("see http://a!/hello", "!/", false).is_none());
        assert!(trailing_commands("!/", "!/", false).is_none());
    }

    #[test]
    fn text_before_the_command_is_kept_unless_strict() {
        let found = trailing_commands("please switch !/model(x)  ", "!/", false).unwrap();
        assert_eq!(found.start, "please switch ".len());
        assert!(trailing_commands("please switch !/model(x)", "!/", true).is_none());
        assert_eq!(
            trailing_commands("  !/model(x)", "!/", true).unwrap().start,
            2
        );
    }

    #[test]
    fn several_commands_on_one_line_in_order() {
        let found = trailing_commands("!/set(model=a:b) !/max", "!/", false).unwrap();
        let names: Vec<_> = found.commands.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["set", "max"]);
        // Glued commands are not a run.
        assert!(trailing_commands("!/hello!/max", "!/", false).is_none());
    }

    #[test]
    fn custom_prefix() {
        assert_eq!(one_with("#/hello", "#/").name, "hello");
        assert!(trailing_commands("!/hello", "#/", false).is_none());
    }

    fn one_with(line: &str, prefix: &str) -> ParsedCommand {
        trailing_commands(line, prefix, false)
            .unwrap()
            .commands
            .remove(0)
    }

    #[test]
    fn last_non_blank_line_skips_trailing_blank_lines() {
        let text = "first\n!/hello\n  \n\n";
        let (start, line) = last_non_blank_line(text).unwrap();
        assert_eq!(line, "!/hello");
        assert_eq!(start, 6);
        assert!(last_non_blank_line(" \n\n").is_none());
        assert_eq!(last_non_blank_line("x").unwrap(), (0, "x"));
    }

    #[test]
    fn a_line_full_of_prefixes_is_bounded_work() {
        let line = "!/a( ".repeat(200_000) + "!/max";
        let found = trailing_commands(&line, "!/", false).unwrap();
        assert_eq!(found.commands[0].name, "max");
        assert!(trailing_commands(&"!/a( ".repeat(200_000), "!/", false).is_none());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(line in "[ a-z!/()=,'\"{}\\\\\\[\\]é]{0,64}") {
            let _ = trailing_commands(&line, "!/", false);
            let _ = trailing_commands(&line, "!/", true);
            let _ = last_non_blank_line(&line);
        }
    }

    #[test]
    fn prefix_rules() {
        assert!(validate_prefix("!/").is_ok());
        assert!(validate_prefix("##").is_err());
        assert!(validate_prefix("!").is_err());
        assert!(validate_prefix("a b").is_err());
        assert!(validate_prefix("12345678901").is_err());
        assert!(validate_prefix("###").is_ok());
    }
}
