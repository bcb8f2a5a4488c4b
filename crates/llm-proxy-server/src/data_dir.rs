//! The data directory (`--data-dir`) and the embedded stores opened in it at startup: the
//! Responses answer store (`responses.sqlite3`), the key sealing the reasoning state handed
//! to Responses clients (`responses.key`) and the usage ledger (`usage.sqlite3`, or the
//! PostgreSQL ledger of `database_url` when one is configured). In-process servers without one
//! use [`Stores::in_memory`] (no usage ledger).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use llm_proxy_protocol::openai_responses::Sealer;

use crate::config::GatewayConfig;
use crate::responses_store::{
    DEFAULT_CAPACITY, MemoryResponseStore, ResponseStore, SqliteResponseStore,
};
use crate::sealing::{AeadSealer, KEY_LEN, random_key};
use crate::startup_error::StartupError;

/// File of the Responses answer store.
pub const RESPONSES_DB: &str = "responses.sqlite3";
/// File of the sealing key.
pub const RESPONSES_KEY: &str = "responses.key";
/// File of the usage ledger.
pub const USAGE_DB: &str = "usage.sqlite3";

/// The stores a gateway uses.
#[derive(Debug, Clone)]
pub struct Stores {
    /// Responses answers (`previous_response_id`).
    pub responses: Arc<dyn ResponseStore>,
    /// Seals reasoning state into `encrypted_content`.
    pub sealer: Arc<dyn Sealer>,
    /// The usage ledger (`None`: `usage.enabled: false`, or no data directory).
    pub usage: Option<Arc<dyn crate::usage::UsageStore>>,
}

impl Stores {
    /// Stores that live and die with the process: answers in memory, a random sealing key.
    pub fn in_memory() -> Result<Self, StartupError> {
        Ok(Self {
            responses: Arc::new(MemoryResponseStore::new(DEFAULT_CAPACITY)),
            sealer: Arc::new(AeadSealer::ephemeral().map_err(StartupError::new)?),
            usage: None,
        })
    }

    /// Opens the stores in the configured data directory, creating it (mode 0700) and the key
    /// (mode 0600) on first start. Blocking: call before serving. Errors name the path. With
    /// `database_url` the usage ledger is PostgreSQL, connected in the background (this
    /// needs a Tokio runtime; an unreachable server does not stop the start).
    pub fn open(config: &GatewayConfig) -> Result<Self, StartupError> {
        let dir = config.data_dir.as_deref().ok_or_else(|| {
            StartupError::new(
                "no data directory: the platform has no user data directory; set --data-dir (or LLM_PROXY_DATA_DIR, data_dir)"
                    .to_owned(),
            )
        })?;
        create_private_dir(dir)?;
        let key = load_or_create_key(&dir.join(RESPONSES_KEY))?;
        let sealer = AeadSealer::new(&key).map_err(StartupError::new)?;
        let responses =
            SqliteResponseStore::open(&dir.join(RESPONSES_DB), config.responses_store.clone())
                .map_err(StartupError::new)?;
        let usage: Option<Arc<dyn crate::usage::UsageStore>> = if config.usage.enabled {
            let models = config
                .backends
                .instances
                .values()
                .flat_map(|i| i.models.iter().cloned())
                .collect();
            let store: Arc<dyn crate::usage::UsageStore> = match &config.usage.database_url {
                Some(url) => {
                    let scrubber = config
                        .scrubber()
                        .map_err(|e| StartupError::new(e.to_string()))?;
                    Arc::new(
                        crate::usage::PostgresUsageStore::start(
                            url.expose(),
                            &config.usage,
                            models,
                            scrubber,
                        )
                        .map_err(StartupError::new)?,
                    )
                }
                None => Arc::new(
                    crate::usage::SqliteUsageStore::open(
                        &dir.join(USAGE_DB),
                        &config.usage,
                        models,
                    )
                    .map_err(StartupError::new)?,
                ),
            };
            Some(store)
        } else {
            None
        };
        Ok(Self {
            responses: Arc::new(responses),
            sealer: Arc::new(sealer),
            usage,
        })
    }
}

/// Creates `dir` and missing parents, readable by this user only (an existing directory keeps
/// its mode).
fn create_private_dir(dir: &Path) -> Result<(), StartupError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| {
        StartupError::new(format!(
            "cannot create the data directory '{}': {e}",
            dir.display()
        ))
    })
}

/// Reads the sealing key, or writes a new random one (mode 0600) when there is none.
fn load_or_create_key(path: &Path) -> Result<[u8; KEY_LEN], StartupError> {
    let fail =
        |what: String| StartupError::new(format!("sealing key '{}': {what}", path.display()));
    match std::fs::read(path) {
        Ok(bytes) => {
            return <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| {
                fail(format!(
                    "expected {KEY_LEN} bytes, found {}; remove the file to generate a new key (reasoning state clients hold becomes unreadable)",
                    bytes.len()
                ))
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(format!("cannot read: {e}"))),
    }
    let key = random_key().map_err(fail)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(&key)
                .and_then(|()| file.sync_all())
                .map_err(|e| fail(format!("cannot write: {e}")))?;
            tracing::info!(path = %path.display(), "generated the Responses sealing key");
            Ok(key)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_existing(path),
        Err(e) => Err(fail(format!("cannot create: {e}"))),
    }
}

fn load_existing(path: &Path) -> Result<[u8; KEY_LEN], StartupError> {
    let bytes = std::fs::read(path).map_err(|e| {
        StartupError::new(format!(
            "sealing key '{}': cannot read: {e}",
            path.display()
        ))
    })?;
    <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| {
        StartupError::new(format!(
            "sealing key '{}': expected {KEY_LEN} bytes",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> GatewayConfig {
        GatewayConfig {
            data_dir: Some(dir.to_path_buf()),
            ..GatewayConfig::default()
        }
    }

    #[test]
    fn first_start_creates_a_private_directory_and_key_and_later_starts_reuse_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a").join("llm-proxy");
        let stores = Stores::open(&config(&dir)).unwrap();
        let key = std::fs::read(dir.join(RESPONSES_KEY)).unwrap();
        assert_eq!(key.len(), KEY_LEN);
        assert!(dir.join(RESPONSES_DB).exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&dir.join(RESPONSES_KEY)), 0o600);
        }
        let sealed = stores.sealer.seal(b"state").unwrap();
        drop(stores);
        let again = Stores::open(&config(&dir)).unwrap();
        assert_eq!(std::fs::read(dir.join(RESPONSES_KEY)).unwrap(), key);
        assert_eq!(again.sealer.open(&sealed).unwrap(), b"state");
    }

    #[test]
    fn unusable_paths_are_errors_naming_them() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        let err = Stores::open(&config(&file.join("sub")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("a-file"), "{err}");

        let dir = tmp.path().join("d");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join(RESPONSES_KEY), b"short").unwrap();
        let err = Stores::open(&config(&dir)).unwrap_err().to_string();
        assert!(
            err.contains(RESPONSES_KEY) && err.contains("32 bytes"),
            "{err}"
        );

        let dir = tmp.path().join("e");
        std::fs::create_dir_all(dir.join(RESPONSES_DB)).unwrap();
        let err = Stores::open(&config(&dir)).unwrap_err().to_string();
        assert!(err.contains(RESPONSES_DB), "{err}");

        let none = GatewayConfig::default();
        assert!(
            Stores::open(&none)
                .unwrap_err()
                .to_string()
                .contains("--data-dir")
        );
    }
}
