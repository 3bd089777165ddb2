//! The `[erasure]` table and what a node makes of it: the master key (from
//! the environment, the config, a file, or a key file generated in the data
//! dir), and the keyring the broker, the sinks and the API share
//! (docs/erasure.md).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use serde::Deserialize;
use tributary_rights::keyring::MasterKey;
use tributary_rights::owner_keys::{Keyring, Sealing};
use tributary_store::Store;

/// The environment variable that holds the master key (64 hex digits); it
/// wins over the config file.
pub const MASTER_KEY_ENV: &str = "TRIBUTARY_MASTER_KEY";
/// The key file generated in the data dir when no key is configured.
pub const DEFAULT_KEY_FILE: &str = "master.key";

/// The `[erasure]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErasureFileConfig {
    /// Seal personal payloads before they are appended to the log (on by
    /// default). Off, new payloads are appended in the clear; what was
    /// sealed before still opens, and erasure still deletes the store's
    /// and the archive's rows, but the log's plaintext copies stay until
    /// retention removes them.
    pub encrypt: bool,
    /// The master key, 64 hexadecimal digits. Better kept out of the file:
    /// `TRIBUTARY_MASTER_KEY` or `master_key_file`.
    pub master_key: Option<String>,
    /// A file holding the master key (relative to the data dir).
    /// Default: `DATA_DIR/master.key`, generated (0600) when missing.
    pub master_key_file: Option<PathBuf>,
}

impl Default for ErasureFileConfig {
    fn default() -> Self {
        ErasureFileConfig {
            encrypt: true,
            master_key: None,
            master_key_file: None,
        }
    }
}

impl ErasureFileConfig {
    /// Checks what can be checked without reading files.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.master_key.is_some() && self.master_key_file.is_some() {
            anyhow::bail!("erasure: set master_key or master_key_file, not both");
        }
        if let Some(hex) = &self.master_key {
            MasterKey::from_hex(hex).context("erasure.master_key")?;
        }
        Ok(())
    }

    /// The master key: `TRIBUTARY_MASTER_KEY`, else `master_key`, else the
    /// key file (`master_key_file`, or `DATA_DIR/master.key`, which is
    /// generated when missing — only the default file is).
    pub fn master_key(&self, data_dir: &Path) -> anyhow::Result<MasterKey> {
        if let Ok(hex) = std::env::var(MASTER_KEY_ENV) {
            return MasterKey::from_hex(&hex).context(MASTER_KEY_ENV);
        }
        if let Some(hex) = &self.master_key {
            return MasterKey::from_hex(hex).context("erasure.master_key");
        }
        match &self.master_key_file {
            Some(file) => read_key_file(&data_dir.join(file)),
            None => read_or_make_key_file(&data_dir.join(DEFAULT_KEY_FILE)),
        }
    }

    /// The node's keyring on `store`.
    pub fn keyring(&self, data_dir: &Path, store: Arc<Store>) -> anyhow::Result<Arc<Keyring>> {
        let master = self.master_key(data_dir)?;
        let sealing = if self.encrypt {
            Sealing::On
        } else {
            Sealing::Off
        };
        Ok(Arc::new(Keyring::new(
            master,
            sealing,
            Arc::new(tributary_pipeline::erasure::StoreKeys(store)),
        )))
    }
}

fn read_key_file(path: &Path) -> anyhow::Result<MasterKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read the master key file {}", path.display()))?;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "the master key file can be read by other users: chmod 600 it");
        }
    }
    MasterKey::from_hex(&text).with_context(|| format!("the master key file {}", path.display()))
}

fn read_or_make_key_file(path: &Path) -> anyhow::Result<MasterKey> {
    if path.exists() {
        return read_key_file(path);
    }
    let key = MasterKey::generate()?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create the master key file {}", path.display()))?;
    file.write_all(format!("{}\n", key.to_hex()).as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("write the master key file {}", path.display()))?;
    if let Some(dir) = path.parent() {
        // The new name must survive a crash too, or the key is lost with it.
        std::fs::File::open(dir).and_then(|d| d.sync_all()).ok();
    }
    tracing::warn!(path = %path.display(),
        "generated a master key: back this file up; without it the encrypted payloads in the log cannot be read");
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_file_is_private_and_read_back() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let config = ErasureFileConfig::default();
        let first = config.master_key(dir.path())?;
        let path = dir.path().join(DEFAULT_KEY_FILE);
        assert_eq!(
            std::fs::metadata(&path)?.permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(config.master_key(dir.path())?.to_hex(), first.to_hex());
        Ok(())
    }

    #[test]
    fn bad_keys_are_named() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let config = ErasureFileConfig {
            master_key: Some("abc".into()),
            ..Default::default()
        };
        let err = format!("{:#}", config.validate().unwrap_err());
        assert!(
            err.contains("erasure.master_key") && err.contains("64 hexadecimal"),
            "{err}"
        );
        std::fs::write(dir.path().join("k"), "nothex")?;
        let config = ErasureFileConfig {
            master_key_file: Some("k".into()),
            ..Default::default()
        };
        let err = format!("{:#}", config.master_key(dir.path()).unwrap_err());
        assert!(err.contains("master key file"), "{err}");
        let missing = ErasureFileConfig {
            master_key_file: Some("absent".into()),
            ..Default::default()
        };
        assert!(
            missing.master_key(dir.path()).is_err(),
            "only the default file is generated"
        );
        Ok(())
    }
}
