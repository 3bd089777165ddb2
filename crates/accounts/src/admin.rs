//! Administration: the read-modify-write operations behind the
//! `tributary owner|device|service|admin` commands. Each runs under the exclusive lock
//! of the data dir and replaces the file atomically, so it is safe while a
//! broker runs (the broker picks the change up with
//! [`Accounts::reload_if_changed`](crate::Accounts::reload_if_changed)).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::store::{
    self, AdminRecord, DeviceRecord, OwnerRecord, ServiceRecord, MAX_PASSWORD_LEN, MIN_PASSWORD_LEN,
};
use crate::{secret, Error, Grants, Kind, Result};

/// Adds an owner (a person). With `password` `None` a password of 24
/// random letters and digits is generated; either way the password is
/// returned so that it can be shown once, and only its Argon2id hash is
/// stored.
pub fn add_owner(data_dir: &Path, name: &str, password: Option<&str>) -> Result<String> {
    store::check_name(Kind::Owner, name)?;
    let password = chosen_or_generated(password)?;
    // Hash before taking the lock: Argon2 is the slow part.
    let password_hash = secret::hash(password.as_bytes());
    store::modify(data_dir, |file| {
        check_free(file, name, Kind::Owner)?;
        file.owners.insert(
            name.to_owned(),
            OwnerRecord {
                created_unix: store::now_unix(),
                password_hash,
                erased_unix: None,
            },
        );
        Ok(())
    })?;
    Ok(password)
}

/// Adds a device of `owner` and returns its new token (32 random bytes,
/// base64url without padding). The token is not stored, only its Argon2id
/// hash: this is the one chance to show it.
pub fn add_device(data_dir: &Path, owner: &str, device: &str) -> Result<String> {
    store::check_name(Kind::Owner, owner)?;
    store::check_name(Kind::Device, device)?;
    let token = secret::generate_token();
    let token_hash = secret::hash(token.as_bytes());
    store::modify(data_dir, |file| {
        if file
            .owners
            .get(owner)
            .is_none_or(|o| o.erased_unix.is_some())
        {
            return Err(Error::NotFound {
                kind: Kind::Owner,
                name: owner.to_owned(),
            });
        }
        check_free(file, device, Kind::Device)?;
        file.devices.insert(
            device.to_owned(),
            DeviceRecord {
                owner: owner.to_owned(),
                created_unix: store::now_unix(),
                token_hash,
                revoked_unix: None,
                label: None,
            },
        );
        Ok(())
    })?;
    Ok(token)
}

/// Adds a device of `owner` that the owner calls `label` ("watch"), with a
/// generated id as its account name, so that two owners can both have a
/// "watch" and nobody invents an installation-wide unique name. Returns
/// `(id, token)`; the token is shown this once, as for [`add_device`].
/// The label is trimmed, 1–64 characters without control characters, and
/// unique (ignoring case) among the owner's active devices.
pub fn add_labelled_device(data_dir: &Path, owner: &str, label: &str) -> Result<(String, String)> {
    store::check_name(Kind::Owner, owner)?;
    let label = check_label(label)?;
    let token = secret::generate_token();
    let token_hash = secret::hash(token.as_bytes());
    let mut id = secret::generate_device_id();
    store::modify(data_dir, |file| {
        if file
            .owners
            .get(owner)
            .is_none_or(|o| o.erased_unix.is_some())
        {
            return Err(Error::NotFound {
                kind: Kind::Owner,
                name: owner.to_owned(),
            });
        }
        let taken = file.devices.iter().any(|(other, d)| {
            d.owner == owner
                && d.revoked_unix.is_none()
                && d.label_or(other).to_lowercase() == label.to_lowercase()
        });
        if taken {
            return Err(Error::Exists {
                kind: Kind::Device,
                name: label.clone(),
                wanted: Kind::Device,
            });
        }
        // 60 random bits: a collision is all but impossible, but cheap to rule out.
        while file.kind_of(&id).is_some() {
            id = secret::generate_device_id();
        }
        file.devices.insert(
            id.clone(),
            DeviceRecord {
                owner: owner.to_owned(),
                created_unix: store::now_unix(),
                token_hash,
                revoked_unix: None,
                label: Some(label.clone()),
            },
        );
        Ok(())
    })?;
    Ok((id, token))
}

