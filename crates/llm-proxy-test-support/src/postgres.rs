//! A scratch PostgreSQL server for tests: `initdb` in a temporary directory, `pg_ctl start` on
//! a free 127.0.0.1 port (its unix socket in the same directory), password authentication over
//! TCP, no fsync; stopped (and the directory removed) on drop. Uses the installed server
//! binaries (Debian's `postgresql` package: `/usr/lib/postgresql/<version>/bin`, or
//! `LLM_PROXY_PG_BIN`). As root, the server runs as the `postgres` user (PostgreSQL refuses
//! to run as root). [`PostgresServer::for_test`] decides what a missing server means: a
//! failure under `CI=true`, a printed skip elsewhere.

use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The superuser the scratch cluster is created with.
pub const PG_USER: &str = "llmproxy";
/// Its password (TCP connections authenticate with SCRAM).
pub const PG_PASSWORD: &str = "pg-secret-5f1c2e9a";

/// Why no server could be started.
#[derive(Debug)]
pub enum PostgresUnavailable {
    /// The server binaries are not installed.
    Missing(String),
    /// They are, but the server did not start.
    Failed(String),
}

impl std::fmt::Display for PostgresUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing(m) | Self::Failed(m) => f.write_str(m),
        }
    }
}

/// A running scratch cluster.
#[derive(Debug)]
pub struct PostgresServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    run_as: Option<(u32, u32)>,
    running: bool,
}

impl PostgresServer {
    /// Starts one for a test. Without the binaries: a panic under `CI=true` (CI must not skip
    /// these), else a printed reason and `None`. A server that is installed but fails to
    /// start always panics.
    #[expect(
        clippy::panic,
        clippy::print_stderr,
        reason = "test support: a missing server fails or skips the test with its reason"
    )]
    pub fn for_test(test: &str) -> Option<Self> {
        match Self::start() {
            Ok(server) => Some(server),
            Err(PostgresUnavailable::Missing(why))
                if std::env::var("CI").as_deref() != Ok("true") =>
            {
                eprintln!("skipping {test}: {why} (CI=true makes this a failure)");
                None
            }
            Err(e) => panic!("{test}: cannot start PostgreSQL: {e}"),
        }
    }

    /// `initdb` and start a cluster.
    pub fn start() -> Result<Self, PostgresUnavailable> {
        let bin = find_bin_dir().ok_or_else(|| {
            PostgresUnavailable::Missing(
                "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install -y postgresql, or set LLM_PROXY_PG_BIN".to_owned(),
            )
        })?;
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            PostgresUnavailable::Failed(format!("{what}: {e}"))
        };
        let dir = tempfile::Builder::new()
            .prefix("llm-proxy-pg")
            .tempdir()
            .map_err(|e| failed("cannot create a temporary directory", &e))?;
        let run_as = if std::fs::metadata(dir.path())
            .map_err(|e| failed("cannot stat the temporary directory", &e))?
            .uid()
            == 0
        {
            let ids = postgres_user().ok_or_else(|| {
                PostgresUnavailable::Failed(
                    "running as root, and there is no 'postgres' user to run the server as"
                        .to_owned(),
                )
            })?;
            std::os::unix::fs::chown(dir.path(), Some(ids.0), Some(ids.1))
                .map_err(|e| failed("cannot hand the temporary directory to postgres", &e))?;
            Some(ids)
        } else {
            None
        };
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, PG_PASSWORD).map_err(|e| failed("cannot write pwfile", &e))?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid))
                .map_err(|e| failed("cannot hand pwfile to postgres", &e))?;
        }
        let mut server = Self {
            bin,
            port: 0,
            run_as,
            running: false,
            dir,
        };
        let data = server.data_dir();
        let out = server
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", PG_USER, "-E", "UTF8", "--no-sync", "--locale=C"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .map_err(|e| failed("cannot run initdb", &e))?;
        check(&out, "initdb")?;
        // A free port can be taken between the probe and the start: try a few.
        let mut last = String::new();
        for _ in 0..5 {
            server.port = free_port().map_err(|e| failed("no free port", &e))?;
            match server.start_again() {
                Ok(()) => return Ok(server),
                Err(e) => last = e.to_string(),
            }
        }
        Err(PostgresUnavailable::Failed(last))
    }

    /// Starts the stopped server again, on the same port and data.
    pub fn start_again(&mut self) -> Result<(), PostgresUnavailable> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -F",
            self.port,
            self.dir.path().display()
        );
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .output()
            .map_err(|e| PostgresUnavailable::Failed(format!("cannot run pg_ctl: {e}")))?;
        check(&out, "pg_ctl start").map_err(|e| {
            let log =
                std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
            PostgresUnavailable::Failed(format!("{e}\nserver log:\n{log}"))
        })?;
        self.running = true;
        Ok(())
    }

    /// Stops the server (fast shutdown: connections are closed), keeping its data.
    pub fn stop(&mut self) {
        self.pg_ctl_stop("fast");
    }

    fn pg_ctl_stop(&mut self, mode: &str) {
        if !self.running {
            return;
        }
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", mode, "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        self.running = false;
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for database `db` (`postgres` always exists), password included.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{}/{db}",
            self.port
        )
    }

    /// Creates database `name` (through `psql` on the unix socket).
    pub fn create_database(&self, name: &str) -> Result<(), PostgresUnavailable> {
        let out = self
            .command("psql")
            .args(["-h"])
            .arg(self.dir.path())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                PG_USER,
                "-d",
                "postgres",
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-c"])
            .arg(format!("CREATE DATABASE \"{name}\""))
            .output()
            .map_err(|e| PostgresUnavailable::Failed(format!("cannot run psql: {e}")))?;
        check(&out, "CREATE DATABASE")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.stdin(Stdio::null()).env("LC_ALL", "C");
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
            // The server's user must be able to stand in the working directory.
            cmd.current_dir(self.dir.path());
        }
        cmd
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.pg_ctl_stop("immediate");
    }
}

fn check(out: &Output, what: &str) -> Result<(), PostgresUnavailable> {
    if out.status.success() {
        Ok(())
    } else {
        Err(PostgresUnavailable::Failed(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `LLM_PROXY_PG_BIN`, else the newest `/usr/lib/postgresql/<version>/bin`, else the directory
/// of an `initdb` on `PATH`: wherever both `initdb` and `pg_ctl` are.
fn find_bin_dir() -> Option<PathBuf> {
    let usable = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("LLM_PROXY_PG_BIN") {
        return Some(PathBuf::from(dir)).filter(|d| usable(d));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, d)| usable(d))
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return Some(dir);
    }
    std::env::var_os("PATH").and_then(|path| std::env::split_paths(&path).find(|d| usable(d)))
}

/// The uid and gid of the `postgres` user (from `/etc/passwd`).
fn postgres_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != "postgres" {
            return None;
        }
        let _password = fields.next()?;
        Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
    })
}
