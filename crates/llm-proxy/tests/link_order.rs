//! `link-order.ld` and `link-order.txt` (written by scripts/link-order, passed to LLD by
//! build.rs in release builds only, so nothing else in the suite links with them): a malformed
//! script fails the release link, and an emptied one silently loses the layout.

use std::collections::HashSet;
use std::path::Path;

fn read(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The pattern lines of the script's groups, one list per `*( ... )`.
fn groups(script: &str) -> Vec<Vec<&str>> {
    let mut groups = Vec::new();
    let mut open: Option<Vec<&str>> = None;
    for line in script.lines().map(str::trim) {
        match (line, &mut open) {
            ("*(", None) => open = Some(Vec::new()),
            (")", Some(_)) => groups.extend(open.take()),
            (pattern, Some(group)) => group.push(pattern),
            _ => {}
        }
    }
    assert!(open.is_none(), "a group is not closed");
    groups
}

#[test]
fn the_layout_script_gathers_start_up_then_serving_code_at_the_start_of_text() {
    let script = read("link-order.ld");
    let body: Vec<&str> = script
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .skip_while(|l| !l.starts_with("SECTIONS"))
        .collect();
    assert_eq!(&body[..2], ["SECTIONS {", ".text : {"]);
    assert_eq!(
        &body[body.len() - 3..],
        ["}", "}", "INSERT BEFORE .init;"],
        "an INSERT script, so the default layout stays"
    );
    let groups = groups(&script);
    assert_eq!(groups.len(), 2, "start-up's group, then the rest");
    let mut seen = HashSet::new();
    for pattern in groups.iter().flatten() {
        assert!(pattern.starts_with(".text."), "{pattern}");
        // No character a script would read as syntax or a glob class.
        assert!(
            pattern
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.$*".contains(&b)),
            "{pattern}"
        );
        assert!(seen.insert(*pattern), "listed twice: {pattern}");
    }
    assert!(
        groups.iter().all(|g| g.len() > 500),
        "{:?} patterns: regenerate with scripts/link-order",
        groups.iter().map(Vec::len).collect::<Vec<_>>()
    );
}

#[test]
fn the_ordering_file_lists_each_symbol_once() {
    let order = read("link-order.txt");
    let symbols: Vec<&str> = order
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert!(symbols.len() > 1000, "{} symbols", symbols.len());
    let mut seen = HashSet::new();
    for symbol in &symbols {
        assert!(!symbol.contains(char::is_whitespace), "{symbol:?}");
        assert!(seen.insert(*symbol), "listed twice: {symbol}");
    }
}