/// Gives an active device a new token and returns it (shown this once); the
/// old token stops authenticating as soon as a broker reloads the file, and
/// the broker disconnects connections that authenticated with it.
pub fn rotate_device_token(data_dir: &Path, device: &str) -> Result<String> {
    store::check_name(Kind::Device, device)?;
    let token = secret::generate_token();
    let token_hash = secret::hash(token.as_bytes());
    store::modify(data_dir, |file| {
        let record = file
            .devices
            .get_mut(device)
            .filter(|d| d.revoked_unix.is_none())
            .ok_or_else(|| Error::NotFound {
                kind: Kind::Device,
                name: device.to_owned(),
            })?;
        record.token_hash = token_hash;
        Ok(())
    })?;
    Ok(token)
}

/// A device label as kept: trimmed, 1–64 characters, no control characters.
fn check_label(label: &str) -> Result<String> {
    let label = label.trim();
    let problem = if label.is_empty() || label.chars().count() > store::MAX_NAME_LEN {
        Some("must be 1 to 64 characters long")
    } else if label.chars().any(char::is_control) {
        Some("may not contain control characters")
    } else {
        None
    };
    match problem {
        None => Ok(label.to_owned()),
        Some(problem) => Err(Error::InvalidName {
            kind: Kind::Device,
            name: label.chars().take(64).collect(),
            problem,
        }),
    }
}

/// Adds a service (a machine client such as the Kafka bridge) with
/// `grants` (at least one) and returns its new token, generated and hashed
/// like a device token: this is the one chance to show it.
pub fn add_service(data_dir: &Path, name: &str, grants: Grants) -> Result<String> {
    store::check_name(Kind::Service, name)?;
    if grants.is_empty() {
        return Err(Error::NoGrants);
    }
    let token = secret::generate_token();
    let token_hash = secret::hash(token.as_bytes());
    store::modify(data_dir, |file| {
        check_free(file, name, Kind::Service)?;
        file.services.insert(
            name.to_owned(),
            ServiceRecord {
                created_unix: store::now_unix(),
                grants,
                token_hash,
                revoked_unix: None,
            },
        );
        Ok(())
    })?;
    Ok(token)
}

/// Revokes a service, like [`revoke_device`] a device: its token no longer
/// authenticates, a broker disconnects it at its next reload, and the
/// record (and so the name) stays.
pub fn revoke_service(data_dir: &Path, name: &str) -> Result<()> {
    store::check_name(Kind::Service, name)?;
    store::modify(data_dir, |file| {
        let record = file.services.get_mut(name).ok_or_else(|| Error::NotFound {
            kind: Kind::Service,
            name: name.to_owned(),
        })?;
        if record.revoked_unix.is_none() {
            record.revoked_unix = Some(store::now_unix());
        }
        Ok(())
    })
}

/// Adds an admin (an operator); the password is chosen or generated, and
/// returned, exactly as for [`add_owner`].
pub fn add_admin(data_dir: &Path, name: &str, password: Option<&str>) -> Result<String> {
    store::check_name(Kind::Admin, name)?;
    let password = chosen_or_generated(password)?;
    let password_hash = secret::hash(password.as_bytes());
    store::modify(data_dir, |file| {
        check_free(file, name, Kind::Admin)?;
        file.admins.insert(
            name.to_owned(),
            AdminRecord {
                created_unix: store::now_unix(),
                password_hash,
            },
        );
        Ok(())
    })?;
    Ok(password)
}

/// Revokes a device: its token no longer authenticates and a broker
/// disconnects it at its next reload. The record stays (the name is not
/// reused). Revoking a revoked device changes nothing.
pub fn revoke_device(data_dir: &Path, device: &str) -> Result<()> {
    store::check_name(Kind::Device, device)?;
    store::modify(data_dir, |file| {
        let record = file
            .devices
            .get_mut(device)
            .ok_or_else(|| Error::NotFound {
                kind: Kind::Device,
                name: device.to_owned(),
            })?;
        if record.revoked_unix.is_none() {
            record.revoked_unix = Some(store::now_unix());
        }
        Ok(())
    })
}

