//! `--compare OLD.json`: the headline figures of this run beside those of an earlier run's
//! results file, with the ratio new / old; `--floor`: llm-proxy's beside the floor forwarder's
//! from the same run. Figures are read by JSON path, so a results file from an older version of
//! the benchmark compares on whatever figures it has.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use crate::error::BenchError;
use crate::table::Table;

/// A figure: its label and where it is in a results file.
struct Figure {
    label: String,
    pointer: String,
    /// Stored in milliseconds, shown in microseconds.
    ms: bool,
}

fn figure(label: &str, pointer: &str) -> Figure {
    Figure {
        label: label.to_owned(),
        pointer: pointer.to_owned(),
        ms: false,
    }
}

/// The headline figures, the translated lanes named from `report`.
fn figures(report: &Value) -> Vec<Figure> {
    let mut list = vec![
        Figure {
            label: "proxy's own time p50, c=1 (us)".into(),
            pointer: "/non_streaming_c1/proxy/overhead_header_ms/p50".into(),
            ms: true,
        },
        figure(
            "added p50, non-streaming, c=1 (us)",
            "/non_streaming_c1/proxy_added/p50_us",
        ),
        figure(
            "added p99, non-streaming, c=1 (us)",
            "/non_streaming_c1/proxy_added/p99_us",
        ),
    ];
    if report.pointer("/spaced_c1/proxy_added").is_some() {
        list.extend([
            figure(
                "added p50, c=1, idle before each request (us)",
                "/spaced_c1/proxy_added/p50_us",
            ),
            Figure {
                label: "proxy's own time p50, idle before each request (us)".into(),
                pointer: "/spaced_c1/proxy/overhead_header_ms/p50".into(),
                ms: true,
            },
        ]);
    }
    let lanes = report
        .pointer("/non_streaming_c1/translated")
        .and_then(Value::as_array);
    for (i, lane) in lanes.into_iter().flatten().enumerate() {
        let api = lane["api"].as_str().unwrap_or("?");
        list.push(figure(
            &format!("{api} lane added p50, c=1 (us)"),
            &format!("/non_streaming_c1/translated/{i}/added/p50_us"),
        ));
    }
    list.extend([
        figure(
            "throughput proxy, c=64 (req/s)",
            "/throughput/proxy/requests_per_second",
        ),
        figure("throughput proxy / direct", "/throughput/ratio"),
        Figure {
            label: "proxy CPU per request (us)".into(),
            pointer: "/throughput/cpu/proxy_ms".into(),
            ms: true,
        },
        figure(
            "proxy CPU / mock CPU per request",
            "/throughput/cpu/proxy_over_mock",
        ),
        figure(
            "added TTFT p50, streaming, c=1 (us)",
            "/streaming_c1/proxy_added_first_text/p50_us",
        ),
        figure(
            "added TTFT p99, streaming, c=1 (us)",
            "/streaming_c1/proxy_added_first_text/p99_us",
        ),
        figure(
            "added TTFT p50, streams at once (us)",
            "/streaming_concurrent/proxy_added_first_text/p50_us",
        ),
        figure("resident memory idle (MiB)", "/memory/idle_mib"),
        figure(
            "resident memory after load (MiB)",
            "/memory/after_total_mib",
        ),
    ]);
    list
}

fn value(report: &Value, f: &Figure) -> Option<f64> {
    let v = report.pointer(&f.pointer)?.as_f64()?;
    Some(if f.ms { v * 1000.0 } else { v })
}

/// The comparison table of `new` against the results in `old_path`.
pub fn render(new: &Value, old_path: &Path) -> Result<String, BenchError> {
    let text = std::fs::read_to_string(old_path)
        .map_err(|e| BenchError::io(format!("reading {}", old_path.display()), e))?;
    let old: Value = serde_json::from_str(&text)?;
    Ok(table(
        new,
        &old,
        &format!("Compared with {}", old_path.display()),
        ["old", "new", "new / old", "new - old"],
    ))
}

/// llm-proxy's headline figures (`proxy`) beside the floor forwarder's (`floor`) from the same
/// run: what llm-proxy adds over the least a proxy on its stack costs.
pub fn against_floor(proxy: &Value, floor: &Value) -> String {
    table(
        proxy,
        floor,
        "llm-proxy against the floor (a forwarder on the same stack, same run)",
        [
            "floor",
            "llm-proxy",
            "llm-proxy / floor",
            "llm-proxy - floor",
        ],
    )
}

