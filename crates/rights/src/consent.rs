//! A service's request for consent, its states, and the table of live
//! consents a node enforces.
//!
//! A request names an owner, the measurement types (SenML record names as
//! stored, e.g. `heart_rate`), a DPV purpose ([`crate::purpose`]), how long
//! the service keeps what it reads, and the third parties it passes it to.
//! The owner decides: `pending` → `granted` or `refused`; `granted` →
//! `revoked`. Nothing else moves, and each move yields a signed receipt
//! ([`crate::receipt`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::purpose::{purpose_of, Purpose};

/// Most measurement types one request may name.
pub const MAX_TYPES: usize = 64;
/// Most third parties one request may name.
pub const MAX_THIRD_PARTIES: usize = 16;
/// Longest third party name, in bytes.
pub const MAX_THIRD_PARTY_BYTES: usize = 200;
/// Longest retention, in days (ten years).
pub const MAX_RETENTION_DAYS: u32 = 3_650;

/// Where a consent stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Asked, not decided yet: nothing is delivered.
    Pending,
    /// The owner agreed: the consented types are delivered.
    Granted,
    /// The owner said no.
    Refused,
    /// The owner agreed, then withdrew: nothing is delivered from then on.
    Revoked,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Granted => "granted",
            Status::Refused => "refused",
            Status::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        [
            Status::Pending,
            Status::Granted,
            Status::Refused,
            Status::Revoked,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    /// The state a decision leads to from `self`, or `None` when the
    /// decision does not apply (granting a revoked consent: the service
    /// asks again instead, so each grant has its own request and receipt).
    pub fn after(self, decision: Decision) -> Option<Status> {
        match (self, decision) {
            (Status::Pending, Decision::Grant) => Some(Status::Granted),
            (Status::Pending, Decision::Refuse) => Some(Status::Refused),
            (Status::Granted, Decision::Revoke) => Some(Status::Revoked),
            _ => None,
        }
    }
}

/// What an owner does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Grant,
    Refuse,
    Revoke,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Grant => "grant",
            Decision::Refuse => "refuse",
            Decision::Revoke => "revoke",
        }
    }
}

/// What a service asks, as it sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The owner asked.
    pub owner: String,
    /// Measurement names, as stored.
    pub types: Vec<String>,
    /// A DPV purpose term.
    pub purpose: String,
    /// How long the service keeps what it reads, in days.
    pub retention_days: u32,
    /// Whom the service passes the data to; empty for nobody.
    #[serde(default)]
    pub third_parties: Vec<String>,
}

/// Why a request is refused before it is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("types: name at least one measurement type")]
    NoTypes,
    #[error("types: at most {MAX_TYPES} measurement types")]
    TooManyTypes,
    #[error("types: {0:?} is not a measurement name (1 to {max} bytes of letters, digits, '-', ':', '.', '/', '_', starting with a letter or digit)", max = tributary_senml::MAX_NAME_BYTES)]
    BadType(String),
    #[error("purpose: {0:?} is not a known DPV purpose (see docs/consent.md for the list)")]
    UnknownPurpose(String),
    #[error("retention_days: must be 1 to {MAX_RETENTION_DAYS}")]
    BadRetention,
    #[error("third_parties: at most {MAX_THIRD_PARTIES} names of 1 to {MAX_THIRD_PARTY_BYTES} bytes, without control characters")]
    BadThirdParties,
}

impl Request {
    /// Checks every field; the types come back sorted and without
    /// duplicates, with the purpose found.
    pub fn validate(mut self) -> Result<(Request, &'static Purpose), Invalid> {
        if self.types.is_empty() {
            return Err(Invalid::NoTypes);
        }
        if self.types.len() > MAX_TYPES {
            return Err(Invalid::TooManyTypes);
        }
        for t in &self.types {
            if !is_measurement_name(t) {
                return Err(Invalid::BadType(t.chars().take(80).collect()));
            }
        }
        self.types.sort();
        self.types.dedup();
        let purpose = purpose_of(&self.purpose)
            .ok_or_else(|| Invalid::UnknownPurpose(self.purpose.chars().take(80).collect()))?;
        if self.retention_days == 0 || self.retention_days > MAX_RETENTION_DAYS {
            return Err(Invalid::BadRetention);
        }
        let bad_party = |p: &String| {
            p.is_empty() || p.len() > MAX_THIRD_PARTY_BYTES || p.chars().any(char::is_control)
        };
        if self.third_parties.len() > MAX_THIRD_PARTIES || self.third_parties.iter().any(bad_party)
        {
            return Err(Invalid::BadThirdParties);
        }
        Ok((self, purpose))
    }
}

