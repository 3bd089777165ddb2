//! Who may connect: owners (people), their devices, services (machine
//! clients with [`Grants`]) and admins (operators), kept in
//! `DATA_DIR/accounts.json` with Argon2id-hashed secrets, and the check of
//! MQTT credentials against them.
//!
//! # Overview
//!
//! - [`Accounts`]: the broker's in-memory view of the file.
//!   [`Accounts::authenticate`] maps an MQTT user name and password to an
//!   [`Identity`] (or an [`AuthError`]); [`Accounts::authenticate_guarded`]
//!   does the same for MQTT CONNECT behind the [`LoginThrottle`] of
//!   wrong passwords ([`Accounts::login_throttle`], shared with the HTTP
//!   API's login). Every Argon2 check of either waits for one of a bounded
//!   number of permits (`checks.rs`, [`Accounts::check_stats`]), so
//!   unauthenticated clients cannot make the node allocate Argon2's memory
//!   without bound; [`Accounts::reload_if_changed`]
//!   picks up what the administration commands wrote;
//!   [`Accounts::is_active`] tells the broker whom to disconnect.
//! - [`add_owner`], [`add_device`], [`revoke_device`], [`add_service`],
//!   [`revoke_service`], [`add_admin`], [`list`]: the administration behind
//!   `tributary owner|device|service|admin`, safe while a broker runs
//!   (exclusive lock, atomic replacement of the file).
//! - [`Error`] and [`Result`] for everything but authentication.
//!
//! # Credentials
//!
//! A device or a service connects with its name as the MQTT user name and
//! its token (shown once by [`add_device`], [`add_service`]) as the
//! password; an owner or an admin with its name and password. All four
//! kinds share one namespace, so a user name names exactly one account.
//!
//! # On disk
//!
//! ```text
//! DATA_DIR/accounts.json       the accounts (mode 0600), replaced atomically by every change
//! DATA_DIR/accounts.json.tmp   the next version while it is written
//! DATA_DIR/accounts.lock       flock'd by a writer for its read-modify-write
//!
//! {
//!   "version": 1,                      format version; any other is refused
//!   "generation": 3,                   +1 on every write
//!   "owners": {
//!     "ann": { "created_unix": 1767225600, "password_hash": "$argon2id$v=19$m=19456,t=2,p=1$..." }
//!   },
//!   "devices": {
//!     "watch": { "owner": "ann", "created_unix": 1767225660, "token_hash": "$argon2id$...",
//!                "revoked_unix": 1767229200 }       only once revoked
//!   },
//!   "services": {                      absent while there are none
//!     "bridge": { "created_unix": 1767225700, "grants": ["read", "command"],
//!                 "token_hash": "$argon2id$..." }   revoked_unix as for devices
//!   },
//!   "admins": {                        absent while there are none
//!     "ops": { "created_unix": 1767225800, "password_hash": "$argon2id$..." }
//!   }
//! }
//! ```
//!
//! # Invariants
//!
//! - No secret is stored or logged in clear: the file holds Argon2id PHC
//!   strings (random 16-byte salt each), memory holds keyed SHA-256 digests
//!   of secrets that verified; this crate logs nothing.
//! - Every loaded file was validated: names valid, no name of two kinds,
//!   every device's owner exists, every service has a grant, every hash
//!   Argon2id. A file that is not is refused whole ([`Error::Corrupt`]),
//!   never half-used.
//! - A revoked device or service stays in the file; its name cannot be
//!   taken again.
//!
//! # Example
//!
//! ```
//! use tributary_accounts::{Accounts, AuthError, Grants, Identity};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let data_dir = tempfile::tempdir()?;
//! tributary_accounts::add_owner(data_dir.path(), "ann", Some("correct horse"))?;
//! let token = tributary_accounts::add_device(data_dir.path(), "ann", "watch")?;
//!
//! let accounts = Accounts::open(data_dir.path())?;
//! assert_eq!(
//!     accounts.authenticate("watch", token.as_bytes()),
//!     Ok(Identity::Device { owner: "ann".into(), device: "watch".into() })
//! );
//! assert_eq!(accounts.authenticate("watch", b"guess"), Err(AuthError::BadSecret));
//!
//! let grants = Grants { read: true, ..Grants::default() };
//! let bridge_token = tributary_accounts::add_service(data_dir.path(), "bridge", grants)?;
//! assert!(accounts.reload_if_changed()?);
//! let bridge = accounts.authenticate("bridge", bridge_token.as_bytes())?;
//! assert_eq!(bridge, Identity::Service { service: "bridge".into(), grants });
//!
//! tributary_accounts::revoke_device(data_dir.path(), "watch")?;
//! assert!(accounts.reload_if_changed()?);
//! assert!(!accounts.device_active("watch"));
//! assert!(accounts.is_active(&bridge));
//! # Ok(())
//! # }
//! ```

