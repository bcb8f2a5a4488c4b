//! Runs `llm-proxy` as a child process on a generated config pointing at the mock (or `--floor`'s
//! forwarder), and stops it when dropped (on every path out of the bench, errors included).

use std::io::{BufRead as _, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::error::BenchError;

const LISTENING: &str = "listening on ";

pub struct ProxyProcess {
    child: Child,
    addr: SocketAddr,
    /// The generated config, removed with its data directory when the process stops.
    config_path: Option<PathBuf>,
}

impl ProxyProcess {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(path) = &self.config_path {
            let _ = std::fs::remove_file(path);
            let _ = std::fs::remove_dir_all(path.with_extension("data"));
        }
    }
}

/// `llm-proxy` beside this executable, where `cargo build --release -p llm-proxy` puts it.
pub fn default_binary() -> Result<PathBuf, BenchError> {
    let exe = std::env::current_exe().map_err(|e| BenchError::io("locating this executable", e))?;
    let binary = exe.with_file_name(format!("llm-proxy{}", std::env::consts::EXE_SUFFIX));
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(BenchError::Proxy(format!(
            "{} not found; build it with `cargo build --release -p llm-proxy` or pass --proxy-bin",
            binary.display()
        )))
    }
}

/// Starts the proxy on port 0 and waits for the line that says which port it got.
pub fn spawn(
    binary: &Path,
    upstream: SocketAddr,
    startup_timeout: Duration,
) -> Result<ProxyProcess, BenchError> {
    spawn_with(binary, upstream, startup_timeout, "")
}

/// [`spawn`] with extra top-level YAML appended to the generated config.
pub fn spawn_with(
    binary: &Path,
    upstream: SocketAddr,
    startup_timeout: Duration,
    extra_yaml: &str,
) -> Result<ProxyProcess, BenchError> {
    let config_path =
        std::env::temp_dir().join(format!("llm-proxy-bench-{}.yaml", std::process::id()));
    std::fs::write(&config_path, config_yaml(upstream) + extra_yaml)
        .map_err(|e| BenchError::io(format!("writing {}", config_path.display()), e))?;
    // The proxy's stores go to a scratch directory, not the user's data directory.
    let data_dir = config_path.with_extension("data");
    let mut command = Command::new(binary);
    command
        .arg("--config")
        .arg(&config_path)
        .arg("--data-dir")
        .arg(&data_dir);
    launch(
        command,
        &binary.display().to_string(),
        Some(config_path),
        startup_timeout,
    )
}

/// `--floor`'s forwarder ([`crate::forward`]): this executable again, forwarding to `upstream`.
pub fn spawn_forwarder(
    upstream: SocketAddr,
    startup_timeout: Duration,
) -> Result<ProxyProcess, BenchError> {
    let exe = std::env::current_exe().map_err(|e| BenchError::io("locating this executable", e))?;
    let mut command = Command::new(&exe);
    command.arg("--forward-to").arg(upstream.to_string());
    launch(command, "the forwarder", None, startup_timeout)
}

/// Starts `command` and waits for the line that says which port it listens on; `config_path`
/// (and its data directory) are removed with the process.
fn launch(
    mut command: Command,
    label: &str,
    config_path: Option<PathBuf>,
    startup_timeout: Duration,
) -> Result<ProxyProcess, BenchError> {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            if let Some(path) = &config_path {
                let _ = std::fs::remove_file(path);
            }
            return Err(BenchError::io(format!("starting {label}"), e));
        }
    };
    let stdout = child.stdout.take();
    // From here on, dropping `process` kills the child.
    let mut process = ProxyProcess {
        child,
        addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        config_path,
    };
    let stdout = stdout.ok_or_else(|| BenchError::Proxy("no stdout pipe".into()))?;
    let (port_tx, port_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("proxy-stdout".into())
        .spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let Ok(line) = line else { return };
                if let Some(port) = listening_port(&line) {
                    let _ = port_tx.send(port);
                    break;
                }
            }
            // Keep draining so the proxy never blocks on a full pipe.
            for _ in lines {}
        })
        .map_err(|e| BenchError::io("starting the stdout reader", e))?;
    match port_rx.recv_timeout(startup_timeout) {
        Ok(port) => {
            process.addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            Ok(process)
        }
        Err(_) => {
            let exited = process.child.try_wait().ok().flatten();
            Err(BenchError::Proxy(match exited {
                Some(status) => format!("exited during startup ({status}); see its stderr above"),
                None => {
                    format!("printed no `{LISTENING}http://...` line within {startup_timeout:?}")
                }
            }))
        }
    }
}

fn config_yaml(upstream: SocketAddr) -> String {
    format!(
        "host: 127.0.0.1\n\
         port: 0\n\
         logging: {{ level: warn }}\n\
         backends:\n  \
           default_backend: openai\n  \
           openai: {{ api_url: \"http://{upstream}/v1\", api_key: \"bench-key\" }}\n"
    )
}

/// The port in `llm-proxy listening on http://127.0.0.1:PORT`.
fn listening_port(line: &str) -> Option<u16> {
    let url = line.split_once(LISTENING)?.1.split_whitespace().next()?;
    let authority = url.strip_prefix("http://")?.trim_end_matches('/');
    authority.rsplit_once(':')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_port_in_the_listening_line() {
        assert_eq!(
            listening_port("llm-proxy listening on http://127.0.0.1:41234"),
            Some(41234)
        );
        assert_eq!(
            listening_port("llm-proxy listening on http://127.0.0.1:8080/ (pid 7)"),
            Some(8080)
        );
        assert_eq!(listening_port("starting"), None);
    }

    #[test]
    fn config_points_at_the_mock() {
        let yaml = config_yaml(SocketAddr::from((Ipv4Addr::LOCALHOST, 9999)));
        assert!(yaml.contains("api_url: \"http://127.0.0.1:9999/v1\""));
        let parsed: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(parsed["port"].as_u64(), Some(0));
        assert_eq!(parsed["logging"]["level"].as_str(), Some("warn"));
        assert_eq!(
            parsed["backends"]["default_backend"].as_str(),
            Some("openai")
        );
        assert_eq!(
            parsed["backends"]["openai"]["api_url"].as_str(),
            Some("http://127.0.0.1:9999/v1")
        );
    }
}
