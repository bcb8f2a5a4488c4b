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
    assert!(table.contains("Targets (issue 6)"), "{table}");
    let report: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();

    let c1 = &report["non_streaming_c1"];
    assert_eq!(c1["requests_per_lane"], 40);
    for lane in ["direct", "proxy", "translation"] {
        assert_eq!(c1[lane]["errors"], 0, "{lane}: {}", c1[lane]["first_error"]);
        assert_eq!(c1[lane]["latency"]["count"], 40);
    }
    assert_eq!(c1["translation"]["api"], "anthropic");

    let throughput = &report["throughput"];
    assert_eq!(throughput["concurrency"], 8);
    for lane in ["direct", "proxy"] {
        assert_eq!(throughput[lane]["errors"], 0);
        assert!(throughput[lane]["ok"].as_u64().unwrap() > 0);
    }

    let streams = &report["streaming_c1"];
    for lane in ["direct", "proxy", "translation"] {
        assert_eq!(
            streams[lane]["errors"], 0,
            "{lane}: {}",
            streams[lane]["first_error"]
        );
        assert_eq!(streams[lane]["streams_ok"], 2);
        // Four chunks make three gaps per stream.
        assert_eq!(streams[lane]["gaps"]["count"], 6);
    }
    let concurrent = &report["streaming_concurrent"];
    assert_eq!(concurrent["proxy"]["streams_ok"], 8);
    assert!(concurrent["translation"].is_null());

    // The mock is no child process of the bench: nothing to read memory from.
    assert!(report["memory"].is_null());
    assert_eq!(report["targets"].as_array().unwrap().len(), 8);
}
