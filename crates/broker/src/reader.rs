//! What a reader that is not the data's owner receives (principle 8 of
//! docs/architecture.md; docs/consent.md, "Enforcement"), and the audit
//! of what it received.
//!
//! - A service receives a record only when its owner granted the service a
//!   consent that is live on this node ([`LiveConsents`]), and then only the
//!   consented measurement types (`tributary_rights::filter`): a pack mixing
//!   types is cut to the consented records, anything that is not SenML
//!   measurements (commands included) is withheld.
//! - An admin receives everything, as before; every delivery of an owner's
//!   data to an admin is audited.
//! - Devices, owners and anonymous clients are not affected: the ACL
//!   already keeps an owner to their own devices.
//!
//! Every delivery of an owner's data to a service or an admin is counted in
//! the broker's audit [`Aggregator`], which the node's audit writer empties
//! into the store.

use std::sync::Arc;

use tributary_accounts::Identity;
use tributary_log::Record;
use tributary_rights::audit::{ActorKind, Aggregator, Delivery};
use tributary_rights::consent::LiveConsents;
use tributary_rights::filter::{filter_for_service, Filtered};

/// The audit facts of one delivery, kept until it was sent.
pub(crate) struct Audited {
    kind: ActorKind,
    consent_id: Option<String>,
}

/// What one record becomes for one reader.
pub(crate) enum ForReader {
    /// Send it as it is, unaudited (the data's owner, a device, anonymous).
    Free,
    /// Send this (the record, or a copy cut to the consented records) and
    /// audit the delivery.
    Send(Arc<Record>, Audited),
    /// Nothing of it may reach this reader.
    Withheld,
}

/// True for the identities whose deliveries are checked and audited.
pub(crate) fn is_audited(identity: Option<&Identity>) -> bool {
    matches!(
        identity,
        Some(Identity::Service { .. } | Identity::Admin { .. })
    )
}

/// True for the readers whose deliveries are filtered or audited (services
/// and admins): they are handed the opened record, not its sealed bytes.
pub(crate) fn reads_for_others(identity: Option<&Identity>) -> bool {
    matches!(
        identity,
        Some(Identity::Service { .. }) | Some(Identity::Admin { .. })
    )
}

pub(crate) fn for_reader(
    consents: &LiveConsents,
    identity: Option<&Identity>,
    record: &Arc<Record>,
) -> ForReader {
    match identity {
        Some(Identity::Service { service, .. }) => for_service(consents, service, record),
        Some(Identity::Admin { .. }) if !record.owner.is_empty() => ForReader::Send(
            record.clone(),
            Audited {
                kind: ActorKind::Admin,
                consent_id: None,
            },
        ),
        _ => ForReader::Free,
    }
}

fn for_service(consents: &LiveConsents, service: &str, record: &Arc<Record>) -> ForReader {
    // A record without an owner is a service's or admin's command: no
    // one's data, and no measurement.
    if record.owner.is_empty() {
        return ForReader::Withheld;
    }
    let Some(grant) = consents.grant(service, &record.owner) else {
        return ForReader::Withheld;
    };
    let properties = tributary_mqtt::stored::load_properties(&record.properties);
    let received_ms = i64::try_from(record.receive_time_ms).unwrap_or(i64::MAX);
    let audited = Audited {
        kind: ActorKind::Service,
        consent_id: Some(grant.id.clone()),
    };
    match filter_for_service(
        &grant.types,
        properties.content_type.as_deref(),
        &record.topic,
        &record.payload,
        received_ms,
    ) {
        Filtered::Whole => ForReader::Send(record.clone(), audited),
        Filtered::Part(payload) => {
            let cut = Record {
                payload: payload.into(),
                ..Record::clone(record)
            };
            ForReader::Send(Arc::new(cut), audited)
        }
        Filtered::Nothing => ForReader::Withheld,
    }
}