/// A SenML name as RFC 8428 §4.5.1 allows it (what the store keeps).
fn is_measurement_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= tributary_senml::MAX_NAME_BYTES
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "-:./_".contains(c))
}

/// One granted consent, as a node enforces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The consent's id (audit entries name it).
    pub id: String,
    /// The measurement names the service may read.
    pub types: HashSet<String>,
}

/// The granted consents a node enforces, by (service, owner): read on every
/// delivery to a service, replaced whole when the store says consents
/// changed (docs/consent.md, "Enforcement"). An owner has at most one
/// granted consent per service in effect: the newest.
#[derive(Debug, Default)]
pub struct LiveConsents {
    table: RwLock<HashMap<String, HashMap<String, Arc<Grant>>>>,
}

impl LiveConsents {
    /// The consent under which `service` may read `owner`'s data, if any.
    pub fn grant(&self, service: &str, owner: &str) -> Option<Arc<Grant>> {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        table.get(service)?.get(owner).cloned()
    }

    /// Replaces the table: `grants` are (service, owner, grant), later ones
    /// win for the same pair.
    pub fn replace(&self, grants: impl IntoIterator<Item = (String, String, Grant)>) {
        let mut next: HashMap<String, HashMap<String, Arc<Grant>>> = HashMap::new();
        for (service, owner, grant) in grants {
            next.entry(service)
                .or_default()
                .insert(owner, Arc::new(grant));
        }
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request {
        Request {
            owner: "ann".into(),
            types: vec!["steps".into(), "heart_rate".into(), "steps".into()],
            purpose: "dpv:ResearchAndDevelopment".into(),
            retention_days: 30,
            third_parties: vec![],
        }
    }

    #[test]
    fn a_good_request_comes_back_sorted_and_deduplicated() {
        let (r, p) = request().validate().unwrap();
        assert_eq!(r.types, ["heart_rate", "steps"]);
        assert_eq!(p.term, "dpv:ResearchAndDevelopment");
    }

    #[test]
    fn each_bad_field_is_named() {
        let mut r = request();
        r.types.clear();
        assert_eq!(r.validate().unwrap_err(), Invalid::NoTypes);
        let mut r = request();
        r.purpose = "dpv:Whatever".into();
        assert!(matches!(r.validate(), Err(Invalid::UnknownPurpose(_))));
        let mut r = request();
        r.types.push("no spaces".into());
        assert!(matches!(r.validate(), Err(Invalid::BadType(_))));
        let mut r = request();
        r.retention_days = 0;
        assert_eq!(r.validate().unwrap_err(), Invalid::BadRetention);
        let mut r = request();
        r.third_parties = vec!["".into()];
        assert_eq!(r.validate().unwrap_err(), Invalid::BadThirdParties);
        let mut r = request();
        r.types = (0..=MAX_TYPES).map(|i| format!("t{i}")).collect();
        assert_eq!(r.validate().unwrap_err(), Invalid::TooManyTypes);
    }

    #[test]
    fn only_the_listed_moves_are_allowed() {
        use Decision::*;
        assert_eq!(Status::Pending.after(Grant), Some(Status::Granted));
        assert_eq!(Status::Pending.after(Refuse), Some(Status::Refused));
        assert_eq!(Status::Granted.after(Revoke), Some(Status::Revoked));
        assert_eq!(Status::Pending.after(Revoke), None);
        assert_eq!(Status::Revoked.after(Grant), None);
        assert_eq!(Status::Refused.after(Grant), None);
        assert_eq!(Status::Granted.after(Grant), None);
    }

    #[test]
    fn the_table_answers_per_service_and_owner() {
        let live = LiveConsents::default();
        assert!(live.grant("svc", "ann").is_none());
        live.replace([(
            "svc".to_string(),
            "ann".to_string(),
            Grant {
                id: "c1".into(),
                types: HashSet::from(["steps".to_string()]),
            },
        )]);
        assert_eq!(live.grant("svc", "ann").unwrap().id, "c1");
        assert!(live.grant("svc", "bob").is_none());
        assert!(live.grant("other", "ann").is_none());
        live.replace([]);
        assert!(live.grant("svc", "ann").is_none());
    }
}