mod admin;
mod checks;
mod grant;
pub mod rate;
mod secret;
mod store;
#[cfg(test)]
mod tests;
pub mod throttle;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Instant;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

pub use admin::{
    add_admin, add_device, add_labelled_device, add_owner, add_service, erase_owner, list,
    revoke_device, revoke_service, rotate_device_token, AdminInfo, DeviceInfo, Listing, OwnerInfo,
    ServiceInfo,
};
pub use checks::{default_max_checks, CheckStats};
pub use grant::{Grant, Grants};
use store::{AccountsFile, Stamp};
pub use throttle::LoginThrottle;

/// Errors of the accounts file and its administration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The caller's fault (a bad command line).
    /// A name outside `[A-Za-z0-9_.-]{1,64}` or starting with `.`.
    #[error("{kind} name '{name}' {problem}")]
    InvalidName {
        kind: Kind,
        /// The name as given, escaped and shortened for printing.
        name: String,
        problem: &'static str,
    },
    /// An administrator-chosen owner or admin password that is too short
    /// or long.
    #[error("password {0}")]
    InvalidPassword(&'static str),
    /// A grant name that is not one of [`Grant::ALL`] (escaped, shortened).
    #[error("unknown grant '{0}' (grants: read, command, packs)")]
    UnknownGrant(String),
    /// A service added without any grant could do nothing.
    #[error("a service needs at least one grant (read, command)")]
    NoGrants,
    /// The name is taken, by an account of any kind (one namespace).
    #[error("{}", exists_message(*.kind, .name, *.wanted))]
    Exists {
        /// What the name already is.
        kind: Kind,
        name: String,
        /// What was being added.
        wanted: Kind,
    },
    #[error("no {kind} named {name}")]
    NotFound { kind: Kind, name: String },

    // Storage.
    /// The accounts file cannot be parsed or breaks an invariant; nothing
    /// of it is used.
    #[error("corrupt accounts file {}: {reason}", .path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

fn exists_message(kind: Kind, name: &str, wanted: Kind) -> String {
    if kind == wanted {
        format!("{kind} {name} already exists")
    } else {
        format!("cannot add {wanted} {name}: {kind} {name} already exists (owners, devices, services and admins share one namespace)")
    }
}

/// Checks an owner name against the rules of every account name (1–64 of
/// `[A-Za-z0-9_.-]`, not starting with `.`) without reading any file.
pub fn check_owner_name(name: &str) -> Result<()> {
    store::check_name(Kind::Owner, name)
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which kind of account a name is, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Owner,
    Device,
    Service,
    Admin,
}

impl Kind {
    /// "an owner", "a device", … for messages.
    pub(crate) fn with_article(self) -> &'static str {
        match self {
            Kind::Owner => "an owner",
            Kind::Device => "a device",
            Kind::Service => "a service",
            Kind::Admin => "an admin",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Owner => "owner",
            Kind::Device => "device",
            Kind::Service => "service",
            Kind::Admin => "admin",
        })
    }
}

/// Who an authenticated connection is. What it may publish and subscribe
/// to follows from this alone, never from a topic or payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// A device, connected with its token.
    Device { owner: String, device: String },
    /// A person, connected with the owner password.
    Owner { owner: String },
    /// A machine client, connected with its token; `grants` as they were
    /// when it connected.
    Service { service: String, grants: Grants },
    /// An operator, connected with the admin password.
    Admin { admin: String },
}

/// Why credentials were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("unknown user name")]
    UnknownUser,
    #[error("wrong password or token")]
    BadSecret,
    /// A revoked device or service.
    #[error("revoked")]
    Revoked,
    /// An owner's or admin's name locked by [`LoginThrottle`] after
    /// repeated wrong passwords; the password was not checked.
    #[error("name locked after repeated wrong passwords")]
    Locked,
}

