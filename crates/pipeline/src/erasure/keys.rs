//! The store as the keyring's [`KeyStore`]: wrapped keys live in the
//! measurements store, so every node sharing it sees the same keys and the
//! same erasures.

use std::sync::Arc;

use tributary_rights::owner_keys::{BoxFuture, KeyStore, StoreError, Wrapped};
use tributary_store::erasure::StoredKey;
use tributary_store::Store;

/// [`KeyStore`] on a [`Store`].
#[derive(Debug, Clone)]
pub struct StoreKeys(pub Arc<Store>);

impl KeyStore for StoreKeys {
    fn load<'a>(&'a self, owner: &'a str) -> BoxFuture<'a, Result<Option<Wrapped>, StoreError>> {
        Box::pin(async move {
            let key = self.0.owner_key(owner).await?;
            Ok(key.map(|k| Wrapped {
                key_id: k.key_id,
                bytes: k.wrapped,
            }))
        })
    }

    fn create<'a>(
        &'a self,
        owner: &'a str,
        key: Wrapped,
    ) -> BoxFuture<'a, Result<Wrapped, StoreError>> {
        Box::pin(async move {
            let stored = StoredKey {
                key_id: key.key_id,
                wrapped: key.bytes,
            };
            let kept = self.0.create_owner_key(owner, &stored).await?;
            Ok(Wrapped {
                key_id: kept.key_id,
                bytes: kept.wrapped,
            })
        })
    }
}