/// Closes an erased owner's account (docs/erasure.md): the owner can no
/// longer log in, every device of theirs is revoked (the broker disconnects
/// them at its next reload), and the records stay so that no name is
/// reused. Closing a closed account changes nothing.
pub fn erase_owner(data_dir: &Path, owner: &str) -> Result<()> {
    store::check_name(Kind::Owner, owner)?;
    store::modify(data_dir, |file| {
        let now = store::now_unix();
        let record = file.owners.get_mut(owner).ok_or_else(|| Error::NotFound {
            kind: Kind::Owner,
            name: owner.to_owned(),
        })?;
        record.erased_unix.get_or_insert(now);
        for device in file.devices.values_mut().filter(|d| d.owner == owner) {
            device.revoked_unix.get_or_insert(now);
        }
        Ok(())
    })
}

/// Everything in the accounts file except the hashes: owners sorted by
/// name, each with its devices sorted by name; services and admins sorted
/// by name.
pub fn list(data_dir: &Path) -> Result<Listing> {
    let (file, _) = store::read(&store::accounts_path(data_dir))?;
    let owners = file
        .owners
        .iter()
        .map(|(name, owner)| OwnerInfo {
            name: name.clone(),
            created: from_unix(owner.created_unix),
            devices: file
                .devices
                .iter()
                .filter(|(_, device)| device.owner == *name)
                .map(|(name, device)| DeviceInfo {
                    name: name.clone(),
                    label: device.label_or(name).to_owned(),
                    created: from_unix(device.created_unix),
                    revoked: device.revoked_unix.map(from_unix),
                })
                .collect(),
        })
        .collect();
    let services = file
        .services
        .iter()
        .map(|(name, service)| ServiceInfo {
            name: name.clone(),
            created: from_unix(service.created_unix),
            grants: service.grants,
            revoked: service.revoked_unix.map(from_unix),
        })
        .collect();
    let admins = file
        .admins
        .iter()
        .map(|(name, admin)| AdminInfo {
            name: name.clone(),
            created: from_unix(admin.created_unix),
        })
        .collect();
    Ok(Listing {
        owners,
        services,
        admins,
    })
}

/// What [`list`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub owners: Vec<OwnerInfo>,
    pub services: Vec<ServiceInfo>,
    pub admins: Vec<AdminInfo>,
}

/// One owner in a [`Listing`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerInfo {
    pub name: String,
    pub created: SystemTime,
    pub devices: Vec<DeviceInfo>,
}

/// One device in a [`Listing`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The account name: the MQTT user name and the device's topic level.
    pub name: String,
    /// What the owner calls it: the label given in the API, else `name`.
    pub label: String,
    pub created: SystemTime,
    /// When it was revoked; `None` while it may connect.
    pub revoked: Option<SystemTime>,
}

/// One service in a [`Listing`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    pub name: String,
    pub created: SystemTime,
    pub grants: Grants,
    /// When it was revoked; `None` while it may connect.
    pub revoked: Option<SystemTime>,
}

/// One admin in a [`Listing`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminInfo {
    pub name: String,
    pub created: SystemTime,
}

/// All kinds of account share one namespace: a connection's user name must
/// say unambiguously which one it is.
fn check_free(file: &store::AccountsFile, name: &str, wanted: Kind) -> Result<()> {
    match file.kind_of(name) {
        None => Ok(()),
        Some(existing) => Err(Error::Exists {
            kind: existing,
            name: name.to_owned(),
            wanted,
        }),
    }
}

/// An administrator's password if within bounds, else a generated one.
fn chosen_or_generated(password: Option<&str>) -> Result<String> {
    match password {
        Some(p) if p.len() < MIN_PASSWORD_LEN || p.len() > MAX_PASSWORD_LEN => {
            Err(Error::InvalidPassword("must be 8 to 1024 bytes long"))
        }
        Some(p) => Ok(p.to_owned()),
        None => Ok(secret::generate_password()),
    }
}

fn from_unix(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}