/// The broker's view of the accounts file. `Send + Sync`: share it in an
/// `Arc`; [`Accounts::authenticate`] blocks (Argon2) and belongs in
/// `spawn_blocking`, everything else is a map lookup.
pub struct Accounts {
    path: PathBuf,
    /// The last loaded file and the stamp of the version it was read from.
    view: RwLock<View>,
    /// One reload at a time, so that a slow reader of an older version can
    /// never replace a newer one.
    reloading: Mutex<()>,
    /// Secrets that verified, by name, so that a reconnect does not pay
    /// Argon2 again. Bounded by the number of accounts: only names that
    /// exist are inserted and a reload drops the rest.
    verified: Mutex<HashMap<String, Verified>>,
    /// Random per-process key of the digests in `verified`, so that the
    /// broker's memory holds nothing from which a password could be
    /// brute-forced offline faster than from its Argon2 hash.
    digest_key: [u8; 32],
    /// Devices whose token a reload saw change, until [`Accounts::take_rotated`].
    rotated: Mutex<std::collections::HashSet<String>>,
    /// Permits for Argon2 checks: bounds the memory they take at once.
    checks: checks::Checks,
    /// Wrong passwords per name, for the API's login and MQTT CONNECT alike.
    throttle: LoginThrottle,
}

/// What the cheap part of an authentication found.
enum Lookup {
    /// Decided without Argon2: unknown, revoked, or a secret that verified before.
    Done(Result<Identity, AuthError>),
    /// The secret must be checked against `phc` with Argon2.
    Verify {
        identity: Identity,
        phc: String,
        digest: [u8; 32],
    },
}

struct View {
    file: AccountsFile,
    stamp: Option<Stamp>,
}

/// A secret that verified against `phc`; valid only while the account's
/// stored hash is still `phc` (so a changed secret is never served from the
/// cache, even by a verification racing a reload).
struct Verified {
    phc: String,
    digest: [u8; 32],
}

impl Accounts {
    /// Loads `DATA_DIR/accounts.json`; an absent file means no accounts.
    pub fn open(data_dir: &Path) -> Result<Accounts> {
        let path = store::accounts_path(data_dir);
        let (file, stamp) = store::read(&path)?;
        let mut digest_key = [0u8; 32];
        OsRng.fill_bytes(&mut digest_key);
        Ok(Accounts {
            path,
            view: RwLock::new(View { file, stamp }),
            reloading: Mutex::new(()),
            verified: Mutex::new(HashMap::new()),
            digest_key,
            rotated: Mutex::default(),
            checks: checks::Checks::new(0),
            throttle: LoginThrottle::default(),
        })
    }

    /// At most `max` Argon2 checks at once (0: [`default_max_checks`], one
    /// per core and at least two); further checks wait for one to end.
    pub fn with_max_checks(mut self, max: usize) -> Accounts {
        self.checks = checks::Checks::new(max);
        self
    }

    /// How the bound on concurrent Argon2 checks has been used.
    pub fn check_stats(&self) -> CheckStats {
        self.checks.stats()
    }

    /// The wrong-password counts per name that both the HTTP API's login
    /// and [`Accounts::authenticate_guarded`] (MQTT) use.
    pub fn login_throttle(&self) -> &LoginThrottle {
        &self.throttle
    }

    /// Re-reads the file when it changed on disk (another inode, mtime or
    /// length than the version loaded) and returns true when its content
    /// changed. Unchanged costs one `stat`. On error (a corrupt file, say)
    /// the previous view stays in force.
    pub fn reload_if_changed(&self) -> Result<bool> {
        let _one_at_a_time = lock(&self.reloading);
        let now = store::stamp(&self.path)?;
        if read(&self.view).stamp == now {
            return Ok(false);
        }
        let (file, stamp) = store::read(&self.path)?;
        let mut view = write(&self.view);
        view.stamp = stamp;
        if view.file == file {
            return Ok(false);
        }
        // The same lookup as `authenticate`, so that whatever would no
        // longer authenticate (revoked, removed, new hash) leaves the cache.
        lock(&self.verified).retain(|name, verified| {
            credential(&file, name).is_ok_and(|(_, phc)| *phc == verified.phc)
        });
        let rotated = view.file.devices.iter().filter(|(name, old)| {
            file.devices
                .get(*name)
                .is_some_and(|new| new.token_hash != old.token_hash)
        });
        lock(&self.rotated).extend(rotated.map(|(name, _)| name.clone()));
        view.file = file;
        Ok(true)
    }

    /// The devices whose token changed in the reloads since the last call
    /// (`tributary`'s token rotation): connections that authenticated with
    /// the old token must go, as for a revoked device.
    pub fn take_rotated(&self) -> std::collections::HashSet<String> {
        std::mem::take(&mut *lock(&self.rotated))
    }

    /// True when there are no accounts of any kind.
    pub fn is_empty(&self) -> bool {
        let file = &read(&self.view).file;
        file.owners.is_empty()
            && file.devices.is_empty()
            && file.services.is_empty()
            && file.admins.is_empty()
    }

