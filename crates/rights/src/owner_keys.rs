//! [`Keyring`]: the one place a node gets owners' data keys, for sealing
//! what it appends and opening what it reads. It holds the master key and a
//! bounded [`KeyCache`] in front of a [`KeyStore`] (the measurements store,
//! shared by every node), which it reaches only through that trait.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::keyring::{KeyCache, MasterKey, OwnerKey};
use crate::seal::{self, DataKey, Sealer};
use crate::{Error, Result};

/// What a [`KeyStore`] fails with: its own error, boxed.
pub type StoreError = Box<dyn std::error::Error + Send + Sync>;
/// A boxed future, so that a `dyn KeyStore` can be shared.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An owner's key as stored: its id, and its wrapped bytes unless destroyed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wrapped {
    pub key_id: u64,
    /// `None`: destroyed (the owner was erased).
    pub bytes: Option<Vec<u8>>,
}

/// Where wrapped keys live (every node must see the same).
pub trait KeyStore: Send + Sync {
    /// The owner's key, if one was ever made.
    fn load<'a>(&'a self, owner: &'a str) -> BoxFuture<'a, Result<Option<Wrapped>, StoreError>>;
    /// Stores `key` unless the owner has a live key already; returns the owner's key.
    fn create<'a>(
        &'a self,
        owner: &'a str,
        key: Wrapped,
    ) -> BoxFuture<'a, Result<Wrapped, StoreError>>;
}

/// Whether new payloads are sealed (`[erasure] encrypt`). Opening works
/// either way: what was sealed while it was on stays readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealing {
    On,
    Off,
}

/// A payload as a consumer may use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// Not sealed: written while sealing was off, or of nobody (anonymous,
    /// a service's command).
    Plain,
    /// The plaintext of a sealed payload.
    Unsealed(Vec<u8>),
    /// Sealed under a key that is gone: the owner was erased. Skip it.
    KeyGone,
}

/// How many owners' keys a node keeps unwrapped, and how long it trusts one
/// before asking the store again (an erasure on another node reaches this
/// one within that time at the latest; see docs/erasure.md).
pub const CACHE_OWNERS: usize = 65_536;
pub const CACHE_TTL: Duration = Duration::from_secs(2);

/// A node's access to owners' keys; share it behind an `Arc`.
pub struct Keyring {
    master: MasterKey,
    sealing: Sealing,
    cache: KeyCache,
    store: Arc<dyn KeyStore>,
    /// How many erasures this node has taken in (each [`Keyring::forget`]).
    /// A key found live while this read N is still live while it reads N:
    /// the one check a hot path needs (see [`Keyring::sealer_still_live`]).
    erasures: AtomicU64,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("sealing", &self.sealing)
            .field("cached", &self.cache.len())
            .finish()
    }
}

impl Keyring {
    pub fn new(master: MasterKey, sealing: Sealing, store: Arc<dyn KeyStore>) -> Keyring {
        Keyring::with_cache(
            master,
            sealing,
            store,
            KeyCache::new(CACHE_OWNERS, CACHE_TTL),
        )
    }

    pub fn with_cache(
        master: MasterKey,
        sealing: Sealing,
        store: Arc<dyn KeyStore>,
        cache: KeyCache,
    ) -> Keyring {
        Keyring {
            master,
            sealing,
            cache,
            store,
            erasures: AtomicU64::new(0),
        }
    }

    pub fn sealing(&self) -> Sealing {
        self.sealing
    }

    /// The owner's key as this node knows it: from the cache, else the store.
    /// An owner with no key yet reads as [`OwnerKey::Erased`] for opening
    /// (nothing was sealed for them that a key could open).
    pub async fn key(&self, owner: &str) -> Result<OwnerKey> {
        if let Some(key) = self.cache.get(owner) {
            return Ok(key);
        }
        let stored = self.store.load(owner).await.map_err(store_error)?;
        let key = match stored {
            Some(Wrapped {
                key_id,
                bytes: Some(bytes),
            }) => OwnerKey::Live(Arc::new(self.master.unwrap(owner, key_id, &bytes)?)),
            _ => OwnerKey::Erased,
        };
        self.cache.put(owner, key.clone());
        Ok(key)
    }

