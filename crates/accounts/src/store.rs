//! The accounts file: its format, validation on load, the exclusive lock
//! writers take and the atomic replacement that lets readers (a running
//! broker) see either the old or the new file, never a mix.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::{secret, Error, Grants, Kind, Result};

/// The accounts file in the data dir.
pub(crate) const FILE_NAME: &str = "accounts.json";
/// Flock'd by writers for the whole read-modify-write; never written itself.
pub(crate) const LOCK_NAME: &str = "accounts.lock";
/// The new file is written here, then renamed over [`FILE_NAME`].
const TMP_NAME: &str = "accounts.json.tmp";
/// The format this code reads and writes; a file with another version is
/// refused rather than misread.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Longest account name.
pub(crate) const MAX_NAME_LEN: usize = 64;
/// Bounds of an owner or admin password chosen by the administrator.
pub(crate) const MIN_PASSWORD_LEN: usize = 8;
pub(crate) const MAX_PASSWORD_LEN: usize = 1024;

/// The whole file. Maps keyed by name keep it sorted, so that a diff of
/// two versions shows only what changed.
///
/// `services` and `admins` came later than the format version: absent
/// means empty, and empty maps are not written. So a file from before them
/// still loads, and a file without services or admins is still readable by
/// a tributary from before them; one that has some is refused by that older
/// tributary (unknown field) rather than half-understood.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AccountsFile {
    pub version: u32,
    /// Incremented by every write, so that a change is visible even where
    /// mtime and length are not (coarse timestamps, same-length edits).
    pub generation: u64,
    pub owners: BTreeMap<String, OwnerRecord>,
    pub devices: BTreeMap<String, DeviceRecord>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, ServiceRecord>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub admins: BTreeMap<String, AdminRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OwnerRecord {
    pub created_unix: u64,
    /// Argon2id PHC string of the owner's password.
    pub password_hash: String,
    /// Set when the owner erased the account (docs/erasure.md): nobody logs
    /// in as the owner again, and the record stays so that the name is not
    /// reused (an erasure's tombstone covers the name for all time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erased_unix: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeviceRecord {
    pub owner: String,
    pub created_unix: u64,
    /// Argon2id PHC string of the device token.
    pub token_hash: String,
    /// Set when the device was revoked; the record stays so that its name
    /// is not reused and its past messages keep a known owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_unix: Option<u64>,
    /// The owner's name for the device ("watch"), unique among the owner's
    /// active devices only. Devices added through the API have a generated
    /// id as their account name and the owner's name here; devices added
    /// by the `device add` command (and every device made before labels
    /// existed) have none, and are called by their account name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl DeviceRecord {
    /// What the owner calls the device: its label, else its account name.
    pub fn label_or<'a>(&'a self, id: &'a str) -> &'a str {
        self.label.as_deref().unwrap_or(id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServiceRecord {
    pub created_unix: u64,
    /// What the service may do; never empty.
    pub grants: Grants,
    /// Argon2id PHC string of the service token.
    pub token_hash: String,
    /// Set when the service was revoked; the record stays so that its name
    /// is not reused and the commands it sent keep a known sender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_unix: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdminRecord {
    pub created_unix: u64,
    /// Argon2id PHC string of the admin's password.
    pub password_hash: String,
}

impl AccountsFile {
    pub fn empty() -> AccountsFile {
        AccountsFile {
            version: FORMAT_VERSION,
            generation: 0,
            owners: BTreeMap::new(),
            devices: BTreeMap::new(),
            services: BTreeMap::new(),
            admins: BTreeMap::new(),
        }
    }

    /// What `name` is, if anything (the namespace is shared, so at most one).
    pub fn kind_of(&self, name: &str) -> Option<Kind> {
        if self.owners.contains_key(name) {
            Some(Kind::Owner)
        } else if self.devices.contains_key(name) {
            Some(Kind::Device)
        } else if self.services.contains_key(name) {
            Some(Kind::Service)
        } else if self.admins.contains_key(name) {
            Some(Kind::Admin)
        } else {
            None
        }
    }

    /// Every name with its kind, owners first, then devices, services, admins.
    fn names(&self) -> impl Iterator<Item = (&str, Kind)> {
        let owners = self.owners.keys().map(|n| (n.as_str(), Kind::Owner));
        let devices = self.devices.keys().map(|n| (n.as_str(), Kind::Device));
        let services = self.services.keys().map(|n| (n.as_str(), Kind::Service));
        let admins = self.admins.keys().map(|n| (n.as_str(), Kind::Admin));
        owners.chain(devices).chain(services).chain(admins)
    }

    /// Parses and checks the invariants that the rest of the crate relies
    /// on: valid names, one namespace, every device's owner exists, every
    /// service has a grant, every hash an Argon2id PHC string.
    pub fn parse(path: &Path, text: &str) -> Result<AccountsFile> {
        let corrupt = |reason: String| Error::Corrupt {
            path: path.to_owned(),
            reason,
        };
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        // The version first, so that a newer file is reported as such and
        // not as "unknown field".
        let VersionOnly { version } =
            serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))?;
        if version != FORMAT_VERSION {
            return Err(corrupt(format!(
                "format version {version}, this tributary reads version {FORMAT_VERSION}"
            )));
        }
        let file: AccountsFile = serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))?;
        let mut seen = std::collections::HashMap::new();
        for (name, kind) in file.names() {
            check_name(kind, name).map_err(|e| corrupt(e.to_string()))?;
            if let Some(first) = seen.insert(name, kind) {
                return Err(corrupt(format!(
                    "{name} is both {} and {}",
                    first.with_article(),
                    kind.with_article()
                )));
            }
        }
        for (name, owner) in &file.owners {
            secret::check_phc(&owner.password_hash)
                .map_err(|e| corrupt(format!("owner {name}: {e}")))?;
        }
        for (name, device) in &file.devices {
            if !file.owners.contains_key(&device.owner) {
                return Err(corrupt(format!(
                    "device {name} belongs to {}, which is not an owner",
                    device.owner
                )));
            }
            secret::check_phc(&device.token_hash)
                .map_err(|e| corrupt(format!("device {name}: {e}")))?;
        }
        for (name, service) in &file.services {
            if service.grants.is_empty() {
                return Err(corrupt(format!("service {name} has no grants")));
            }
            secret::check_phc(&service.token_hash)
                .map_err(|e| corrupt(format!("service {name}: {e}")))?;
        }
        for (name, admin) in &file.admins {
            secret::check_phc(&admin.password_hash)
                .map_err(|e| corrupt(format!("admin {name}: {e}")))?;
        }
        Ok(file)
    }
}