    /// Checks MQTT credentials: a device or service name with its token, or
    /// an owner or admin name with its password. Blocking: the first check
    /// of a secret runs Argon2id (tens of milliseconds), after waiting, with
    /// the thread parked, for one of the bounded permits; a secret that
    /// verified before against the same stored hash is recognised by its
    /// digest. Not throttled: a caller that answers strangers applies
    /// [`Accounts::login_throttle`] (as the API's login does) or uses
    /// [`Accounts::authenticate_guarded`].
    pub fn authenticate(&self, username: &str, password: &[u8]) -> Result<Identity, AuthError> {
        match self.lookup(username, password) {
            Lookup::Done(result) => result,
            Lookup::Verify {
                identity,
                phc,
                digest,
            } => {
                let permit = self.checks.acquire_blocking();
                self.verify(&permit, username, identity, phc, digest, password)
            }
        }
    }

    /// [`Accounts::authenticate`] for a broker's CONNECT: an owner's or
    /// admin's name that [`Accounts::login_throttle`] has locked is refused
    /// ([`AuthError::Locked`]) before any Argon2, a wrong password for one
    /// counts towards its lock, and a right one clears it (devices and
    /// services are never locked: their tokens cannot be guessed). The
    /// wait for an Argon2 permit is a task's, not a thread's; dropping the
    /// future (the caller's timeout) gives up the wait. The check itself
    /// runs on tokio's blocking pool.
    pub async fn authenticate_guarded(
        self: &Arc<Self>,
        username: &str,
        password: &[u8],
    ) -> Result<Identity, AuthError> {
        let (identity, phc) = self.credential(username)?;
        let throttled = has_password(&identity);
        // Before the cache too: a locked name must not be guessed at
        // SHA-256 speed against a digest that verified before.
        if throttled && self.throttle.check(username, Instant::now()).is_err() {
            return Err(AuthError::Locked);
        }
        let digest = self.digest(password);
        if self.verified_before(username, &phc, &digest) {
            if throttled {
                self.throttle.succeeded(username);
            }
            return Ok(identity);
        }
        let permit = self.checks.acquire().await;
        // Again after the wait: guesses sent in parallel all passed the
        // first check, and those that waited behind the failure that locked
        // the name must not run.
        if throttled && self.throttle.check(username, Instant::now()).is_err() {
            return Err(AuthError::Locked);
        }
        let accounts = self.clone();
        let user = username.to_owned();
        let secret = password.to_vec();
        tokio::task::spawn_blocking(move || {
            let result = accounts.verify(&permit, &user, identity, phc, digest, &secret);
            // Recorded here, before the permit goes and whether or not the
            // caller still waits (its timeout may have dropped it), so the
            // next guess sees the lock this failure starts.
            if throttled {
                match result {
                    Ok(_) => accounts.throttle.succeeded(&user),
                    Err(_) => {
                        accounts.throttle.failed(&user, Instant::now());
                    }
                }
            }
            drop(permit);
            result
        })
        .await
        // The check panicked (it does not): a refusal, never a way in.
        .unwrap_or(Err(AuthError::BadSecret))
    }

    /// The cheap part of authenticating: the name's account and whether
    /// the secret verified before.
    fn lookup(&self, username: &str, password: &[u8]) -> Lookup {
        let (identity, phc) = match self.credential(username) {
            Ok(found) => found,
            Err(e) => return Lookup::Done(Err(e)),
        };
        let digest = self.digest(password);
        if self.verified_before(username, &phc, &digest) {
            return Lookup::Done(Ok(identity));
        }
        Lookup::Verify {
            identity,
            phc,
            digest,
        }
    }

    /// Whom `username` names and the stored hash its secret must match.
    fn credential(&self, username: &str) -> Result<(Identity, String), AuthError> {
        let view = read(&self.view);
        credential(&view.file, username).map(|(identity, phc)| (identity, phc.clone()))
    }

    /// Whether a secret with `digest` verified against `phc` before.
    fn verified_before(&self, username: &str, phc: &str, digest: &[u8; 32]) -> bool {
        lock(&self.verified)
            .get(username)
            .is_some_and(|v| v.phc == phc && constant_time_eq(&v.digest, digest))
    }

    /// The Argon2 check under `permit`; a secret that verified is remembered.
    fn verify(
        &self,
        permit: &checks::Permit,
        username: &str,
        identity: Identity,
        phc: String,
        digest: [u8; 32],
        password: &[u8],
    ) -> Result<Identity, AuthError> {
        if !self.checks.run(permit, || secret::verify(&phc, password)) {
            return Err(AuthError::BadSecret);
        }
        lock(&self.verified).insert(username.to_owned(), Verified { phc, digest });
        Ok(identity)
    }

