//! Opening sealed payloads for delivery (docs/erasure.md): subscribers
//! (the owner's own sessions, and services and admins the ACL lets read)
//! get the plaintext; a record whose owner was erased is not sent.

use std::borrow::Cow;

use bytes::BytesMut;
use tributary_log::Record;
use tributary_rights::owner_keys::Opener;
use tributary_rights::seal;

use crate::broker::Broker;

impl Broker {
    /// How `record`'s payload opens, or `None` when it must not go out: its
    /// owner's key is destroyed (counted), or could not be read (logged).
    /// Never [`Opener::KeyGone`].
    ///
    /// The owner's key is usually cached. On a miss (an owner this node
    /// has not served for a while) the store is asked while the worker
    /// thread steps aside (`block_in_place`), so the connection's loop
    /// stays synchronous here; on a current-thread runtime, where that is
    /// impossible, a miss is not sent.
    pub(crate) fn payload_opener(&self, record: &Record) -> Option<Opener> {
        let Some(keyring) = self.keyring.get() else {
            return Some(Opener::Plain);
        };
        let opener = match keyring.opener_cached(&record.owner, &record.payload) {
            Some(opener) => Ok(opener),
            None => {
                let handle = tokio::runtime::Handle::current();
                if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
                    tracing::warn!(owner = %record.owner, "owner's key not cached on a current-thread runtime; record not delivered");
                    return None;
                }
                tokio::task::block_in_place(|| {
                    handle.block_on(keyring.opener(&record.owner, &record.payload))
                })
            }
        };
        match opener {
            Ok(Opener::KeyGone) => {
                self.stats.add_erased();
                None
            }
            Ok(opener) => Some(opener),
            Err(e) => {
                tracing::warn!(owner = %record.owner, topic = %record.topic, error = %e, "the owner's key could not be read; not delivered");
                None
            }
        }
    }

    /// The payload `record` goes out with, or `None` when it must not go
    /// out (see [`Broker::payload_opener`]; a payload that does not open,
    /// tampered or truncated, is logged).
    pub(crate) fn opened_payload<'r>(&self, record: &'r Record) -> Option<Cow<'r, [u8]>> {
        match self.payload_opener(record)? {
            Opener::Plain => Some(Cow::Borrowed(&record.payload)),
            Opener::Key(key) => match seal::open(&key, &record.owner, &record.payload) {
                Ok(plain) => Some(Cow::Owned(plain)),
                Err(e) => {
                    not_opened(record, &e);
                    None
                }
            },
            Opener::KeyGone => None,
        }
    }
}

/// Appends the plaintext of `record`'s sealed payload ([`plaintext_len`]
/// bytes) to `out`, opening it in place: no allocation per delivered
/// message. False (logged, `out` as it was) when the payload does not open.
pub(crate) fn open_into(key: &seal::DataKey, record: &Record, out: &mut BytesMut) -> bool {
    let sealed = &record.payload[..];
    let (header, body) = sealed.split_at(sealed.len().min(seal::HEADER_LEN));
    let start = out.len();
    out.extend_from_slice(body);
    match seal::open_in_place(key, &record.owner, header, &mut out[start..]) {
        Ok(len) => {
            out.truncate(start + len);
            true
        }
        Err(e) => {
            out.truncate(start);
            not_opened(record, &e);
            false
        }
    }
}

/// The length of the plaintext of a sealed payload of `sealed_len` bytes.
pub(crate) fn plaintext_len(sealed_len: usize) -> usize {
    sealed_len.saturating_sub(seal::OVERHEAD)
}

fn not_opened(record: &Record, e: &tributary_rights::Error) {
    tracing::warn!(owner = %record.owner, topic = %record.topic, error = %e, "a sealed payload does not open; not delivered");
}