    /// A sealer for the owner's payloads, making the owner's key when there
    /// is none (or only a destroyed one: a new account of an erased id);
    /// `None` while sealing is off.
    pub async fn sealer(&self, owner: &str) -> Result<Option<Sealer>> {
        if self.sealing == Sealing::Off {
            return Ok(None);
        }
        // Read before the key is: an erasure after this makes it stale.
        let erasures = self.erasures();
        if let OwnerKey::Live(key) = self.key(owner).await? {
            return Ok(Some(stamped(Sealer::new(key)?, erasures)));
        }
        let fresh = DataKey::generate()?;
        let wrapped = Wrapped {
            key_id: fresh.id(),
            bytes: Some(self.master.wrap(owner, &fresh)?),
        };
        let kept = self
            .store
            .create(owner, wrapped)
            .await
            .map_err(store_error)?;
        let key = match kept.bytes {
            // Ours won (ids are 64 random bits: equal ids are the same key).
            Some(_) if kept.key_id == fresh.id() => fresh,
            // Another node's won the race: use that one.
            Some(bytes) => self.master.unwrap(owner, kept.key_id, &bytes)?,
            None => {
                return Err(Error::BadWrappedKey(
                    "the store kept no key for the owner".into(),
                ))
            }
        };
        let key = Arc::new(key);
        self.cache.put(owner, OwnerKey::Live(Arc::clone(&key)));
        Ok(Some(stamped(Sealer::new(key)?, erasures)))
    }

    /// What a consumer may do with `payload` of `owner`'s record.
    pub async fn open(&self, owner: &str, payload: &[u8]) -> Result<Opened> {
        self.opener(owner, payload).await?.open(owner, payload)
    }

    /// As [`Keyring::open`], from the cache only: `None` when the owner's
    /// key is not cached (the caller then asks [`Keyring::open`]).
    pub fn open_cached(&self, owner: &str, payload: &[u8]) -> Option<Result<Opened>> {
        Some(self.opener_cached(owner, payload)?.open(owner, payload))
    }

    /// How `payload` of `owner`'s record opens, found before any plaintext
    /// is made: for a reader that opens into a buffer of its own
    /// ([`Opener::Key`] with [`seal::open_in_place`]).
    pub async fn opener(&self, owner: &str, payload: &[u8]) -> Result<Opener> {
        if owner.is_empty() || !seal::is_sealed(payload) {
            return Ok(Opener::Plain);
        }
        Ok(Opener::of(self.key(owner).await?, payload))
    }

    /// As [`Keyring::opener`], from the cache only: `None` when the owner's
    /// key is not cached (the caller then asks [`Keyring::opener`]).
    pub fn opener_cached(&self, owner: &str, payload: &[u8]) -> Option<Opener> {
        if owner.is_empty() || !seal::is_sealed(payload) {
            return Some(Opener::Plain);
        }
        Some(Opener::of(self.cache.get(owner)?, payload))
    }

    /// This node erased the owner, or learnt of an erasure another node
    /// made: forget the key at once (without that, other nodes forget it
    /// within [`CACHE_TTL`]), and count the erasure. Called once the key
    /// is destroyed in the store.
    pub fn forget(&self, owner: &str) {
        self.cache.forget(owner);
        self.erasures.fetch_add(1, Ordering::SeqCst);
    }

    /// How many erasures this node has taken in ([`Keyring::forget`]).
    pub fn erasures(&self) -> u64 {
        self.erasures.load(Ordering::SeqCst)
    }

    /// Whether `sealer`'s key is still `owner`'s live key as far as this
    /// node knows, and as of which count of [`Keyring::erasures`]: while
    /// that count has not moved since the key was last found live, at the
    /// cost of one atomic read (the usual case); otherwise asked of the
    /// cache, and `None` on a miss as when the key is gone (the caller does
    /// without what it wanted to know it for).
    ///
    /// What it vouches for holds while `erasures()` still reads the count
    /// returned: a reader that finds the same count later knows the key was
    /// live then and no erasure reached this node since.
    pub fn sealer_still_live(&self, owner: &str, sealer: &mut Sealer) -> Option<u64> {
        // Read before the cache is: an erasure after this makes it stale.
        let erasures = self.erasures();
        if sealer.live_as_of == Some(erasures) {
            return Some(erasures);
        }
        match self.cache.get(owner) {
            Some(OwnerKey::Live(key)) if key.id() == sealer.key_id() => {
                sealer.live_as_of = Some(erasures);
                Some(erasures)
            }
            _ => None,
        }
    }
}

