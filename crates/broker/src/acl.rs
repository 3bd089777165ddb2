//! Who may publish and subscribe where: the topic scheme of docs/topics.md.
//!
//! ```text
//! tributary/v1/{device}/...            a device's own data: only that device publishes here
//! tributary/v1/{device}/commands/...   commands to the device: its owner publishes,
//!                                      the device subscribes
//! ```
//!
//! - A device publishes under its own prefix, except `commands/`, and
//!   subscribes only within its own `commands/`.
//! - An owner subscribes to anything under the prefixes of the devices it
//!   owns, and publishes only to their `commands/`.
//! - The device level of a filter must be a literal name: `+` or `#` there
//!   would reach other people's devices.
//! - Anonymous clients (only with `--allow-anonymous` on loopback, for
//!   trying things out) may do anything.
//!
//! Identity comes from authentication, never from the topic (DESIGN.md
//! principle 3): the checks below take the authenticated identity and ask
//! the account store who owns a device.

use tributary_accounts::Identity;

/// The first two levels of every topic in the scheme.
const ROOT: [&str; 2] = ["tributary", "v1"];
/// The level under a device that carries commands to it.
const COMMANDS: &str = "commands";

/// Answers "who owns this device?" (the account store, or a test table).
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
    match identity {
        Identity::Device { device, .. } => scheme.device == device && scheme.rest[0] != COMMANDS,
        Identity::Owner { owner } => {
            scheme.rest[0] == COMMANDS
                && owners.owner_of(scheme.device).as_deref() == Some(owner.as_str())
        }
    }
}

/// True when `identity` may subscribe to `filter` (a valid topic filter; for
/// a shared subscription, the filter inside `$share/{group}/`).
pub fn may_subscribe(identity: Option<&Identity>, owners: &dyn Owners, filter: &str) -> bool {
    let Some(identity) = identity else {
        return true;
    };
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
    }
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

    #[test]
    fn anonymous_clients_may_do_anything() {
        assert!(may_publish(None, &owners(), "any/topic"));
        assert!(may_subscribe(None, &owners(), "#"));
    }
}