/// `new` beside `old`, figure by figure: both values, their ratio and their difference.
fn table(new: &Value, old: &Value, title: &str, columns: [&str; 4]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n{title}");
    let [old_name, new_name, ratio_name, difference_name] = columns;
    let mut table = Table::new(&["figure", old_name, new_name, ratio_name, difference_name]);
    let show = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
    for f in figures(new) {
        let (o, n) = (value(old, &f), value(new, &f));
        let ratio = match (o, n) {
            (Some(o), Some(n)) if o != 0.0 => format!("{:.2}x", n / o),
            _ => "-".to_owned(),
        };
        let difference = match (o, n) {
            (Some(o), Some(n)) => format!("{:+.2}", n - o),
            _ => "-".to_owned(),
        };
        table.row(vec![f.label, show(o), show(n), ratio, difference]);
    }
    table.render(&mut out);
    out
}

/// Each headline figure's median over `runs` (results files of one benchmark invocation, of
/// the proxy `name`) with its spread: the table to print and the JSON summary.
pub fn medians(runs: &[Value], name: &str) -> (String, Value) {
    let mut out = String::new();
    let _ = writeln!(out, "\nMedians of {} runs, {name}", runs.len());
    let mut table = Table::new(&["figure", "median", "min", "max", "runs"]);
    let mut summary = serde_json::Map::new();
    let Some(first) = runs.first() else {
        return (out, Value::Object(summary));
    };
    for f in figures(first) {
        let mut values: Vec<f64> = runs.iter().filter_map(|r| value(r, &f)).collect();
        if values.is_empty() {
            continue;
        }
        values.sort_by(f64::total_cmp);
        let mid = values.len() / 2;
        let median = if values.len() % 2 == 1 {
            values[mid]
        } else {
            (values[mid - 1] + values[mid]) / 2.0
        };
        let (min, max) = (values[0], values[values.len() - 1]);
        table.row(vec![
            f.label.clone(),
            format!("{median:.2}"),
            format!("{min:.2}"),
            format!("{max:.2}"),
            values.len().to_string(),
        ]);
        summary.insert(
            f.label,
            serde_json::json!({"median": median, "min": min, "max": max, "values": values}),
        );
    }
    table.render(&mut out);
    (out, Value::Object(summary))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn figures_side_by_side_with_missing_ones_dashed() {
        let new = json!({
            "non_streaming_c1": {"proxy": {"overhead_header_ms": {"p50": 0.030}},
                "proxy_added": {"p50_us": 80.0, "p99_us": 200.0},
                "translated": [{"api": "anthropic", "added": {"p50_us": 90.0}}]},
            "throughput": {"ratio": 0.3, "cpu": {"proxy_ms": 0.06, "proxy_over_mock": 6.0}}
        });
        let old = json!({
            "non_streaming_c1": {"proxy": {"overhead_header_ms": {"p50": 0.040}},
                "proxy_added": {"p50_us": 100.0, "p99_us": 200.0},
                "translated": [{"api": "anthropic", "added": {"p50_us": 120.0}}]},
            "throughput": {"ratio": 0.2}
        });
        let out = table(
            &new,
            &old,
            "old.json",
            ["old", "new", "new / old", "new - old"],
        );
        let line = |label: &str| {
            out.lines()
                .find(|l| l.starts_with(label))
                .unwrap_or_else(|| panic!("{label} in {out}"))
                .split_whitespace()
                .rev()
                .take(4)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            line("proxy's own time p50"),
            ["-10.00", "0.75x", "30.00", "40.00"]
        );
        assert_eq!(
            line("added p50, non-streaming"),
            ["-20.00", "0.80x", "80.00", "100.00"]
        );
        assert_eq!(
            line("anthropic lane added p50"),
            ["-30.00", "0.75x", "90.00", "120.00"]
        );
        assert_eq!(
            line("throughput proxy / direct"),
            ["+0.10", "1.50x", "0.30", "0.20"]
        );
        // A figure the old file does not have.
        assert_eq!(line("proxy CPU per request"), ["-", "-", "60.00", "-"]);
    }

    #[test]
    fn medians_with_spread() {
        let run = |added: f64| json!({"non_streaming_c1": {"proxy_added": {"p50_us": added}}});
        let (text, summary) = medians(&[run(90.0), run(70.0), run(80.0), run(200.0)], "llm-proxy");
        let added = &summary["added p50, non-streaming, c=1 (us)"];
        assert_eq!(added["median"], 85.0);
        assert_eq!(added["min"], 70.0);
        assert_eq!(added["max"], 200.0);
        assert!(text.contains("Medians of 4 runs, llm-proxy"), "{text}");
        // Figures no run has are left out.
        assert!(summary.get("resident memory idle (MiB)").is_none());
    }
}
