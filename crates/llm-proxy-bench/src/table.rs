//! Renders a [`Report`] as plain-text tables for a terminal.

use std::fmt::Write as _;

use crate::report::{LatencyLane, LoadLane, Report, StreamLane, StreamLanes};
use crate::stats::{Added, FloatSummary};

pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let s = &report.settings;
    let _ = writeln!(
        out,
        "llm-proxy-bench: {} core(s); proxy = {}; mock streams {} chunks x {} ms",
        report.machine.cores,
        report.machine.proxy,
        s.chunks,
        s.chunk_interval.as_millis()
    );
    non_streaming(&mut out, report);
    spaced(&mut out, report);
    throughput(&mut out, report);
    streaming(&mut out, &report.streaming_c1);
    streaming(&mut out, &report.streaming_concurrent);
    memory(&mut out, report);
    targets(&mut out, report);
    errors(&mut out, report);
    out
}

fn spaced(out: &mut String, report: &Report) {
    let Some(lanes) = &report.spaced_c1 else {
        return;
    };
    let mut table = Table::new(&["lane", "p50", "p90", "p99", "max", "errors", "own p50"]);
    for (name, lane, added) in [
        ("direct", &lanes.direct, None),
        ("proxy", &lanes.proxy, lanes.proxy_added),
    ] {
        let mut cells = latency_cells(format!("{name} {}", lane.api.label()), lane);
        cells.push(us(lane.overhead_header_ms.map(|o| o.p50 * 1000.0)));
        table.row(cells);
        if let Some(a) = added {
            table.row(added_cells(a, 2));
        }
    }
    let _ = writeln!(
        out,
        "\nNon-streaming, concurrency 1, {} ms idle before each request (caches cold, as between an agent's calls): latency in us ({} requests per lane; own p50: the proxy's x-llm-proxy-overhead-ms)",
        lanes.pause.as_millis(),
        lanes.requests_per_lane
    );
    table.render(out);
}

/// A latency lane's row: its name, p50, p90, p99, max and errors.
fn latency_cells(name: String, lane: &LatencyLane) -> Vec<String> {
    let l = lane.latency;
    vec![
        name,
        us(l.map(|l| l.p50_us)),
        us(l.map(|l| l.p90_us)),
        us(l.map(|l| l.p99_us)),
        us(l.map(|l| l.max_us)),
        lane.errors.to_string(),
    ]
}

/// The "added" row under a proxy lane, with `blank` empty cells after its max.
fn added_cells(a: Added, blank: usize) -> Vec<String> {
    let mut cells = vec![
        "  added".into(),
        plus(a.p50_us),
        plus(a.p90_us),
        plus(a.p99_us),
        plus(a.max_us),
    ];
    cells.resize(cells.len() + blank, String::new());
    cells
}

fn non_streaming(out: &mut String, report: &Report) {
    let lanes = &report.non_streaming_c1;
    let mut table = Table::new(&["lane", "p50", "p90", "p99", "max", "errors"]);
    let mut lane = |name: String, lane: &LatencyLane, added: Option<Added>| {
        table.row(latency_cells(name, lane));
        if let Some(a) = added {
            table.row(added_cells(a, 1));
        }
    };
    lane(
        format!("direct {}", lanes.direct.api.label()),
        &lanes.direct,
        None,
    );
    lane(
        format!("proxy  {}", lanes.proxy.api.label()),
        &lanes.proxy,
        lanes.proxy_added,
    );
    for t in &lanes.translated {
        lane(format!("proxy  {}", t.lane.api.label()), &t.lane, t.added);
    }
    for t in &lanes.translated {
        lane(
            format!("direct {}", t.direct_same_api.api.label()),
            &t.direct_same_api,
            None,
        );
    }
    let _ = writeln!(
        out,
        "\nNon-streaming, concurrency 1: latency in us ({} requests per lane, lanes interleaved)",
        lanes.requests_per_lane
    );
    table.render(out);
    for t in &lanes.translated {
        let _ = writeln!(
            out,
            "{} / same-protocol added p99: {}",
            t.lane.api.label(),
            ratio(t.ratio_p99)
        );
    }
    for t in &lanes.translated {
        let _ = writeln!(
            out,
            "{} added p50 over a direct {} call: {} ({} the OpenAI lane's)",
            t.lane.api.label(),
            t.direct_same_api.api.label(),
            t.added_vs_same_api
                .map_or_else(|| "n/a".to_owned(), |a| format!("+{:.1} us", a.p50_us)),
            ratio(t.ratio_p50_vs_same_api)
        );
    }
    let _ = write!(
        out,
        "x-llm-proxy-overhead-ms: {} {}",
        lanes.proxy.api.label(),
        header(lanes.proxy.overhead_header_ms),
    );
    for t in &lanes.translated {
        let _ = write!(
            out,
            "; {} {}",
            t.lane.api.label(),
            header(t.lane.overhead_header_ms)
        );
    }
    out.push('\n');
}