/// Wrapped keys in memory: the [`KeyStore`] contract without a database,
/// for tests and tools that run a keyring without a store.
#[derive(Debug, Default)]
pub struct MemoryKeyStore(std::sync::Mutex<std::collections::HashMap<String, Wrapped>>);

impl MemoryKeyStore {
    /// What an owner's erasure does to the store: the key destroyed, the
    /// entry kept (the owner reads as erased, not new).
    pub fn destroy(&self, owner: &str) {
        if let Some(key) = self.keys().get_mut(owner) {
            key.bytes = None;
        }
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Wrapped>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl KeyStore for MemoryKeyStore {
    fn load<'a>(&'a self, owner: &'a str) -> BoxFuture<'a, Result<Option<Wrapped>, StoreError>> {
        let found = self.keys().get(owner).cloned();
        Box::pin(async move { Ok(found) })
    }

    fn create<'a>(
        &'a self,
        owner: &'a str,
        key: Wrapped,
    ) -> BoxFuture<'a, Result<Wrapped, StoreError>> {
        let mut keys = self.keys();
        let entry = keys.entry(owner.to_owned()).or_insert(key.clone());
        if entry.bytes.is_none() {
            *entry = key;
        }
        let kept = entry.clone();
        Box::pin(async move { Ok(kept) })
    }
}

/// How one payload opens (what [`Keyring::opener`] finds).
#[derive(Debug, Clone)]
pub enum Opener {
    /// Not sealed: the payload is the plaintext.
    Plain,
    /// Sealed under this key (its id is the payload's).
    Key(Arc<DataKey>),
    /// Sealed under a key that is gone: the owner was erased. Skip it.
    KeyGone,
}

impl Opener {
    /// A sealed payload under another key id than the owner's live one was
    /// sealed under a destroyed key (the owner was erased and the id reused).
    fn of(key: OwnerKey, sealed: &[u8]) -> Opener {
        match key {
            OwnerKey::Live(key) if seal::key_id(sealed) == Some(key.id()) => Opener::Key(key),
            OwnerKey::Live(_) | OwnerKey::Erased => Opener::KeyGone,
        }
    }

    /// The plaintext of `payload` of `owner`, as [`Keyring::open`] gives it.
    pub fn open(&self, owner: &str, payload: &[u8]) -> Result<Opened> {
        match self {
            Opener::Plain => Ok(Opened::Plain),
            Opener::Key(key) => seal::open(key, owner, payload).map(Opened::Unsealed),
            Opener::KeyGone => Ok(Opened::KeyGone),
        }
    }
}

/// `sealer`, its key found live as of `erasures`.
fn stamped(mut sealer: Sealer, erasures: u64) -> Sealer {
    sealer.live_as_of = Some(erasures);
    sealer
}

