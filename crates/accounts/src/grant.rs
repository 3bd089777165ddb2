//! What a service may do beyond connecting: its grants.
//!
//! A service is a machine client that is nobody's device (the Kafka bridge,
//! a data processor), so it reaches devices only through what it was
//! granted when it was added. In the accounts file the grants are a list
//! of names, in [`Grant::ALL`] order:
//!
//! ```text
//! "grants": ["read", "command"]
//! ```

use serde::{Deserialize, Serialize};

use crate::Error;

/// One thing a service may be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grant {
    /// Subscribe to any device's topics, with wildcards at the device level
    /// (`tributary/v1/+/senml`, `tributary/v1/#`).
    Read,
    /// Publish to the `commands/...` of any existing device.
    Command,
    /// Define pooled packs and release them (docs/packs.md): the buyer's
    /// side. It reads no one's data directly, only the noisy aggregates of
    /// the owners who opted in.
    Packs,
}

impl Grant {
    /// Every grant, in the order they are listed.
    pub const ALL: [Grant; 3] = [Grant::Read, Grant::Command, Grant::Packs];

    pub fn as_str(self) -> &'static str {
        match self {
            Grant::Read => "read",
            Grant::Command => "command",
            Grant::Packs => "packs",
        }
    }
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Grant {
    type Err = Error;

    /// `read` or `command`, as typed on the command line.
    fn from_str(s: &str) -> Result<Grant, Error> {
        Grant::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| Error::UnknownGrant(s.escape_debug().take(80).collect()))
    }
}

/// The grants of one service: a set of [`Grant`]s, small enough to copy
/// into every [`Identity::Service`](crate::Identity::Service).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "Vec<Grant>", from = "Vec<Grant>")]
pub struct Grants {
    pub read: bool,
    pub command: bool,
    pub packs: bool,
}

impl Grants {
    pub fn contains(self, grant: Grant) -> bool {
        match grant {
            Grant::Read => self.read,
            Grant::Command => self.command,
            Grant::Packs => self.packs,
        }
    }

    /// True when nothing is granted (a service needs at least one grant).
    pub fn is_empty(self) -> bool {
        !Grant::ALL.into_iter().any(|g| self.contains(g))
    }

    /// The grants held, in [`Grant::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Grant> {
        Grant::ALL.into_iter().filter(move |g| self.contains(*g))
    }
}

impl FromIterator<Grant> for Grants {
    /// The set of the grants given; a repeated grant counts once.
    fn from_iter<I: IntoIterator<Item = Grant>>(grants: I) -> Grants {
        let mut set = Grants::default();
        for grant in grants {
            match grant {
                Grant::Read => set.read = true,
                Grant::Command => set.command = true,
                Grant::Packs => set.packs = true,
            }
        }
        set
    }
}

impl From<Vec<Grant>> for Grants {
    fn from(grants: Vec<Grant>) -> Grants {
        grants.into_iter().collect()
    }
}

impl From<Grants> for Vec<Grant> {
    fn from(grants: Grants) -> Vec<Grant> {
        grants.iter().collect()
    }
}

/// `read,command`; `-` for none.
impl std::fmt::Display for Grants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        for (i, grant) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(grant.as_str())?;
        }
        Ok(())
    }
}