/// Counts one delivery that went out.
pub(crate) fn audit_sent(
    audit: &Aggregator,
    identity: Option<&Identity>,
    session: &str,
    record: &Record,
    audited: &Audited,
) {
    let actor = match identity {
        Some(Identity::Service { service, .. }) => service.as_str(),
        Some(Identity::Admin { admin }) => admin.as_str(),
        _ => return,
    };
    audit.record(Delivery {
        owner: &record.owner,
        actor_kind: audited.kind,
        actor,
        session,
        device: &record.device,
        consent_id: audited.consent_id.as_deref(),
        at_ms: i64::try_from(crate::persist::unix_ms()).unwrap_or(i64::MAX),
    });
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use tributary_rights::consent::Grant;

    use super::*;

    const PACK: &[u8] =
        br#"[{"n":"heart_rate","v":72,"t":1700000000},{"n":"steps","v":10,"t":1700000000}]"#;

    fn record(owner: &str, topic: &str, payload: &[u8]) -> Arc<Record> {
        Arc::new(Record {
            receive_time_ms: 1_700_000_000_000,
            topic: topic.into(),
            qos: 1,
            retain: false,
            properties: Default::default(),
            payload: payload.to_vec().into(),
            client_id: "d:w1:c".into(),
            message_id: tributary_log::MessageId(1),
            owner: owner.into(),
            device: "w1".into(),
        })
    }

    fn service() -> Identity {
        Identity::Service {
            service: "study".into(),
            grants: tributary_accounts::Grants {
                read: true,
                command: false,
                packs: false,
            },
        }
    }

    fn consents(types: &[&str]) -> LiveConsents {
        let live = LiveConsents::default();
        live.replace([(
            "study".to_string(),
            "ann".to_string(),
            Grant {
                id: "c1".into(),
                types: types.iter().map(|t| t.to_string()).collect::<HashSet<_>>(),
            },
        )]);
        live
    }

    #[test]
    fn a_service_gets_only_consenting_owners_consented_types() {
        let live = consents(&["steps"]);
        let s = service();
        let ann = record("ann", "tributary/v1/w1/senml", PACK);
        let ForReader::Send(cut, audited) = for_reader(&live, Some(&s), &ann) else {
            panic!("ann consented")
        };
        assert_eq!(audited.consent_id.as_deref(), Some("c1"));
        let text = String::from_utf8(cut.payload.to_vec()).unwrap();
        assert!(
            text.contains("steps") && !text.contains("heart_rate"),
            "{text}"
        );
        let bob = record("bob", "tributary/v1/w2/senml", PACK);
        assert!(matches!(
            for_reader(&live, Some(&s), &bob),
            ForReader::Withheld
        ));
        let raw = record("ann", "tributary/v1/w1/raw", b"hello");
        assert!(matches!(
            for_reader(&live, Some(&s), &raw),
            ForReader::Withheld
        ));
        let command = record("", "tributary/v1/w1/commands/senml", PACK);
        assert!(matches!(
            for_reader(&live, Some(&s), &command),
            ForReader::Withheld
        ));
        live.replace([]);
        assert!(matches!(
            for_reader(&live, Some(&s), &ann),
            ForReader::Withheld
        ));
    }

    #[test]
    fn admins_read_everything_audited_and_owners_are_not_affected() {
        let live = LiveConsents::default();
        let ann = record("ann", "tributary/v1/w1/raw", b"hello");
        let admin = Identity::Admin {
            admin: "ops".into(),
        };
        assert!(matches!(
            for_reader(&live, Some(&admin), &ann),
            ForReader::Send(
                _,
                Audited {
                    kind: ActorKind::Admin,
                    ..
                }
            )
        ));
        let owner = Identity::Owner {
            owner: "ann".into(),
        };
        assert!(matches!(
            for_reader(&live, Some(&owner), &ann),
            ForReader::Free
        ));
        assert!(matches!(for_reader(&live, None, &ann), ForReader::Free));
        let agg = Aggregator::new(10);
        let audited = Audited {
            kind: ActorKind::Admin,
            consent_id: None,
        };
        audit_sent(&agg, Some(&admin), "a:ops:c", &ann, &audited);
        audit_sent(&agg, Some(&owner), "o:ann:c", &ann, &audited);
        let entries = agg.take();
        assert_eq!(entries.len(), 1);
        assert_eq!(
            (entries[0].actor.as_str(), entries[0].owner.as_str()),
            ("ops", "ann")
        );
    }
}