fn throughput(out: &mut String, report: &Report) {
    let t = &report.throughput;
    let _ = writeln!(
        out,
        "\nThroughput, concurrency {} ({:.1} s per lane)",
        t.concurrency,
        report.settings.duration.as_secs_f64()
    );
    let mut table = Table::new(&["lane", "req/s", "p50 us", "p99 us", "errors"]);
    let mut lane = |name: &str, lane: &LoadLane| {
        table.row(vec![
            name.into(),
            format!("{:.0}", lane.requests_per_second),
            us(lane.latency.map(|l| l.p50_us)),
            us(lane.latency.map(|l| l.p99_us)),
            lane.errors.to_string(),
        ]);
    };
    lane("direct OpenAI", &t.direct);
    lane("proxy  OpenAI", &t.proxy);
    table.render(out);
    let _ = writeln!(out, "proxy / direct: {}", ratio(t.ratio));
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.4}"));
    let _ = writeln!(
        out,
        "CPU per request (ms, user+sys): mock {} direct / {} proxied; proxy {} ({} the mock's)",
        ms(t.cpu.mock_direct_ms),
        ms(t.cpu.mock_proxied_ms),
        ms(t.cpu.proxy_ms),
        ratio(t.cpu.proxy_over_mock)
    );
}

fn streaming(out: &mut String, lanes: &StreamLanes) {
    let _ = writeln!(
        out,
        "\nStreaming, concurrency {}: {} chunks x {:.0} ms; times in us; stall = gap > {:.0} ms",
        lanes.concurrency, lanes.chunks, lanes.chunk_interval_ms, lanes.stall_threshold_ms
    );
    let mut table = Table::new(&[
        "lane", "streams", "TTFT p50", "TTFT p99", "gap p50", "gap p99", "stalls", "errors",
    ]);
    let mut lane = |lane: &StreamLane, name: &str, ttft: Option<Added>, gap: Option<Added>| {
        table.row(vec![
            format!("{name} {}", lane.api.label()),
            lane.streams_ok.to_string(),
            us(lane.first_text.map(|s| s.p50_us)),
            us(lane.first_text.map(|s| s.p99_us)),
            us(lane.gaps.map(|s| s.p50_us)),
            us(lane.gaps.map(|s| s.p99_us)),
            lane.stalls.to_string(),
            lane.errors.to_string(),
        ]);
        if ttft.is_some() || gap.is_some() {
            table.row(vec![
                "  added".into(),
                String::new(),
                ttft.map_or_else(na, |a| plus(a.p50_us)),
                ttft.map_or_else(na, |a| plus(a.p99_us)),
                gap.map_or_else(na, |a| plus(a.p50_us)),
                gap.map_or_else(na, |a| plus(a.p99_us)),
                String::new(),
                String::new(),
            ]);
        }
    };
    lane(&lanes.direct, "direct", None, None);
    lane(
        &lanes.proxy,
        "proxy ",
        lanes.proxy_added_first_text,
        lanes.proxy_added_gap,
    );
    for t in &lanes.translated {
        lane(&t.lane, "proxy ", t.added_first_text, t.added_gap);
    }
    table.render(out);
    for t in &lanes.translated {
        let _ = writeln!(
            out,
            "{} / same-protocol added TTFT p99: {}",
            t.lane.api.label(),
            ratio(t.ratio_first_text_p99)
        );
    }
}

fn memory(out: &mut String, report: &Report) {
    let Some(m) = &report.memory else {
        let _ = writeln!(
            out,
            "\nProxy memory: not measured (no proxy process of our own)"
        );
        return;
    };
    let _ = writeln!(out, "\nProxy resident memory (MiB)");
    let mut table = Table::new(&["reading", "MiB"]);
    table.row(vec!["idle after startup".into(), mib(m.idle_mib)]);
    table.row(vec![
        "  of which own memory (RssAnon)".into(),
        mib(m.idle_anon_mib),
    ]);
    table.row(vec![
        "  of which file-backed, the binary's code (RssFile)".into(),
        mib(m.idle_file_mib),
    ]);
    table.row(vec![
        format!("peak sampled, c={}", report.throughput.concurrency),
        mib(m.peak_sampled_under_load_mib),
    ]);
    table.row(vec![
        "high-water mark (VmHWM)".into(),
        mib(m.high_water_mib),
    ]);
    table.row(vec![
        format!("after warm-up ({} requests)", m.requests_at_warmup),
        mib(m.after_warmup_mib),
    ]);
    table.row(vec![
        format!("after {} requests", m.requests_at_total),
        mib(m.after_total_mib),
    ]);
    table.row(vec![
        "  of which own memory (RssAnon)".into(),
        mib(m.after_total_anon_mib),
    ]);
    table.row(vec![
        "growth after warm-up".into(),
        m.growth_mib.map_or_else(na, |g| format!("{g:+.2}")),
    ]);
    table.render(out);
    let _ = writeln!(
        out,
        "soak: {} requests at {:.0} req/s, {} errors",
        m.soak.ok, m.soak.requests_per_second, m.soak.errors
    );
}

