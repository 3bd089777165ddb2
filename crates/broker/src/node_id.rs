//! This node's id, made once and kept in `DATA_DIR/node_id`: with Kafka as
//! the log, the node's consumer group (`router-{node id}`) must survive
//! restarts so the node resumes where it was.

use std::path::Path;

/// Reads the node id from the data dir, or makes and saves a new one.
pub(crate) fn load_or_create(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join("node_id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let id = format!("{:016x}", rand_u64());
    let tmp = data_dir.join("node_id.tmp");
    std::fs::write(&tmp, format!("{id}\n"))?;
    std::fs::rename(&tmp, &path)?;
    Ok(id)
}

/// Random enough for a node id: the hash of time, process and address.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_made_once_and_kept() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let first = load_or_create(dir.path())?;
        assert_eq!(first.len(), 16);
        assert_eq!(load_or_create(dir.path())?, first);
        assert!(!dir.path().join("node_id.tmp").exists());
        Ok(())
    }
}
