//! The real binary: SIGTERM ends the process promptly even with a half-sent request and an idle
//! keep-alive connection open.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Long enough that only a hang reaches it.
const HANG: Duration = Duration::from_secs(20);

#[cfg(unix)]
#[test]
fn sigterm_is_not_held_up_by_half_sent_or_idle_connections() {
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_llm-proxy"))
        .arg("--data-dir")
        .arg(data.path())
        .args([
            "--port",
            "0",
            "--header-read-timeout",
            "3600",
            "--idle-timeout",
            "3600",
            "--log-level",
            "warn",
        ])
        .env_clear()
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .rsplit_once("http://")
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .1
        .to_owned();

    let mut half_sent = TcpStream::connect(&addr).unwrap();
    half_sent
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait()));
    let exit = rx
        .recv_timeout(HANG)
        .expect("the proxy did not exit after SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    half_sent.set_read_timeout(Some(HANG)).unwrap();
    assert_eq!(half_sent.read(&mut buf).unwrap_or(0), 0, "closed");
}
