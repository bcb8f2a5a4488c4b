//! The `llm-proxy usage` summary: the totals of the selected records and one line per
//! backend, model or session, as a plain-text table.

use std::fmt::Write as _;

use super::{GroupTotals, Totals, UsageStats};

/// What the summary's lines are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupBy {
    /// Backend instance.
    #[default]
    Backend,
    /// Model.
    Model,
    /// Session.
    Session,
}

impl GroupBy {
    /// `backend`, `model` or `session`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "backend" => Some(Self::Backend),
            "model" => Some(Self::Model),
            "session" => Some(Self::Session),
            _ => None,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Backend => "BACKEND",
            Self::Model => "MODEL",
            Self::Session => "SESSION",
        }
    }
}

/// The table: a header, one line per group (largest cost first), and a total line.
pub fn summary_table(stats: &UsageStats, by: GroupBy) -> String {
    let groups = match by {
        GroupBy::Backend => &stats.by_backend,
        GroupBy::Model => &stats.by_model,
        GroupBy::Session => &stats.by_session,
    };
    let name = |g: &GroupTotals| g.key.clone().unwrap_or_else(|| "(none)".to_owned());
    let width = groups
        .iter()
        .map(|g| name(g).chars().count())
        .chain([by.title().len(), "TOTAL".len()])
        .max()
        .unwrap_or(5);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<width$}  {:>9}  {:>12}  {:>12}  {:>12}  {:>10}  {:>10}  {:>12}",
        by.title(),
        "REQUESTS",
        "PROMPT",
        "COMPLETION",
        "CACHED",
        "REASONING",
        "ESTIMATED",
        "COST_USD"
    );
    let line = |out: &mut String, label: &str, t: &Totals| {
        let _ = writeln!(
            out,
            "{label:<width$}  {:>9}  {:>12}  {:>12}  {:>12}  {:>10}  {:>10}  {:>12.6}",
            t.requests,
            t.prompt_tokens,
            t.completion_tokens,
            t.cached_tokens,
            t.reasoning_tokens,
            t.estimated_requests,
            t.cost_usd
        );
    };
    for g in groups {
        line(&mut out, &name(g), &g.totals);
    }
    line(&mut out, "TOTAL", &stats.total);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_line_per_group_and_a_total() {
        let totals = |requests| Totals {
            requests,
            prompt_tokens: 10 * requests,
            cost_usd: 0.5,
            ..Totals::default()
        };
        let stats = UsageStats {
            total: totals(3),
            by_model: vec![
                GroupTotals {
                    key: Some("gpt-4o".into()),
                    totals: totals(2),
                },
                GroupTotals {
                    key: None,
                    totals: totals(1),
                },
            ],
            ..UsageStats::default()
        };
        let table = summary_table(&stats, GroupBy::Model);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with("MODEL"));
        assert!(
            lines[1].starts_with("gpt-4o") && lines[1].contains(" 20 "),
            "{table}"
        );
        assert!(lines[2].starts_with("(none)"));
        assert!(lines[3].starts_with("TOTAL") && lines[3].contains("0.500000"));
    }
}