fn store_error(e: StoreError) -> Error {
    Error::KeyStore(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: Future>(f: F) -> F::Output {
        // The futures here never wait: poll once with a no-op waker.
        let mut f = std::pin::pin!(f);
        let waker = std::task::Waker::noop();
        match f.as_mut().poll(&mut std::task::Context::from_waker(waker)) {
            std::task::Poll::Ready(out) => out,
            std::task::Poll::Pending => panic!("a memory key store never waits"),
        }
    }

    #[test]
    fn sealed_payloads_open_until_the_key_is_destroyed() -> Result<()> {
        let keys = Arc::new(MemoryKeyStore::default());
        let master = MasterKey::generate()?;
        let ring = Keyring::new(master.clone(), Sealing::On, keys.clone());
        let mut sealer = block_on(ring.sealer("ann"))?.expect("sealing is on");
        let sealed = sealer.seal("ann", b"61")?;
        assert_eq!(
            block_on(ring.open("ann", &sealed))?,
            Opened::Unsealed(b"61".to_vec())
        );
        assert_eq!(block_on(ring.open("ann", b"61"))?, Opened::Plain);
        assert_eq!(block_on(ring.open("", &sealed))?, Opened::Plain);

        // Another node (another keyring on the same store) opens it too.
        let other = Keyring::new(master, Sealing::Off, keys.clone());
        assert!(
            other.open_cached("ann", &sealed).is_none(),
            "not cached yet"
        );
        assert_eq!(
            block_on(other.open("ann", &sealed))?,
            Opened::Unsealed(b"61".to_vec())
        );
        assert!(
            block_on(other.sealer("ann"))?.is_none(),
            "sealing is off there"
        );

        // Erasure: the store's key destroyed, the cache forgotten.
        keys.destroy("ann");
        ring.forget("ann");
        assert_eq!(block_on(ring.open("ann", &sealed))?, Opened::KeyGone);
        assert_eq!(ring.open_cached("ann", &sealed), Some(Ok(Opened::KeyGone)));

        // A new account of the same id gets a new key; the old payloads stay gone.
        ring.forget("ann");
        let mut again = block_on(ring.sealer("ann"))?.expect("sealing is on");
        assert_ne!(again.key_id(), sealer.key_id());
        assert_eq!(block_on(ring.open("ann", &sealed))?, Opened::KeyGone);
        let new = again.seal("ann", b"62")?;
        assert_eq!(
            block_on(ring.open("ann", &new))?,
            Opened::Unsealed(b"62".to_vec())
        );
        Ok(())
    }

    #[test]
    fn a_sealer_stays_live_until_an_erasure_and_is_checked_again_after_one() -> Result<()> {
        let keys = Arc::new(MemoryKeyStore::default());
        let ring = Keyring::new(MasterKey::generate()?, Sealing::On, keys.clone());
        let mut ann = block_on(ring.sealer("ann"))?.expect("on");
        let mut bob = block_on(ring.sealer("bob"))?.expect("on");
        assert_eq!(ring.sealer_still_live("ann", &mut ann), Some(0));

        // Bob is erased: the count moves, so Ann's key is looked up again
        // (still live, as of the new count); Bob's is gone.
        keys.destroy("bob");
        ring.forget("bob");
        assert_eq!(ring.erasures(), 1);
        assert_eq!(ring.sealer_still_live("ann", &mut ann), Some(1));
        assert_eq!(ring.sealer_still_live("bob", &mut bob), None);
        assert_eq!(
            ring.sealer_still_live("bob", &mut bob),
            None,
            "and stays so"
        );

        // A sealer made by hand was never checked: the cache answers.
        let key = match block_on(ring.key("ann"))? {
            OwnerKey::Live(key) => key,
            OwnerKey::Erased => panic!("ann is live"),
        };
        let mut by_hand = Sealer::new(key)?;
        assert_eq!(by_hand.live_as_of, None);
        assert_eq!(ring.sealer_still_live("ann", &mut by_hand), Some(1));
        // Nor does a sealer of another key pass for the owner's.
        let mut stranger = Sealer::new(Arc::new(DataKey::generate()?))?;
        assert_eq!(ring.sealer_still_live("ann", &mut stranger), None);
        Ok(())
    }

    #[test]
    fn two_nodes_making_a_key_at_once_end_up_with_one() -> Result<()> {
        let keys = Arc::new(MemoryKeyStore::default());
        let master = MasterKey::generate()?;
        let a = Keyring::new(master.clone(), Sealing::On, keys.clone());
        let b = Keyring::new(master, Sealing::On, keys);
        let mut sa = block_on(a.sealer("ann"))?.expect("on");
        let sb = block_on(b.sealer("ann"))?.expect("on");
        assert_eq!(sa.key_id(), sb.key_id());
        let sealed = sa.seal("ann", b"x")?;
        assert_eq!(
            block_on(b.open("ann", &sealed))?,
            Opened::Unsealed(b"x".to_vec())
        );
        Ok(())
    }

    #[test]
    fn a_tampered_payload_is_an_error_not_a_skip() -> Result<()> {
        let keys = Arc::new(MemoryKeyStore::default());
        let ring = Keyring::new(MasterKey::generate()?, Sealing::On, keys);
        let mut sealer = block_on(ring.sealer("ann"))?.expect("on");
        let mut sealed = sealer.seal("ann", b"x")?;
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(block_on(ring.open("ann", &sealed)), Err(Error::Unauthentic));
        Ok(())
    }
}