    /// [`Accounts::authenticate`] that takes about as long whatever the
    /// answer: an unknown or revoked name costs one Argon2 check against a
    /// decoy hash, as a wrong secret does, so a client cannot time which
    /// names exist. For logins open to strangers (the HTTP API).
    pub fn authenticate_evenly(
        &self,
        username: &str,
        password: &[u8],
    ) -> Result<Identity, AuthError> {
        let result = self.authenticate(username, password);
        if matches!(result, Err(AuthError::UnknownUser | AuthError::Revoked)) {
            secret::decoy_verify(password);
        }
        result
    }

    /// False for a device that does not exist (any more) or was revoked.
    pub fn device_active(&self, device: &str) -> bool {
        read(&self.view)
            .file
            .devices
            .get(device)
            .is_some_and(|d| d.revoked_unix.is_none())
    }

    /// False for a service that does not exist (any more) or was revoked.
    pub fn service_active(&self, service: &str) -> bool {
        read(&self.view)
            .file
            .services
            .get(service)
            .is_some_and(|s| s.revoked_unix.is_none())
    }

    /// False when a connection authenticated as `identity` must go: its
    /// device or service was revoked, or its account is gone from the file.
    /// (A service's grants are those it connected with; they cannot change
    /// without editing the file by hand.)
    pub fn is_active(&self, identity: &Identity) -> bool {
        let file = &read(&self.view).file;
        match identity {
            Identity::Device { owner, device } => file
                .devices
                .get(device)
                .is_some_and(|d| d.revoked_unix.is_none() && d.owner == *owner),
            Identity::Owner { owner } => file
                .owners
                .get(owner)
                .is_some_and(|o| o.erased_unix.is_none()),
            Identity::Service { service, .. } => file
                .services
                .get(service)
                .is_some_and(|s| s.revoked_unix.is_none()),
            Identity::Admin { admin } => file.admins.contains_key(admin),
        }
    }

    /// The owner of a device, if the device exists (revoked or not).
    pub fn owner_of(&self, device: &str) -> Option<String> {
        read(&self.view)
            .file
            .devices
            .get(device)
            .map(|d| d.owner.clone())
    }

    fn digest(&self, secret: &[u8]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.digest_key);
        hasher.update(secret);
        hasher.finalize().into()
    }
}

/// Shows where the accounts come from and how many there are, never a hash.
impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let view = read(&self.view);
        f.debug_struct("Accounts")
            .field("path", &self.path)
            .field("generation", &view.file.generation)
            .field("owners", &view.file.owners.len())
            .field("devices", &view.file.devices.len())
            .field("services", &view.file.services.len())
            .field("admins", &view.file.admins.len())
            .finish_non_exhaustive()
    }
}

/// Whom `username` names in `file` and the stored hash its secret must
/// match; revoked devices and services have none.
fn credential<'f>(
    file: &'f AccountsFile,
    username: &str,
) -> Result<(Identity, &'f String), AuthError> {
    if let Some(device) = file.devices.get(username) {
        if device.revoked_unix.is_some() {
            return Err(AuthError::Revoked);
        }
        let identity = Identity::Device {
            owner: device.owner.clone(),
            device: username.to_owned(),
        };
        Ok((identity, &device.token_hash))
    } else if let Some(owner) = file.owners.get(username) {
        if owner.erased_unix.is_some() {
            return Err(AuthError::Revoked);
        }
        let identity = Identity::Owner {
            owner: username.to_owned(),
        };
        Ok((identity, &owner.password_hash))
    } else if let Some(service) = file.services.get(username) {
        if service.revoked_unix.is_some() {
            return Err(AuthError::Revoked);
        }
        let identity = Identity::Service {
            service: username.to_owned(),
            grants: service.grants,
        };
        Ok((identity, &service.token_hash))
    } else if let Some(admin) = file.admins.get(username) {
        let identity = Identity::Admin {
            admin: username.to_owned(),
        };
        Ok((identity, &admin.password_hash))
    } else {
        Err(AuthError::UnknownUser)
    }
}

/// Whether `identity` logs in with a password a person chose or was
/// given (owners, admins), the secrets worth guessing; devices and services
/// present 256-bit random tokens.
fn has_password(identity: &Identity) -> bool {
    matches!(identity, Identity::Owner { .. } | Identity::Admin { .. })
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// A panic while holding one of these locks leaves consistent data behind
// (every update is a single assignment or map operation), so poisoning is
// ignored rather than turned into a panic of every later caller.
fn read(lock: &RwLock<View>) -> std::sync::RwLockReadGuard<'_, View> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write(lock: &RwLock<View>) -> std::sync::RwLockWriteGuard<'_, View> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
