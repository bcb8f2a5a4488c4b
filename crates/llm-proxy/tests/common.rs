//! The binary as a child process: started on 127.0.0.1:0, its URL read from the listening
//! line, stopped gracefully with SIGTERM (or killed if a test fails first).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Kills the child if a test fails before stopping it.
pub(crate) struct Running(pub(crate) Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary with `config`, port 0, warnings only and `args`, in an empty environment.
pub(crate) fn start_with<S: AsRef<OsStr>>(config: &Path, args: &[S]) -> (Running, String) {
    start_in(config, args, &[])
}

/// [`start_with`] in an environment holding only `env`.
pub(crate) fn start_in<S: AsRef<OsStr>>(
    config: &Path,
    args: &[S],
    env: &[(&str, &str)],
) -> (Running, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_llm-proxy"))
        .env_clear()
        .envs(env.iter().copied())
        .arg("--config")
        .arg(config)
        .args(args)
        .args(["--port", "0", "--log-level", "warn"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .split_once("listening on ")
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .1
        .to_owned();
    (Running(child), url)
}

/// Starts the binary with `config` and its stores in `data_dir`.
pub(crate) fn start(config: &Path, data_dir: &Path) -> (Running, String) {
    start_with(config, &[OsStr::new("--data-dir"), data_dir.as_os_str()])
}

/// SIGTERM, then waits: a graceful stop (queued captures and usage records are written).
pub(crate) fn stop(mut proxy: Running) {
    let status = Command::new("kill")
        .arg(proxy.0.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    proxy.0.wait().unwrap();
}
