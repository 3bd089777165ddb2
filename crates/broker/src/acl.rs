//! Who may publish and subscribe where: the topic scheme of docs/topics.md.
//!
//! ```text
//! tributary/v1/{device}/...            a device's own data: only that device publishes here
//! tributary/v1/{device}/commands/...   commands to the device: its owner, a service
//!                                      granted `command` or an admin publishes,
//!                                      the device subscribes
//! ```
//!
//! - A device publishes under its own prefix, except `commands/`, and
//!   subscribes only within its own `commands/`.
//! - An owner subscribes to anything under the prefixes of the devices it
//!   owns, and publishes only to their `commands/`.
//! - For devices and owners the device level of a filter must be a literal
//!   name: `+` or `#` there would reach other people's devices.
//! - A service granted `read`, and an admin, subscribe to any filter under
//!   `tributary/v1/`, wildcards at the device level included: reaching
//!   every device is what they are for. What a service then *receives* is
//!   only what owners consented to (`reader.rs`, docs/consent.md); what an
//!   admin receives is audited.
//! - A service granted `command`, and an admin, publish to the `commands/`
//!   of any existing device.
//! - Nobody but the device itself publishes a device's data, whatever
//!   their grants: a record's owner and device must mean who produced it.
//! - Anonymous clients (only with `--allow-anonymous` on loopback, for
//!   trying things out) may do anything.
//!
//! Identity comes from authentication, never from the topic (principle 3 of
//! docs/architecture.md): the checks below take the authenticated identity and ask
//! the account store who owns a device.

use tributary_accounts::{Grant, Identity};

/// The first two levels of every topic in the scheme.
const ROOT: [&str; 2] = ["tributary", "v1"];
/// The level under a device that carries commands to it.
const COMMANDS: &str = "commands";

/// Answers "who owns this device?" (the account store, or a test table);
/// `None` also means "no such device".
pub trait Owners {
    fn owner_of(&self, device: &str) -> Option<String>;
}

impl Owners for tributary_accounts::Accounts {
    fn owner_of(&self, device: &str) -> Option<String> {
        tributary_accounts::Accounts::owner_of(self, device)
    }
}

/// A topic or filter split as the scheme sees it.
struct Scheme<'a> {
    device: &'a str,
    /// The levels below the device (at least one).
    rest: Vec<&'a str>,
}

fn parse(topic: &str) -> Option<Scheme<'_>> {
    let mut levels = topic.split('/');
    if levels.next()? != ROOT[0] || levels.next()? != ROOT[1] {
        return None;
    }
    let device = levels.next()?;
    let rest: Vec<&str> = levels.collect();
    if device.is_empty() || rest.is_empty() {
        return None;
    }
    Some(Scheme { device, rest })
}

/// True when `identity` may publish to `topic`.
pub fn may_publish(identity: Option<&Identity>, owners: &dyn Owners, topic: &str) -> bool {
    let Some(identity) = identity else {
        return true;
    };
    let Some(scheme) = parse(topic) else {
        return false;
    };
    let is_command = scheme.rest[0] == COMMANDS;
    match identity {
        Identity::Device { device, .. } => scheme.device == device && !is_command,
        Identity::Owner { owner } => {
            is_command && owners.owner_of(scheme.device).as_deref() == Some(owner.as_str())
        }
        Identity::Service { grants, .. } => {
            grants.contains(Grant::Command)
                && is_command
                && owners.owner_of(scheme.device).is_some()
        }
        Identity::Admin { .. } => is_command && owners.owner_of(scheme.device).is_some(),
    }
}

/// True when `identity` may subscribe to `filter` (a valid topic filter; for
/// a shared subscription, the filter inside `$share/{group}/`).
pub fn may_subscribe(identity: Option<&Identity>, owners: &dyn Owners, filter: &str) -> bool {
    let Some(identity) = identity else {
        return true;
    };
    let reads_everything = match identity {
        Identity::Service { grants, .. } => grants.contains(Grant::Read),
        Identity::Admin { .. } => true,
        Identity::Device { .. } | Identity::Owner { .. } => false,
    };
    if reads_everything {
        return under_root(filter);
    }
    let Some(scheme) = parse(filter) else {
        return false;
    };
    if scheme.device == "+" || scheme.device == "#" {
        return false;
    }
    match identity {
        Identity::Device { device, .. } => scheme.device == device && scheme.rest[0] == COMMANDS,
        Identity::Owner { owner } => {
            owners.owner_of(scheme.device).as_deref() == Some(owner.as_str())
        }
        // A service without `read` has nothing to subscribe to.
        Identity::Service { .. } | Identity::Admin { .. } => false,
    }
}