fn targets(out: &mut String, report: &Report) {
    let _ = writeln!(out, "\nTargets (issue 15)");
    let mut table = Table::with_text_columns(&["", "target", "value", "limit"], 2);
    for check in &report.targets {
        let verdict = match check.pass {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "n/a",
        };
        let value = check
            .value
            .map_or_else(na, |v| format!("{v:.2} {}", check.unit));
        let op = if check.at_most { "<=" } else { ">=" };
        table.row(vec![
            verdict.into(),
            check.name.clone(),
            value,
            format!("{op} {} {}", check.limit, check.unit),
        ]);
    }
    table.render(out);
}

fn errors(out: &mut String, report: &Report) {
    let n = &report.non_streaming_c1;
    let mut firsts: Vec<(String, &Option<String>)> = vec![
        (
            format!("c=1 direct {}", n.direct.api.label()),
            &n.direct.first_error,
        ),
        (
            format!("c=1 proxy {}", n.proxy.api.label()),
            &n.proxy.first_error,
        ),
    ];
    for t in &n.translated {
        firsts.push((
            format!("c=1 proxy {}", t.lane.api.label()),
            &t.lane.first_error,
        ));
    }
    firsts.push((
        "throughput direct".into(),
        &report.throughput.direct.first_error,
    ));
    firsts.push((
        "throughput proxy".into(),
        &report.throughput.proxy.first_error,
    ));
    for lanes in [&report.streaming_c1, &report.streaming_concurrent] {
        let c = lanes.concurrency;
        firsts.push((format!("streams c={c} direct"), &lanes.direct.first_error));
        firsts.push((format!("streams c={c} proxy"), &lanes.proxy.first_error));
        for t in &lanes.translated {
            firsts.push((
                format!("streams c={c} proxy {}", t.lane.api.label()),
                &t.lane.first_error,
            ));
        }
    }
    if let Some(m) = &report.memory {
        firsts.push(("soak".into(), &m.soak.first_error));
    }
    let failed: Vec<_> = firsts
        .into_iter()
        .filter_map(|(lane, error)| Some((lane, error.as_deref()?)))
        .collect();
    if failed.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nFirst error per lane");
    for (lane, error) in failed {
        let _ = writeln!(out, "  {lane}: {error}");
    }
}

/// Text columns left-aligned, figures right-aligned.
pub(crate) struct Table {
    rows: Vec<Vec<String>>,
    text_columns: usize,
}

impl Table {
    /// The first column is text, the rest are figures.
    pub(crate) fn new(header: &[&str]) -> Self {
        Self::with_text_columns(header, 1)
    }

    fn with_text_columns(header: &[&str], text_columns: usize) -> Self {
        Self {
            rows: vec![header.iter().map(|&h| h.to_owned()).collect()],
            text_columns,
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(crate) fn render(&self, out: &mut String) {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|row| row.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                let width = widths[c];
                let gap = if c == 0 { "" } else { "  " };
                if c < self.text_columns {
                    let _ = write!(line, "{gap}{cell:<width$}");
                } else {
                    let _ = write!(line, "{gap}{cell:>width$}");
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
}

fn na() -> String {
    "n/a".into()
}

fn us(value: Option<f64>) -> String {
    value.map_or_else(na, |v| format!("{v:.1}"))
}

fn plus(value: f64) -> String {
    format!("{value:+.1}")
}

fn mib(value: Option<f64>) -> String {
    value.map_or_else(na, |v| format!("{v:.1}"))
}

fn ratio(value: Option<f64>) -> String {
    value.map_or_else(na, |v| format!("{v:.2}x"))
}

fn header(summary: Option<FloatSummary>) -> String {
    summary.map_or_else(
        || "absent".into(),
        |s| format!("p50 {:.3} ms, p99 {:.3} ms", s.p50, s.p99),
    )
}
