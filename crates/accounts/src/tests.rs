use std::path::Path;
use std::time::SystemTime;

use super::*;

type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn accounts_json(dir: &Path) -> std::io::Result<String> {
    std::fs::read_to_string(dir.join(store::FILE_NAME))
}

#[test]
fn add_list_revoke_round_trip() -> TestResult {
    let dir = tempfile::tempdir()?;
    assert_eq!(
        list(dir.path())?,
        Listing {
            owners: vec![],
            services: vec![],
            admins: vec![]
        }
    );
    add_owner(dir.path(), "ann", None)?;
    add_owner(dir.path(), "bob", Some("bobs password"))?;
    add_device(dir.path(), "ann", "watch")?;
    add_device(dir.path(), "ann", "phone")?;
    add_device(dir.path(), "bob", "ring")?;
    revoke_device(dir.path(), "phone")?;

    let listing = list(dir.path())?;
    let summary: Vec<(String, Vec<(String, bool)>)> = listing
        .owners
        .iter()
        .map(|o| {
            let devices = o
                .devices
                .iter()
                .map(|d| (d.name.clone(), d.revoked.is_some()));
            (o.name.clone(), devices.collect())
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "ann".to_owned(),
                vec![("phone".to_owned(), true), ("watch".to_owned(), false)]
            ),
            ("bob".to_owned(), vec![("ring".to_owned(), false)]),
        ]
    );
    let ann = &listing.owners[0];
    assert!(ann.created <= SystemTime::now());
    assert!(ann.created > SystemTime::now() - std::time::Duration::from_secs(60));
    Ok(())
}

#[test]
fn revoking_twice_keeps_the_first_time_and_writes_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    add_owner(dir.path(), "ann", None)?;
    add_device(dir.path(), "ann", "watch")?;
    revoke_device(dir.path(), "watch")?;
    let before = accounts_json(dir.path())?;
    revoke_device(dir.path(), "watch")?;
    assert_eq!(accounts_json(dir.path())?, before);
    Ok(())
}

#[test]
fn names_are_validated_with_a_message_naming_the_fault() -> TestResult {
    let dir = tempfile::tempdir()?;
    add_owner(dir.path(), "ann", None)?;
    let err = add_device(dir.path(), "ann", "a/b").expect_err("slash");
    assert_eq!(
        err.to_string(),
        "device name 'a/b' may contain only letters, digits, '_', '.', '-'"
    );
    let err = add_owner(dir.path(), ".hidden", None).expect_err("leading dot");
    assert_eq!(
        err.to_string(),
        "owner name '.hidden' may not start with '.'"
    );
    let err = add_owner(dir.path(), "", None).expect_err("empty");
    assert_eq!(
        err.to_string(),
        "owner name '' must be 1 to 64 characters long"
    );
    let long = "x".repeat(65);
    assert!(matches!(
        add_owner(dir.path(), &long, None),
        Err(Error::InvalidName { .. })
    ));
    assert!(add_owner(dir.path(), &"x".repeat(64), None).is_ok());
    for bad in ["a b", "é", "a+b", "a#", "line\nbreak", ".", ".."] {
        assert!(
            matches!(
                add_device(dir.path(), "ann", bad),
                Err(Error::InvalidName { .. })
            ),
            "{bad:?} accepted"
        );
    }
    let err = add_owner(dir.path(), "bell\x07", None).expect_err("control character");
    assert!(err.to_string().contains("'bell\\u{7}'"), "{err}");
    for good in ["a", "A-b_c.d", "0", "dev.1-x_Y"] {
        add_device(dir.path(), "ann", good)?;
    }
    Ok(())
}

#[test]
fn owners_and_devices_share_one_namespace() -> TestResult {
    let dir = tempfile::tempdir()?;
    add_owner(dir.path(), "ann", None)?;
    add_device(dir.path(), "ann", "d1")?;
    let err = add_owner(dir.path(), "ann", None).expect_err("owner twice");
    assert_eq!(err.to_string(), "owner ann already exists");
    let err = add_device(dir.path(), "ann", "d1").expect_err("device twice");
    assert_eq!(err.to_string(), "device d1 already exists");
    let err = add_device(dir.path(), "ann", "ann").expect_err("device named like an owner");
    assert!(matches!(
        err,
        Error::Exists {
            kind: Kind::Owner,
            wanted: Kind::Device,
            ..
        }
    ));
    let err = add_owner(dir.path(), "d1", None).expect_err("owner named like a device");
    assert!(
        err.to_string().contains("device d1 already exists"),
        "{err}"
    );
    // A revoked device keeps its name.
    revoke_device(dir.path(), "d1")?;
    assert!(add_device(dir.path(), "ann", "d1").is_err());
    Ok(())
}

#[test]
fn unknown_owner_and_device_are_named() -> TestResult {
    let dir = tempfile::tempdir()?;
    let err = add_device(dir.path(), "bob", "d1").expect_err("no owner");
    assert_eq!(err.to_string(), "no owner named bob");
    let err = revoke_device(dir.path(), "d9").expect_err("no device");
    assert_eq!(err.to_string(), "no device named d9");
    // A device is not an owner.
    add_owner(dir.path(), "ann", None)?;
    add_device(dir.path(), "ann", "d1")?;
    let err = add_device(dir.path(), "d1", "d2").expect_err("device as owner");
    assert_eq!(err.to_string(), "no owner named d1");
    Ok(())
}

