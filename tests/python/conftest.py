"""Fixtures: the built llm-proxy binary started on 127.0.0.1:0 with a YAML config, and a
Python OpenAI-dialect mock upstream."""

import os
import pathlib
import queue
import subprocess
import threading

import pytest

import mock_upstream

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _binary():
    path = os.environ.get("LLM_PROXY_BIN") or str(ROOT / "target" / "debug" / "llm-proxy")
    if not os.path.exists(path):
        pytest.fail("llm-proxy binary not found at %s (run `cargo build --bins` or scripts/test)" % path)
    return path


class Proxy:
    def __init__(self, url, process, config_yaml, args):
        self.url = url
        self.process = process
        # How it was started, for `restart_proxy`.
        self.config_yaml = config_yaml
        self.args = args

    def stop(self, timeout=30):
        """SIGTERM, as a service manager stops it; waits for the exit and returns its code."""
        self.process.terminate()
        return self.process.wait(timeout=timeout)


@pytest.fixture
def upstream():
    url, state, server = mock_upstream.start()
    yield url, state
    server.shutdown()


@pytest.fixture
def start_proxy(tmp_path):
    started = []

    def start(config_yaml, *args):
        cfg = tmp_path / ("config-%d.yaml" % len(started))
        cfg.write_text(config_yaml)
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        # Stores go under the test's temporary directory, never the user's data directory.
        env["LLM_PROXY_DATA_DIR"] = str(tmp_path / "data")
        proc = subprocess.Popen(
            [_binary(), "--config", str(cfg), "--port", "0", "--log-level", "warn", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        started.append(proc)
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(l) for l in proc.stdout], daemon=True).start()
        try:
            line = lines.get(timeout=30)
        except queue.Empty:
            proc.kill()
            pytest.fail("proxy did not start: " + proc.stderr.read())
        prefix = "llm-proxy listening on "
        assert line.startswith(prefix), line
        return Proxy(line[len(prefix):].strip(), proc, config_yaml, args)

    yield start
    for proc in started:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def restart_proxy(start_proxy):
    """Stops a proxy with SIGTERM (asserting a clean exit) and starts the binary again with the
    same config and arguments (so the same data directory); returns the new proxy."""

    def restart(proxy):
        code = proxy.stop()
        assert code == 0, "proxy exited with %s: %s" % (code, proxy.process.stderr.read())
        return start_proxy(proxy.config_yaml, *proxy.args)

    return restart


def openai_backend_config(upstream_url):
    return (
        "backends:\n"
        "  default_backend: openai\n"
        "  openai:\n"
        "    api_url: %s/v1\n"
        "    api_key: sk-upstream-test-key-0000\n" % upstream_url
    )


def openai_responses_backend_config(upstream_url):
    return (
        "backends:\n"
        "  default_backend: openai-responses\n"
        "  openai-responses:\n"
        "    api_url: %s/v1\n"
        "    api_key: sk-upstream-test-key-0000\n" % upstream_url
    )