/// True for a filter of at least three levels whose first two are
/// `tributary/v1` (so `tributary/v1/#` and `tributary/v1/+/senml`, but not
/// `#` or `tributary/+/...`, which would reach beyond the scheme).
fn under_root(filter: &str) -> bool {
    let mut levels = filter.split('/');
    levels.next() == Some(ROOT[0]) && levels.next() == Some(ROOT[1]) && levels.next().is_some()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct Table(HashMap<&'static str, &'static str>);

    impl Owners for Table {
        fn owner_of(&self, device: &str) -> Option<String> {
            self.0.get(device).map(|o| o.to_string())
        }
    }

    fn owners() -> Table {
        Table(HashMap::from([("d1", "ann"), ("d2", "ann"), ("d3", "bob")]))
    }

    fn device(owner: &str, device: &str) -> Identity {
        Identity::Device {
            owner: owner.into(),
            device: device.into(),
        }
    }

    fn owner(owner: &str) -> Identity {
        Identity::Owner {
            owner: owner.into(),
        }
    }

    #[test]
    fn a_device_publishes_only_its_own_data() {
        let d1 = device("ann", "d1");
        let t = owners();
        assert!(may_publish(Some(&d1), &t, "tributary/v1/d1/senml"));
        assert!(may_publish(Some(&d1), &t, "tributary/v1/d1/hr/raw"));
        assert!(
            !may_publish(Some(&d1), &t, "tributary/v1/d2/senml"),
            "a sibling device"
        );
        assert!(
            !may_publish(Some(&d1), &t, "tributary/v1/d3/senml"),
            "another owner's device"
        );
        assert!(
            !may_publish(Some(&d1), &t, "tributary/v1/d1/commands/reboot"),
            "its own commands"
        );
        assert!(
            !may_publish(Some(&d1), &t, "tributary/v1/d1"),
            "no level below the device"
        );
        assert!(!may_publish(Some(&d1), &t, "other/topic"));
    }

    #[test]
    fn a_device_subscribes_only_to_its_commands() {
        let d1 = device("ann", "d1");
        let t = owners();
        assert!(may_subscribe(Some(&d1), &t, "tributary/v1/d1/commands/#"));
        assert!(!may_subscribe(Some(&d1), &t, "tributary/v1/d1/#"));
        assert!(!may_subscribe(Some(&d1), &t, "tributary/v1/d2/commands/#"));
        assert!(!may_subscribe(Some(&d1), &t, "tributary/v1/+/commands/#"));
        assert!(!may_subscribe(Some(&d1), &t, "#"));
    }

    #[test]
    fn an_owner_reads_its_devices_and_commands_them() {
        let ann = owner("ann");
        let t = owners();
        assert!(may_subscribe(Some(&ann), &t, "tributary/v1/d1/#"));
        assert!(may_subscribe(Some(&ann), &t, "tributary/v1/d2/+/x"));
        assert!(
            !may_subscribe(Some(&ann), &t, "tributary/v1/d3/#"),
            "bob's device"
        );
        assert!(
            !may_subscribe(Some(&ann), &t, "tributary/v1/+/senml"),
            "a wildcard over devices"
        );
        assert!(!may_subscribe(Some(&ann), &t, "tributary/v1/#"));
        assert!(may_publish(
            Some(&ann),
            &t,
            "tributary/v1/d1/commands/reboot"
        ));
        assert!(
            !may_publish(Some(&ann), &t, "tributary/v1/d1/senml"),
            "data is the device's to publish"
        );
        assert!(!may_publish(
            Some(&ann),
            &t,
            "tributary/v1/d3/commands/reboot"
        ));
    }

    fn service(read: bool, command: bool) -> Identity {
        Identity::Service {
            service: "bridge".into(),
            grants: tributary_accounts::Grants {
                read,
                command,
                packs: false,
            },
        }
    }

    fn admin() -> Identity {
        Identity::Admin {
            admin: "ops".into(),
        }
    }

    #[test]
    fn a_service_granted_read_subscribes_across_devices() {
        let t = owners();
        for reader in [service(true, false), service(true, true)] {
            let reader = Some(&reader);
            assert!(may_subscribe(reader, &t, "tributary/v1/+/senml"));
            assert!(may_subscribe(reader, &t, "tributary/v1/#"));
            assert!(may_subscribe(reader, &t, "tributary/v1/d3/#"));
            assert!(may_subscribe(reader, &t, "tributary/v1/+/commands/#"));
            assert!(
                may_subscribe(reader, &t, "tributary/v1/unknown/x"),
                "a device that may exist later"
            );
            assert!(!may_subscribe(reader, &t, "#"), "beyond the scheme");
            assert!(!may_subscribe(reader, &t, "+/v1/d1/senml"));
            assert!(!may_subscribe(reader, &t, "tributary/+/d1/senml"));
            assert!(!may_subscribe(reader, &t, "tributary/v1"));
            assert!(!may_subscribe(reader, &t, "other/topic"));
        }
    }

    #[test]
    fn a_service_without_read_subscribes_to_nothing() {
        let commander = service(false, true);
        let t = owners();
        assert!(!may_subscribe(Some(&commander), &t, "tributary/v1/+/senml"));
        assert!(!may_subscribe(
            Some(&commander),
            &t,
            "tributary/v1/d1/senml"
        ));
        assert!(!may_subscribe(
            Some(&commander),
            &t,
            "tributary/v1/d1/commands/#"
        ));
    }

    #[test]
    fn a_service_granted_command_commands_any_existing_device() {
        let commander = service(false, true);
        let t = owners();
        assert!(may_publish(
            Some(&commander),
            &t,
            "tributary/v1/d1/commands/reboot"
        ));
        assert!(may_publish(
            Some(&commander),
            &t,
            "tributary/v1/d3/commands"
        ));
        assert!(
            !may_publish(Some(&commander), &t, "tributary/v1/d9/commands/reboot"),
            "no such device"
        );
        let reader = service(true, false);
        assert!(
            !may_publish(Some(&reader), &t, "tributary/v1/d1/commands/reboot"),
            "read does not grant command"
        );
    }

    #[test]
    fn nobody_but_the_device_publishes_its_data() {
        let t = owners();
        for identity in [
            service(true, true),
            service(false, true),
            admin(),
            owner("ann"),
            device("ann", "d2"),
        ] {
            for topic in [
                "tributary/v1/d1/senml",
                "tributary/v1/d1/hr/raw",
                "tributary/v1/d1",
                "other/topic",
            ] {
                assert!(
                    !may_publish(Some(&identity), &t, topic),
                    "{identity:?} may publish to {topic}"
                );
            }
        }
        assert!(may_publish(
            Some(&device("ann", "d1")),
            &t,
            "tributary/v1/d1/senml"
        ));
    }

    #[test]
    fn an_admin_reads_everything_and_commands_existing_devices() {
        let ops = admin();
        let t = owners();
        assert!(may_subscribe(Some(&ops), &t, "tributary/v1/#"));
        assert!(may_subscribe(Some(&ops), &t, "tributary/v1/+/senml"));
        assert!(may_subscribe(Some(&ops), &t, "tributary/v1/d3/commands/+"));
        assert!(!may_subscribe(Some(&ops), &t, "#"));
        assert!(!may_subscribe(Some(&ops), &t, "$SYS/#"));
        assert!(may_publish(
            Some(&ops),
            &t,
            "tributary/v1/d3/commands/reboot"
        ));
        assert!(!may_publish(
            Some(&ops),
            &t,
            "tributary/v1/d9/commands/reboot"
        ));
    }

    #[test]
    fn a_shared_subscription_is_checked_on_its_inner_filter() {
        // As the SUBSCRIBE handler does: the ACL sees the filter inside `$share/{group}/`.
        let t = owners();
        let check = |identity: &Identity, filter: &str| {
            let inner = crate::shared::inner_filter(filter).unwrap_or(filter);
            may_subscribe(Some(identity), &t, inner)
        };
        assert!(check(
            &service(true, false),
            "$share/g/tributary/v1/+/senml"
        ));
        assert!(!check(
            &service(false, true),
            "$share/g/tributary/v1/+/senml"
        ));
        assert!(check(&admin(), "$share/g/tributary/v1/#"));
        assert!(!check(&admin(), "$share/g/#"));
        assert!(!check(&owner("ann"), "$share/g/tributary/v1/+/senml"));
        assert!(check(&owner("ann"), "$share/g/tributary/v1/d1/#"));
    }

    #[test]
    fn anonymous_clients_may_do_anything() {
        assert!(may_publish(None, &owners(), "any/topic"));
        assert!(may_subscribe(None, &owners(), "#"));
    }
}
