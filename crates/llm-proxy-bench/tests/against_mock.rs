//! Runs the whole benchmark with the mock standing in for the proxy (small counts) and checks
//! that every lane completed without errors and the JSON has the documented shape. No timing
//! assertions: the machines here are noisy, and the benchmark is the place for numbers.

use std::process::Command;

use serde_json::Value;

#[test]
fn quick_run_against_the_mock_reports_every_lane() {
    let dir = std::env::temp_dir().join(format!("llm-proxy-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("results.json");
    let output = Command::new(env!("CARGO_BIN_EXE_llm-proxy-bench"))
        .args([
            "--proxy-url",
            "mock",
            "--quick",
            "--requests",
            "40",
            "--warmup",
            "5",
        ])
        .args(["--duration-secs", "0.3", "--streams", "2", "--chunks", "4"])
        .args(["--chunk-interval-ms", "5", "--concurrency", "8"])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let table = String::from_utf8(output.stdout).unwrap();
    assert!(table.contains("Targets (issue 15)"), "{table}");
    assert!(table.contains("CPU per request"), "{table}");
    let report: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();

    // Twice more, with medians, a comparison against the first run's file, and the floor
    // forwarder (a child process of the bench) measured in each run.
    let again = dir.join("again.json");
    let output = Command::new(env!("CARGO_BIN_EXE_llm-proxy-bench"))
        .args([
            "--proxy-url",
            "mock",
            "--quick",
            "--requests",
            "20",
            "--warmup",
            "2",
        ])
        .args(["--duration-secs", "0.2", "--streams", "1", "--chunks", "2"])
        .args([
            "--chunk-interval-ms",
            "5",
            "--concurrency",
            "4",
            "--runs",
            "2",
            "--total-requests",
            "300",
            "--floor",
        ])
        .arg("--compare")
        .arg(&out)
        .arg("--out")
        .arg(&again)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let table = String::from_utf8(output.stdout).unwrap();
    assert!(table.contains("Medians of 2 runs, llm-proxy"), "{table}");
    assert!(
        table.contains("Medians of 2 runs, the floor forwarder"),
        "{table}"
    );
    assert!(table.contains("Compared with"), "{table}");
    assert_eq!(
        table
            .matches("llm-proxy against the floor (a forwarder on the same stack, same run)")
            .count(),
        2,
        "one comparison per run: {table}"
    );
    // The forwarder passed every lane's requests and streams through untouched.
    let floor: Value =
        serde_json::from_slice(&std::fs::read(dir.join("again.floor.json")).unwrap()).unwrap();
    assert!(
        floor["machine"]["proxy"]
            .as_str()
            .unwrap()
            .starts_with("the floor forwarder (pid "),
        "{floor}"
    );
    let c1 = &floor["non_streaming_c1"];
    for lane in [&c1["proxy"]]
        .into_iter()
        .chain(c1["translated"].as_array().unwrap())
    {
        assert_eq!(lane["errors"], 0, "{lane}");
        assert_eq!(lane["latency"]["count"], 20, "{lane}");
    }
    let streams = &floor["streaming_c1"];
    for lane in [&streams["proxy"]]
        .into_iter()
        .chain(streams["translated"].as_array().unwrap())
    {
        assert_eq!(lane["errors"], 0, "{lane}");
        assert_eq!(lane["streams_ok"], 1, "{lane}");
    }
    assert_eq!(floor["throughput"]["proxy"]["errors"], 0, "{floor}");
    assert!(
        floor["throughput"]["cpu"]["proxy_ms"].is_number(),
        "{floor}"
    );
    // A child process: its memory is read too.
    assert!(
        floor["memory"]["idle_mib"].as_f64().unwrap() > 0.0,
        "{floor}"
    );
    let summary: Value =
        serde_json::from_slice(&std::fs::read(dir.join("again.summary.json")).unwrap()).unwrap();
    let added = &summary["added p50, non-streaming, c=1 (us)"];
    assert_eq!(added["values"].as_array().unwrap().len(), 2, "{summary}");
    assert!(added["min"].as_f64().unwrap() <= added["median"].as_f64().unwrap());
    std::fs::remove_dir_all(&dir).unwrap();

    let c1 = &report["non_streaming_c1"];
    assert_eq!(c1["requests_per_lane"], 40);
    let translated = c1["translated"].as_array().unwrap();
    for lane in [&c1["direct"], &c1["proxy"]].into_iter().chain(translated) {
        assert_eq!(
            lane["errors"], 0,
            "{}: {}",
            lane["api"], lane["first_error"]
        );
        assert_eq!(lane["latency"]["count"], 40);
    }
    let apis: Vec<_> = translated.iter().map(|lane| lane["api"].clone()).collect();
    assert_eq!(apis, ["anthropic", "responses"]);
    for lane in translated {
        assert!(lane["added"]["p99_us"].is_number(), "{lane}");
        // Each translated protocol also has its own direct baseline on the mock.
        assert_eq!(lane["direct_same_api"]["api"], lane["api"], "{lane}");
        assert_eq!(lane["direct_same_api"]["errors"], 0, "{lane}");
        assert!(lane["added_vs_same_api"]["p50_us"].is_number(), "{lane}");
    }

    let throughput = &report["throughput"];
    assert_eq!(throughput["concurrency"], 8);
    // The mock's CPU per request is read from its thread (the "proxy" here has no process).
    assert!(
        throughput["cpu"]["mock_direct_ms"].is_number(),
        "{throughput}"
    );
    assert!(throughput["cpu"]["proxy_ms"].is_null(), "{throughput}");
    for lane in ["direct", "proxy"] {
        assert_eq!(throughput[lane]["errors"], 0);
        assert!(throughput[lane]["ok"].as_u64().unwrap() > 0);
    }

    let streams = &report["streaming_c1"];
    let translated = streams["translated"].as_array().unwrap();
    let apis: Vec<_> = translated.iter().map(|lane| lane["api"].clone()).collect();
    assert_eq!(apis, ["anthropic", "responses"]);
    for lane in [&streams["direct"], &streams["proxy"]]
        .into_iter()
        .chain(translated)
    {
        assert_eq!(
            lane["errors"], 0,
            "{}: {}",
            lane["api"], lane["first_error"]
        );
        assert_eq!(lane["streams_ok"], 2);
        // Four chunks make three gaps per stream: only text events count.
        assert_eq!(lane["gaps"]["count"], 6);
    }
    let concurrent = &report["streaming_concurrent"];
    assert_eq!(concurrent["proxy"]["streams_ok"], 8);
    assert_eq!(concurrent["translated"], serde_json::json!([]));

    // The mock is no child process of the bench: nothing to read memory from.
    assert!(report["memory"].is_null());
    // Five latency targets, a ratio per translated lane for requests and for TTFT, throughput,
    // CPU per request and three memory targets.
    assert_eq!(report["targets"].as_array().unwrap().len(), 14);
}