/// What identifies one version of the file on disk: a rename gives a new
/// inode, a rewrite in place a new mtime or length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    ino: u64,
    mtime: SystemTime,
    len: u64,
}

impl Stamp {
    pub fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            ino: meta.ino(),
            mtime: meta.modified().unwrap_or(UNIX_EPOCH),
            len: meta.len(),
        }
    }
}

/// The stamp of the file at `path` now; `None` when there is no file.
pub(crate) fn stamp(path: &Path) -> Result<Option<Stamp>> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Some(Stamp::of(&meta))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("stat {}", path.display()), e)),
    }
}

/// Reads and validates the file with the stamp of exactly the version read
/// (taken from the open file, so a rename in between cannot mismatch them).
/// An absent file is an empty one.
pub(crate) fn read(path: &Path) -> Result<(AccountsFile, Option<Stamp>)> {
    let context = || format!("read accounts file {}", path.display());
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((AccountsFile::empty(), None)),
        Err(e) => return Err(Error::io(context(), e)),
    };
    let meta = file.metadata().map_err(|e| Error::io(context(), e))?;
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidData => Error::Corrupt {
            path: path.to_owned(),
            reason: "not UTF-8".to_owned(),
        },
        _ => Error::io(context(), e),
    })?;
    Ok((AccountsFile::parse(path, &text)?, Some(Stamp::of(&meta))))
}

/// Runs `change` on the current file under the exclusive lock and, if it
/// changed anything, writes the result with the next generation. Creates
/// the data dir when needed (the first `owner add` may precede any `serve`).
pub(crate) fn modify<T>(
    data_dir: &Path,
    change: impl FnOnce(&mut AccountsFile) -> Result<T>,
) -> Result<T> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| Error::io(format!("create data dir {}", data_dir.display()), e))?;
    let _lock = lock(&data_dir.join(LOCK_NAME))?;
    let path = data_dir.join(FILE_NAME);
    let (before, _) = read(&path)?;
    let mut after = before.clone();
    let value = change(&mut after)?;
    if after != before {
        after.generation = before.generation + 1;
        write_atomic(data_dir, &after)?;
    }
    Ok(value)
}

/// Blocks until this process holds the exclusive `flock` on `path`; it is
/// released when the returned file is dropped (or the process dies).
fn lock(path: &Path) -> Result<File> {
    let context = || format!("lock {}", path.display());
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(context(), e))?;
    loop {
        // SAFETY: flock on a file descriptor we own, no memory involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc == 0 {
            return Ok(file);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(Error::io(context(), e));
        }
    }
}

/// Temporary file (mode 0600: it holds hashes), fsync, rename over the
/// old file, fsync the directory so that the rename itself is durable.
fn write_atomic(data_dir: &Path, file: &AccountsFile) -> Result<()> {
    let tmp = data_dir.join(TMP_NAME);
    let path = data_dir.join(FILE_NAME);
    let mut text = serde_json::to_string_pretty(file).expect("the accounts file serializes");
    text.push('\n');
    let write = || -> io::Result<()> {
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        out.write_all(text.as_bytes())?;
        out.sync_all()?;
        drop(out);
        std::fs::rename(&tmp, &path)?;
        File::open(data_dir)?.sync_all()
    };
    write().map_err(|e| Error::io(format!("write accounts file {}", path.display()), e))
}

/// Seconds since the Unix epoch, for the `created_unix`/`revoked_unix` fields.
pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Account names (of every kind): 1–64 of `[A-Za-z0-9_.-]`, not starting with
/// `.` (so never `.` or `..`, and safe in topics and file names).
pub(crate) fn check_name(kind: Kind, name: &str) -> Result<()> {
    let problem = if name.is_empty() || name.len() > MAX_NAME_LEN {
        Some("must be 1 to 64 characters long")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        Some("may contain only letters, digits, '_', '.', '-'")
    } else if name.starts_with('.') {
        Some("may not start with '.'")
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(Error::InvalidName {
            kind,
            name: printable(name),
            problem,
        }),
    }
}

/// A name as it may appear in an error message: control characters
/// escaped and at most 80 characters, so that a bad name cannot garble a
/// terminal or flood a log.
fn printable(name: &str) -> String {
    let escaped: String = name.escape_debug().collect();
    match escaped.char_indices().nth(80) {
        Some((cut, _)) => format!("{}...", &escaped[..cut]),
        None => escaped,
    }
}

pub(crate) fn accounts_path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}
