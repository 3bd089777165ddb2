//! Opening sealed payloads for delivery (docs/erasure.md): subscribers
//! (the owner's own sessions, and services and admins the ACL lets read)
//! get the plaintext; a record whose owner was erased is not sent.

use std::borrow::Cow;

use tributary_log::Record;
use tributary_rights::owner_keys::Opened;

use crate::broker::Broker;

impl Broker {
    /// The payload `record` goes out with, or `None` when it must not go
    /// out: its owner's key is destroyed (counted), or it does not open
    /// (tampered or a key the store cannot unwrap; logged).
    ///
    /// The owner's key is usually cached. On a miss (an owner this node
    /// has not served for a while) the store is asked while the worker
    /// thread steps aside (`block_in_place`), so the connection's loop
    /// stays synchronous here; on a current-thread runtime, where that is
    /// impossible, a miss is not sent.
    pub(crate) fn opened_payload<'r>(&self, record: &'r Record) -> Option<Cow<'r, [u8]>> {
        let Some(keyring) = self.keyring.get() else {
            return Some(Cow::Borrowed(&record.payload));
        };
        let opened = match keyring.open_cached(&record.owner, &record.payload) {
            Some(opened) => opened,
            None => {
                let handle = tokio::runtime::Handle::current();
                if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
                    tracing::warn!(owner = %record.owner, "owner's key not cached on a current-thread runtime; record not delivered");
                    return None;
                }
                tokio::task::block_in_place(|| {
                    handle.block_on(keyring.open(&record.owner, &record.payload))
                })
            }
        };
        match opened {
            Ok(Opened::Plain) => Some(Cow::Borrowed(&record.payload)),
            Ok(Opened::Unsealed(plain)) => Some(Cow::Owned(plain)),
            Ok(Opened::KeyGone) => {
                self.stats.add_erased();
                None
            }
            Err(e) => {
                tracing::warn!(owner = %record.owner, topic = %record.topic, error = %e, "a sealed payload does not open; not delivered");
                None
            }
        }
    }
}