#[test]
fn chosen_passwords_are_bounded() -> TestResult {
    let dir = tempfile::tempdir()?;
    assert!(matches!(
        add_owner(dir.path(), "ann", Some("short")),
        Err(Error::InvalidPassword(_))
    ));
    let long = "p".repeat(1025);
    assert!(add_owner(dir.path(), "ann", Some(&long)).is_err());
    assert_eq!(add_owner(dir.path(), "ann", Some("eight ch"))?, "eight ch");
    Ok(())
}

#[test]
fn generated_secrets_have_the_documented_shape() -> TestResult {
    let dir = tempfile::tempdir()?;
    let password = add_owner(dir.path(), "ann", None)?;
    assert_eq!(password.len(), 24);
    assert!(password.bytes().all(|b| b.is_ascii_alphanumeric()));
    let token = add_device(dir.path(), "ann", "d1")?;
    assert_eq!(token.len(), 43, "32 bytes in base64url without padding");
    assert!(token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_ne!(add_device(dir.path(), "ann", "d2")?, token);
    assert_ne!(add_owner(dir.path(), "bob", None)?, password);
    Ok(())
}

#[test]
fn authenticate_devices_and_owners() -> TestResult {
    let dir = tempfile::tempdir()?;
    let password = add_owner(dir.path(), "ann", None)?;
    let token = add_device(dir.path(), "ann", "watch")?;
    let accounts = Accounts::open(dir.path())?;

    let watch = Identity::Device {
        owner: "ann".to_owned(),
        device: "watch".to_owned(),
    };
    let ann = Identity::Owner {
        owner: "ann".to_owned(),
    };
    assert_eq!(
        accounts.authenticate("watch", token.as_bytes()),
        Ok(watch.clone())
    );
    assert_eq!(
        accounts.authenticate("ann", password.as_bytes()),
        Ok(ann.clone())
    );
    // Again, from the cache.
    assert_eq!(accounts.authenticate("watch", token.as_bytes()), Ok(watch));
    assert_eq!(accounts.authenticate("ann", password.as_bytes()), Ok(ann));

    assert_eq!(
        accounts.authenticate("watch", b"wrong"),
        Err(AuthError::BadSecret)
    );
    assert_eq!(
        accounts.authenticate("watch", password.as_bytes()),
        Err(AuthError::BadSecret),
        "the owner's password is not the device's token"
    );
    assert_eq!(
        accounts.authenticate("ann", token.as_bytes()),
        Err(AuthError::BadSecret)
    );
    assert_eq!(accounts.authenticate("ann", b""), Err(AuthError::BadSecret));
    assert_eq!(
        accounts.authenticate("nobody", token.as_bytes()),
        Err(AuthError::UnknownUser)
    );
    assert_eq!(accounts.authenticate("", b""), Err(AuthError::UnknownUser));

    revoke_device(dir.path(), "watch")?;
    assert!(accounts.reload_if_changed()?);
    assert_eq!(
        accounts.authenticate("watch", token.as_bytes()),
        Err(AuthError::Revoked),
        "a cached token of a revoked device no longer counts"
    );
    assert!(!accounts.device_active("watch"));
    assert_eq!(accounts.owner_of("watch").as_deref(), Some("ann"));
    Ok(())
}

#[test]
fn cache_is_dropped_for_names_whose_hash_changed() -> TestResult {
    let dir = tempfile::tempdir()?;
    add_owner(dir.path(), "ann", Some("first password"))?;
    let accounts = Accounts::open(dir.path())?;
    assert!(accounts.authenticate("ann", b"first password").is_ok());
    // Replace ann by hand (no API changes a password yet): same name, new hash.
    let mut file = store::read(&dir.path().join(store::FILE_NAME))?.0;
    file.owners
        .get_mut("ann")
        .expect("ann was added")
        .password_hash = secret::hash(b"second password");
    file.generation += 1;
    std::fs::write(
        dir.path().join(store::FILE_NAME),
        serde_json::to_string(&file)?,
    )?;
    assert!(accounts.reload_if_changed()?);
    assert_eq!(
        accounts.authenticate("ann", b"first password"),
        Err(AuthError::BadSecret)
    );
    assert!(accounts.authenticate("ann", b"second password").is_ok());
    Ok(())
}

#[test]
fn the_file_never_holds_a_secret_in_clear() -> TestResult {
    let dir = tempfile::tempdir()?;
    let generated = add_owner(dir.path(), "ann", None)?;
    add_owner(dir.path(), "bob", Some("bobs chosen password"))?;
    let token = add_device(dir.path(), "ann", "watch")?;
    let json = accounts_json(dir.path())?;
    for secret in [generated.as_str(), "bobs chosen password", token.as_str()] {
        assert!(!json.contains(secret), "{secret} stored in clear");
    }
    assert_eq!(json.matches("$argon2id$").count(), 3, "{json}");
    let listing = format!("{:?}", list(dir.path())?);
    let accounts = format!("{:?}", Accounts::open(dir.path())?);
    for shown in [&listing, &accounts] {
        assert!(!shown.contains("argon2"), "{shown}");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join(store::FILE_NAME))?
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    Ok(())
}

#[test]
fn reload_picks_up_changes_written_by_admin_calls() -> TestResult {
    let dir = tempfile::tempdir()?;
    let accounts = Accounts::open(dir.path())?;
    assert!(accounts.is_empty());
    assert!(!accounts.reload_if_changed()?, "no file, still no file");

    add_owner(dir.path(), "ann", None)?;
    assert!(accounts.reload_if_changed()?);
    assert!(!accounts.is_empty());
    assert!(!accounts.reload_if_changed()?, "unchanged");

    let token = add_device(dir.path(), "ann", "watch")?;
    assert!(!accounts.device_active("watch"), "not before the reload");
    assert!(accounts.reload_if_changed()?);
    assert!(accounts.device_active("watch"));
    assert!(accounts.authenticate("watch", token.as_bytes()).is_ok());
    assert!(!accounts.reload_if_changed()?);

    // Touched but not changed: the stamp moves, the content does not.
    let path = dir.path().join(store::FILE_NAME);
    let text = std::fs::read(&path)?;
    std::fs::write(dir.path().join("copy"), &text)?;
    std::fs::rename(dir.path().join("copy"), &path)?;
    assert!(!accounts.reload_if_changed()?);

    // The file removed: no accounts, so no device stays active.
    std::fs::remove_file(&path)?;
    assert!(accounts.reload_if_changed()?);
    assert!(accounts.is_empty());
    assert!(!accounts.device_active("watch"));
    assert_eq!(
        accounts.authenticate("watch", token.as_bytes()),
        Err(AuthError::UnknownUser)
    );
    Ok(())
}

#[test]
fn concurrent_admin_calls_lose_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    add_owner(dir.path(), "ann", None)?;
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let dir = dir.path().to_owned();
            std::thread::spawn(move || -> Result<()> {
                for d in 0..5 {
                    add_device(&dir, "ann", &format!("t{t}-d{d}"))?;
                }
                Ok(())
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("no panic")?;
    }
    let listing = list(dir.path())?;
    assert_eq!(listing.owners[0].devices.len(), 40);
    let file = store::read(&dir.path().join(store::FILE_NAME))?.0;
    assert_eq!(file.generation, 41, "one write per call");
    Ok(())
}

#[test]
fn corrupt_file_gives_a_clear_error_and_keeps_the_loaded_view() -> TestResult {
    let dir = tempfile::tempdir()?;
    add_owner(dir.path(), "ann", None)?;
    let accounts = Accounts::open(dir.path())?;
    let path = dir.path().join(store::FILE_NAME);

    std::fs::write(&path, "{\"version\": 1, \"generation\": ")?;
    let err = Accounts::open(dir.path()).expect_err("truncated");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("corrupt accounts file {}: ", path.display())),
        "{message}"
    );
    assert!(matches!(
        accounts.reload_if_changed(),
        Err(Error::Corrupt { .. })
    ));
    assert!(!accounts.is_empty(), "the loaded view stays");
    assert!(
        add_device(dir.path(), "ann", "d1").is_err(),
        "no write over it"
    );

    std::fs::write(&path, r#"{"version": 2, "anything": []}"#)?;
    let err = Accounts::open(dir.path()).expect_err("newer version");
    assert!(err.to_string().contains("format version 2"), "{err}");

    let hash = secret::hash(b"x");
    let cases = [
        (
            format!(r#"{{"version":1,"generation":1,"owners":{{}},"devices":{{"d1":{{"owner":"bob","created_unix":0,"token_hash":"{hash}"}}}}}}"#),
            "device d1 belongs to bob, which is not an owner",
        ),
        (
            r#"{"version":1,"generation":1,"owners":{"ann":{"created_unix":0,"password_hash":"plain"}},"devices":{}}"#.to_owned(),
            "owner ann: not a PHC hash string",
        ),
        (
            format!(r#"{{"version":1,"generation":1,"owners":{{"a b":{{"created_unix":0,"password_hash":"{hash}"}}}},"devices":{{}}}}"#),
            "owner name 'a b' may contain only",
        ),
        (
            format!(r#"{{"version":1,"generation":1,"owners":{{"ann":{{"created_unix":0,"password_hash":"{hash}"}}}},"devices":{{"ann":{{"owner":"ann","created_unix":0,"token_hash":"{hash}"}}}}}}"#),
            "ann is both an owner and a device",
        ),
    ];
    for (text, expected) in cases {
        std::fs::write(&path, &text)?;
        let err = Accounts::open(dir.path()).expect_err(expected);
        assert!(err.to_string().contains(expected), "{err}");
    }
    Ok(())
}

const READ: Grants = Grants {
    read: true,
    command: false,
    packs: false,
};
const COMMAND: Grants = Grants {
    read: false,
    command: true,
    packs: false,
};

#[test]
fn authenticate_services_with_their_grants() -> TestResult {
    let dir = tempfile::tempdir()?;
    add_owner(dir.path(), "ann", None)?;
    let device_token = add_device(dir.path(), "ann", "watch")?;
    let reader = add_service(dir.path(), "reader", READ)?;
    let both: Grants = [Grant::Command, Grant::Read, Grant::Command]
        .into_iter()
        .collect();
    let bridge = add_service(dir.path(), "bridge", both)?;
    assert_eq!(reader.len(), 43, "a token like a device's");
    assert_ne!(reader, bridge);
    let accounts = Accounts::open(dir.path())?;

    let reader_id = Identity::Service {
        service: "reader".to_owned(),
        grants: READ,
    };
    let bridge_id = Identity::Service {
        service: "bridge".to_owned(),
        grants: Grants {
            read: true,
            command: true,
            packs: false,
        },
    };
    assert_eq!(
        accounts.authenticate("reader", reader.as_bytes()),
        Ok(reader_id.clone())
    );
    assert_eq!(
        accounts.authenticate("bridge", bridge.as_bytes()),
        Ok(bridge_id.clone())
    );
    // Again, from the cache.
    assert_eq!(
        accounts.authenticate("reader", reader.as_bytes()),
        Ok(reader_id.clone())
    );
    assert_eq!(
        accounts.authenticate("reader", bridge.as_bytes()),
        Err(AuthError::BadSecret),
        "another service's token"
    );
    assert_eq!(
        accounts.authenticate("reader", device_token.as_bytes()),
        Err(AuthError::BadSecret)
    );
    assert!(accounts.is_active(&reader_id));
    assert!(accounts.service_active("reader"));
    assert!(
        !accounts.device_active("reader"),
        "a service is not a device"
    );

    revoke_service(dir.path(), "reader")?;
    assert!(accounts.reload_if_changed()?);
    assert_eq!(
        accounts.authenticate("reader", reader.as_bytes()),
        Err(AuthError::Revoked),
        "a cached token of a revoked service no longer counts"
    );
    assert!(!accounts.is_active(&reader_id));
    assert!(!accounts.service_active("reader"));
    assert!(accounts.is_active(&bridge_id), "the other service stays");
    assert_eq!(
        accounts.authenticate("bridge", bridge.as_bytes()),
        Ok(bridge_id)
    );
    Ok(())
}

#[test]
fn authenticate_admins() -> TestResult {
    let dir = tempfile::tempdir()?;
    let generated = add_admin(dir.path(), "ops", None)?;
    assert_eq!(generated.len(), 24);
    assert!(generated.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(
        add_admin(dir.path(), "root", Some("an admin password"))?,
        "an admin password"
    );
    let accounts = Accounts::open(dir.path())?;
    let ops = Identity::Admin {
        admin: "ops".to_owned(),
    };
    assert_eq!(
        accounts.authenticate("ops", generated.as_bytes()),
        Ok(ops.clone())
    );
    assert_eq!(
        accounts.authenticate("root", b"an admin password"),
        Ok(Identity::Admin {
            admin: "root".to_owned()
        })
    );
    assert_eq!(
        accounts.authenticate("ops", b"an admin password"),
        Err(AuthError::BadSecret)
    );
    assert!(accounts.is_active(&ops));
    assert!(!accounts.is_active(&Identity::Admin {
        admin: "nobody".to_owned()
    }));
    assert!(
        !accounts.is_active(&Identity::Owner {
            owner: "ops".to_owned()
        }),
        "an admin is not an owner"
    );
    assert!(matches!(
        add_admin(dir.path(), "short", Some("short")),
        Err(Error::InvalidPassword(_))
    ));
    Ok(())
}

#[test]
fn is_active_follows_the_file_for_every_kind() -> TestResult {
    let dir = tempfile::tempdir()?;
    add_owner(dir.path(), "ann", None)?;
    add_device(dir.path(), "ann", "watch")?;
    let accounts = Accounts::open(dir.path())?;
    let watch = Identity::Device {
        owner: "ann".to_owned(),
        device: "watch".to_owned(),
    };
    assert!(accounts.is_active(&watch));
    assert!(accounts.is_active(&Identity::Owner {
        owner: "ann".to_owned()
    }));
    assert!(
        !accounts.is_active(&Identity::Device {
            owner: "bob".to_owned(),
            device: "watch".to_owned()
        }),
        "not bob's device"
    );
    revoke_device(dir.path(), "watch")?;
    assert!(accounts.reload_if_changed()?);
    assert!(!accounts.is_active(&watch));
    Ok(())
}

#[test]
fn all_four_kinds_share_one_namespace() -> TestResult {
    let dir = tempfile::tempdir()?;
    add_owner(dir.path(), "ann", None)?;
    add_device(dir.path(), "ann", "d1")?;
    add_service(dir.path(), "bridge", READ)?;
    add_admin(dir.path(), "ops", None)?;

    let err = add_service(dir.path(), "bridge", COMMAND).expect_err("service twice");
    assert_eq!(err.to_string(), "service bridge already exists");
    let err = add_admin(dir.path(), "ops", None).expect_err("admin twice");
    assert_eq!(err.to_string(), "admin ops already exists");
    let err = add_service(dir.path(), "d1", READ).expect_err("service named like a device");
    assert_eq!(
        err.to_string(),
        "cannot add service d1: device d1 already exists \
         (owners, devices, services and admins share one namespace)"
    );
    for (result, existing) in [
        (add_service(dir.path(), "ann", READ).map(drop), Kind::Owner),
        (add_service(dir.path(), "ops", READ).map(drop), Kind::Admin),
        (add_admin(dir.path(), "ann", None).map(drop), Kind::Owner),
        (add_admin(dir.path(), "d1", None).map(drop), Kind::Device),
        (
            add_admin(dir.path(), "bridge", None).map(drop),
            Kind::Service,
        ),
        (
            add_owner(dir.path(), "bridge", None).map(drop),
            Kind::Service,
        ),
        (add_owner(dir.path(), "ops", None).map(drop), Kind::Admin),
        (
            add_device(dir.path(), "ann", "bridge").map(drop),
            Kind::Service,
        ),
        (add_device(dir.path(), "ann", "ops").map(drop), Kind::Admin),
    ] {
        match result {
            Err(Error::Exists { kind, .. }) => assert_eq!(kind, existing),
            other => panic!("expected a clash with {existing}, got {other:?}"),
        }
    }
    // A revoked service keeps its name.
    revoke_service(dir.path(), "bridge")?;
    assert!(add_service(dir.path(), "bridge", READ).is_err());
    assert!(add_device(dir.path(), "ann", "bridge").is_err());
    Ok(())
}

#[test]
fn services_need_a_known_grant_and_a_valid_name() -> TestResult {
    let dir = tempfile::tempdir()?;
    let err = add_service(dir.path(), "bridge", Grants::default()).expect_err("no grants");
    assert_eq!(
        err.to_string(),
        "a service needs at least one grant (read, command)"
    );
    let err = add_service(dir.path(), "a/b", READ).expect_err("slash");
    assert_eq!(
        err.to_string(),
        "service name 'a/b' may contain only letters, digits, '_', '.', '-'"
    );
    let err = add_admin(dir.path(), ".ops", None).expect_err("leading dot");
    assert_eq!(err.to_string(), "admin name '.ops' may not start with '.'");
    assert_eq!("read".parse::<Grant>()?, Grant::Read);
    assert_eq!("command".parse::<Grant>()?, Grant::Command);
    let err = "write".parse::<Grant>().expect_err("unknown grant");
    assert_eq!(
        err.to_string(),
        "unknown grant 'write' (grants: read, command, packs)"
    );
    assert!("Read".parse::<Grant>().is_err(), "names are lowercase");
    let err = revoke_service(dir.path(), "nobody").expect_err("no service");
    assert_eq!(err.to_string(), "no service named nobody");
    add_owner(dir.path(), "ann", None)?;
    add_device(dir.path(), "ann", "d1")?;
    let err = revoke_service(dir.path(), "d1").expect_err("a device is not a service");
    assert_eq!(err.to_string(), "no service named d1");
    let err = revoke_device(dir.path(), "ann").expect_err("an owner is not a device");
    assert_eq!(err.to_string(), "no device named ann");
    Ok(())
}

#[test]
fn grants_print_and_store_as_names() -> TestResult {
    assert_eq!(READ.to_string(), "read");
    assert_eq!(COMMAND.to_string(), "command");
    let all: Grants = Grant::ALL.into_iter().collect();
    assert_eq!(all.to_string(), "read,command,packs");
    assert_eq!(Grants::default().to_string(), "-");
    assert_eq!(
        serde_json::to_string(&all)?,
        r#"["read","command","packs"]"#
    );
    assert_eq!("packs".parse::<Grant>()?, Grant::Packs);
    assert_eq!(serde_json::from_str::<Grants>(r#"["command"]"#)?, COMMAND);
    Ok(())
}

#[test]
fn list_shows_services_and_admins_without_secrets() -> TestResult {
    let dir = tempfile::tempdir()?;
    let reader = add_service(dir.path(), "reader", READ)?;
    add_service(dir.path(), "bridge", Grant::ALL.into_iter().collect())?;
    let ops = add_admin(dir.path(), "ops", None)?;
    revoke_service(dir.path(), "reader")?;
    let listing = list(dir.path())?;
    assert!(listing.owners.is_empty());
    let services: Vec<(&str, String, bool)> = listing
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.grants.to_string(), s.revoked.is_some()))
        .collect();
    assert_eq!(
        services,
        vec![
            ("bridge", "read,command,packs".to_owned(), false),
            ("reader", "read".to_owned(), true),
        ]
    );
    let admins: Vec<&str> = listing.admins.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(admins, vec!["ops"]);
    let json = accounts_json(dir.path())?;
    for secret in [&reader, &ops] {
        assert!(!json.contains(secret.as_str()), "{secret} stored in clear");
    }
    assert_eq!(json.matches("$argon2id$").count(), 3, "{json}");
    assert!(!format!("{listing:?}").contains("argon2"));
    Ok(())
}

#[test]
fn reload_picks_up_services_and_admins() -> TestResult {
    let dir = tempfile::tempdir()?;
    add_owner(dir.path(), "ann", None)?;
    let accounts = Accounts::open(dir.path())?;
    let token = add_service(dir.path(), "bridge", READ)?;
    let password = add_admin(dir.path(), "ops", None)?;
    assert_eq!(
        accounts.authenticate("bridge", token.as_bytes()),
        Err(AuthError::UnknownUser),
        "not before the reload"
    );
    assert!(accounts.reload_if_changed()?);
    assert!(accounts.authenticate("bridge", token.as_bytes()).is_ok());
    assert!(accounts.authenticate("ops", password.as_bytes()).is_ok());
    let debug = format!("{accounts:?}");
    assert!(debug.contains("services: 1, admins: 1"), "{debug}");

    // ops's hash replaced by hand: its cached password must stop counting.
    let mut file = store::read(&dir.path().join(store::FILE_NAME))?.0;
    file.admins
        .get_mut("ops")
        .expect("ops was added")
        .password_hash = secret::hash(b"another password");
    file.generation += 1;
    std::fs::write(
        dir.path().join(store::FILE_NAME),
        serde_json::to_string(&file)?,
    )?;
    assert!(accounts.reload_if_changed()?);
    assert_eq!(
        accounts.authenticate("ops", password.as_bytes()),
        Err(AuthError::BadSecret)
    );
    assert!(accounts.authenticate("ops", b"another password").is_ok());

    // Everything removed.
    std::fs::remove_file(dir.path().join(store::FILE_NAME))?;
    assert!(accounts.reload_if_changed()?);
    assert!(accounts.is_empty());
    assert_eq!(
        accounts.authenticate("bridge", token.as_bytes()),
        Err(AuthError::UnknownUser)
    );
    Ok(())
}

#[test]
fn a_file_without_services_and_admins_still_loads_and_keeps_its_shape() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join(store::FILE_NAME);
    let hash = secret::hash(b"ann password");
    // Exactly what a tributary from before services and admins wrote.
    std::fs::write(
        &path,
        format!(
            r#"{{"version":1,"generation":1,"owners":{{"ann":{{"created_unix":0,"password_hash":"{hash}"}}}},"devices":{{}}}}"#
        ),
    )?;
    let accounts = Accounts::open(dir.path())?;
    assert!(accounts.authenticate("ann", b"ann password").is_ok());
    // Written again without services or admins, it has no keys for them,
    // so that the older tributary can still read it.
    add_device(dir.path(), "ann", "d1")?;
    let json = accounts_json(dir.path())?;
    assert!(
        !json.contains("services") && !json.contains("admins"),
        "{json}"
    );
    add_admin(dir.path(), "ops", None)?;
    let json = accounts_json(dir.path())?;
    assert!(
        json.contains("\"admins\"") && !json.contains("services"),
        "{json}"
    );
    Ok(())
}

#[test]
fn corrupt_services_and_admins_are_refused_with_a_reason() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join(store::FILE_NAME);
    let hash = secret::hash(b"x");
    let file = |services: &str, admins: &str| {
        format!(
            r#"{{"version":1,"generation":1,"owners":{{"ann":{{"created_unix":0,"password_hash":"{hash}"}}}},"devices":{{"d1":{{"owner":"ann","created_unix":0,"token_hash":"{hash}"}}}},"services":{{{services}}},"admins":{{{admins}}}}}"#
        )
    };
    let service = |name: &str, grants: &str, token_hash: &str| {
        format!(r#""{name}":{{"created_unix":0,"grants":{grants},"token_hash":"{token_hash}"}}"#)
    };
    let admin = |name: &str, password_hash: &str| {
        format!(r#""{name}":{{"created_unix":0,"password_hash":"{password_hash}"}}"#)
    };
    let cases = [
        (
            file(&service("s1", "[]", &hash), ""),
            "service s1 has no grants".to_owned(),
        ),
        (
            file(&service("s1", r#"["write"]"#, &hash), ""),
            "unknown variant `write`".to_owned(),
        ),
        (
            file(&service("s1", r#"["read"]"#, "plain"), ""),
            "service s1: not a PHC hash string".to_owned(),
        ),
        (
            file(&service("d1", r#"["read"]"#, &hash), ""),
            "d1 is both a device and a service".to_owned(),
        ),
        (
            file(&service("ops", r#"["read"]"#, &hash), &admin("ops", &hash)),
            "ops is both a service and an admin".to_owned(),
        ),
        (
            file("", &admin("ann", &hash)),
            "ann is both an owner and an admin".to_owned(),
        ),
        (
            file("", &admin("a b", &hash)),
            "admin name 'a b' may contain only".to_owned(),
        ),
        (
            file("", &admin("ops", "plain")),
            "admin ops: not a PHC hash string".to_owned(),
        ),
        (
            file(
                "",
                r#""ops":{"created_unix":0,"password_hash":"x","role":"root"}"#,
            ),
            "unknown field `role`".to_owned(),
        ),
    ];
    for (text, expected) in cases {
        std::fs::write(&path, &text)?;
        let err = Accounts::open(dir.path()).expect_err(&expected);
        assert!(err.to_string().contains(&expected), "{err}");
    }
    // The well-formed variant of the same file loads.
    std::fs::write(
        &path,
        file(&service("s1", r#"["read"]"#, &hash), &admin("ops", &hash)),
    )?;
    Accounts::open(dir.path())?;
    Ok(())
}

#[test]
fn accounts_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Accounts>();
}

#[test]
fn labelled_devices_get_generated_ids_and_labels_unique_per_owner() -> TestResult {
    let dir = tempfile::tempdir()?;
    add_owner(dir.path(), "ann", None)?;
    add_owner(dir.path(), "bob", None)?;
    let (ann_watch, _) = add_labelled_device(dir.path(), "ann", "  Watch ")?;
    // Another owner may have a "watch" of their own.
    let (bob_watch, _) = add_labelled_device(dir.path(), "bob", "watch")?;
    assert_ne!(ann_watch, bob_watch);
    for id in [&ann_watch, &bob_watch] {
        assert_eq!(id.len(), 13, "{id}");
        assert!(id.starts_with('d'));
        store::check_name(Kind::Device, id)?;
    }
    // The same owner may not, whatever the case, until the first is revoked.
    assert!(matches!(
        add_labelled_device(dir.path(), "ann", "WATCH"),
        Err(Error::Exists { .. })
    ));
    revoke_device(dir.path(), &ann_watch)?;
    let (second, _) = add_labelled_device(dir.path(), "ann", "watch")?;
    // A device from the command keeps its name as its label.
    add_device(dir.path(), "ann", "phone1")?;
    let listing = list(dir.path())?;
    let ann = &listing.owners[0];
    let labels: Vec<(&str, &str)> = ann
        .devices
        .iter()
        .map(|d| (d.name.as_str(), d.label.as_str()))
        .collect();
    assert!(labels.contains(&(ann_watch.as_str(), "Watch")));
    assert!(labels.contains(&(second.as_str(), "watch")));
    assert!(labels.contains(&("phone1", "phone1")));
    for bad in ["", "   ", "tab\there", &"x".repeat(65)] {
        assert!(
            matches!(
                add_labelled_device(dir.path(), "ann", bad),
                Err(Error::InvalidName { .. })
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        add_labelled_device(dir.path(), "nobody", "watch"),
        Err(Error::NotFound { .. })
    ));
    Ok(())
}

#[test]
fn a_rotated_token_replaces_the_old_one_and_is_reported_once() -> TestResult {
    let dir = tempfile::tempdir()?;
    add_owner(dir.path(), "ann", None)?;
    let (id, old) = add_labelled_device(dir.path(), "ann", "watch")?;
    let accounts = Accounts::open(dir.path())?;
    assert!(accounts.authenticate(&id, old.as_bytes()).is_ok());
    let new = rotate_device_token(dir.path(), &id)?;
    assert_ne!(old, new);
    assert!(accounts.reload_if_changed()?);
    assert!(accounts.authenticate(&id, old.as_bytes()).is_err());
    assert!(accounts.authenticate(&id, new.as_bytes()).is_ok());
    assert_eq!(accounts.take_rotated(), [id.clone()].into_iter().collect());
    assert!(accounts.take_rotated().is_empty());
    revoke_device(dir.path(), &id)?;
    assert!(matches!(
        rotate_device_token(dir.path(), &id),
        Err(Error::NotFound { .. })
    ));
    Ok(())
}

#[test]
fn concurrent_checks_never_exceed_the_bound_on_the_blocking_path() -> TestResult {
    let dir = tempfile::tempdir()?;
    add_owner(dir.path(), "ann", Some("correct horse"))?;
    let token = add_device(dir.path(), "ann", "watch")?;
    let accounts = Arc::new(Accounts::open(dir.path())?.with_max_checks(2));
    let threads: Vec<_> = (0..12)
        .map(|i| {
            let accounts = accounts.clone();
            std::thread::spawn(move || {
                let guess = format!("guess {i}");
                accounts.authenticate("watch", guess.as_bytes())
            })
        })
        .collect();
    for thread in threads {
        assert_eq!(
            thread.join().map_err(|_| "a check panicked")?,
            Err(AuthError::BadSecret)
        );
    }
    let stats = accounts.check_stats();
    assert_eq!((stats.max, stats.running), (2, 0));
    assert!(
        (1..=2).contains(&stats.peak),
        "at most 2 checks at once: {stats:?}"
    );
    assert_eq!(
        accounts.authenticate("watch", token.as_bytes()),
        Ok(Identity::Device {
            owner: "ann".into(),
            device: "watch".into()
        })
    );
    Ok(())
}

#[test]
fn the_default_bound_is_one_check_per_core_and_at_least_two() -> TestResult {
    let dir = tempfile::tempdir()?;
    let accounts = Accounts::open(dir.path())?;
    assert_eq!(accounts.check_stats().max, default_max_checks());
    assert!(default_max_checks() >= 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guarded_checks_wait_for_a_permit_and_keep_to_the_bound() -> TestResult {
    let dir = tempfile::tempdir()?;
    add_owner(dir.path(), "ann", Some("correct horse"))?;
    let token = add_device(dir.path(), "ann", "watch")?;
    let accounts = Arc::new(Accounts::open(dir.path())?.with_max_checks(2));
    let mut guesses = tokio::task::JoinSet::new();
    for i in 0..16 {
        let accounts = accounts.clone();
        guesses.spawn(async move {
            let guess = format!("guess {i}");
            accounts
                .authenticate_guarded("watch", guess.as_bytes())
                .await
        });
    }
    let right = accounts.authenticate_guarded("watch", token.as_bytes());
    assert_eq!(
        right.await,
        Ok(Identity::Device {
            owner: "ann".into(),
            device: "watch".into()
        })
    );
    while let Some(result) = guesses.join_next().await {
        assert_eq!(
            result?,
            Err(AuthError::BadSecret),
            "devices are never locked"
        );
    }
    let stats = accounts.check_stats();
    assert!(
        (1..=2).contains(&stats.peak),
        "at most 2 checks at once: {stats:?}"
    );
    Ok(())
}

#[tokio::test]
async fn guarded_owner_logins_are_locked_after_the_free_failures_without_argon2() -> TestResult {
    let dir = tempfile::tempdir()?;
    add_owner(dir.path(), "ann", Some("correct horse"))?;
    add_owner(dir.path(), "bob", Some("battery staple"))?;
    let accounts = Arc::new(Accounts::open(dir.path())?);
    // Verified once, so the cache knows ann's password: the lock must
    // hold against the cache too.
    assert_eq!(
        accounts.authenticate_guarded("ann", b"correct horse").await,
        Ok(Identity::Owner {
            owner: "ann".into()
        })
    );
    for _ in 0..throttle::FREE_FAILURES {
        assert_eq!(
            accounts.authenticate_guarded("ann", b"wrong").await,
            Err(AuthError::BadSecret)
        );
    }
    let checks_before = accounts.check_stats();
    // Locked: even the right password is refused, and no Argon2 runs.
    assert_eq!(
        accounts.authenticate_guarded("ann", b"correct horse").await,
        Err(AuthError::Locked)
    );
    assert_eq!(accounts.check_stats(), checks_before);
    // The HTTP API's login sees the same lock (one throttle).
    assert!(accounts
        .login_throttle()
        .check("ann", Instant::now())
        .is_err());
    // Other names are not affected.
    assert_eq!(
        accounts
            .authenticate_guarded("bob", b"battery staple")
            .await,
        Ok(Identity::Owner {
            owner: "bob".into()
        })
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_at_one_owner_stop_at_the_lock() -> TestResult {
    let dir = tempfile::tempdir()?;
    add_owner(dir.path(), "ann", Some("correct horse"))?;
    let accounts = Arc::new(Accounts::open(dir.path())?.with_max_checks(1));
    let mut guesses = tokio::task::JoinSet::new();
    for i in 0..40 {
        let accounts = accounts.clone();
        guesses.spawn(async move {
            let guess = format!("guess {i}");
            accounts.authenticate_guarded("ann", guess.as_bytes()).await
        });
    }
    let mut locked = 0;
    while let Some(result) = guesses.join_next().await {
        match result? {
            Err(AuthError::Locked) => locked += 1,
            Err(AuthError::BadSecret) => {}
            other => return Err(format!("unexpected {other:?}").into()),
        }
    }
    // One check at a time: the lock after the free failures stops the
    // queued guesses, whatever their number.
    assert_eq!(
        accounts.check_stats().checked,
        throttle::FREE_FAILURES as usize,
        "{locked} locked"
    );
    Ok(())
}

#[test]
fn hashing_new_secrets_keeps_to_the_process_wide_bound() -> TestResult {
    let threads: Vec<_> = (0..12)
        .map(|i| std::thread::spawn(move || secret::hash(format!("secret {i}").as_bytes())))
        .collect();
    for thread in threads {
        let phc = thread.join().map_err(|_| "a hash panicked")?;
        secret::check_phc(&phc)?;
    }
    let peak = checks::hashing_peak();
    assert!(
        (1..=default_max_checks()).contains(&peak),
        "at most {} hashes at once, saw {peak}",
        default_max_checks()
    );
    Ok(())
}

#[test]
fn authenticate_evenly_answers_as_authenticate() -> TestResult {
    let dir = tempfile::tempdir()?;
    let password = add_owner(dir.path(), "ann", None)?;
    let accounts = Accounts::open(dir.path())?;
    let ann = Identity::Owner {
        owner: "ann".to_owned(),
    };
    assert_eq!(
        accounts.authenticate_evenly("ann", password.as_bytes()),
        Ok(ann)
    );
    assert_eq!(
        accounts.authenticate_evenly("ann", b"wrong horse"),
        Err(AuthError::BadSecret)
    );
    assert_eq!(
        accounts.authenticate_evenly("nobody", b"wrong horse"),
        Err(AuthError::UnknownUser)
    );
    assert!(check_owner_name("ann").is_ok());
    assert!(check_owner_name(".ann").is_err());
    assert!(check_owner_name(&"a".repeat(65)).is_err());
    Ok(())
}

#[test]
fn an_erased_owner_cannot_log_in_add_devices_or_be_signed_up_again() -> TestResult {
    let dir = tempfile::tempdir()?;
    add_owner(dir.path(), "ann", Some("anns password"))?;
    add_owner(dir.path(), "bob", Some("bobs password"))?;
    let token = add_device(dir.path(), "ann", "watch")?;
    let bobs = add_device(dir.path(), "bob", "ring")?;
    erase_owner(dir.path(), "ann")?;
    erase_owner(dir.path(), "ann")?; // twice changes nothing
    let accounts = Accounts::open(dir.path())?;
    assert!(accounts.authenticate("ann", b"anns password").is_err());
    assert!(accounts.authenticate("watch", token.as_bytes()).is_err());
    assert!(!accounts.is_active(&Identity::Owner {
        owner: "ann".into()
    }));
    assert!(add_device(dir.path(), "ann", "phone").is_err());
    assert!(
        add_owner(dir.path(), "ann", None).is_err(),
        "the name stays taken"
    );
    // Nobody else is touched.
    assert!(accounts.authenticate("bob", b"bobs password").is_ok());
    assert!(accounts.authenticate("ring", bobs.as_bytes()).is_ok());
    assert!(erase_owner(dir.path(), "nobody").is_err());
    Ok(())
}
