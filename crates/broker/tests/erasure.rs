//! What an erasure stops at delivery (docs/erasure.md).
//!
//! - Per-owner sealing: an owner's payloads are sealed on the way in and
//!   reach the owner's own sessions as they were sent; once the owner is
//!   erased (the key destroyed in the store, forgotten by the keyring)
//!   nothing of theirs goes out, including what the node sealed just
//!   before and keeps the plaintext of; another owner's erasure costs the
//!   others nothing but that shortcut.
//! - A device's erasure (a tombstone): the log still holds its records,
//!   under a live key, and a session catching up does not get them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tributary_mqtt::{Connect, ProtocolVersion, QoS, ReasonCode};
use tributary_rights::erased::Erasures;
use tributary_rights::keyring::MasterKey;
use tributary_rights::owner_keys::{Keyring, MemoryKeyStore, Sealing};
use tributary_testkit::{persistent, TestBroker, TestClient};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const V5: ProtocolVersion = ProtocolVersion::V5;
const COMMANDS: &str = "tributary/v1/d1/commands/#";

/// A broker with owners ann (devices d1 and d2) and bob, sealing on;
/// the devices' tokens.
async fn sealing_broker(
) -> Result<(TestBroker, Arc<MemoryKeyStore>, Arc<Keyring>, [String; 2]), Box<dyn std::error::Error>>
{
    let broker = TestBroker::start().await?;
    tributary_accounts::add_owner(broker.data_dir(), "ann", Some("ann-password"))?;
    let d1 = tributary_accounts::add_device(broker.data_dir(), "ann", "d1")?;
    let d2 = tributary_accounts::add_device(broker.data_dir(), "ann", "d2")?;
    tributary_accounts::add_owner(broker.data_dir(), "bob", Some("bob-password"))?;
    // Accounts are read when the broker opens.
    let broker = broker.restart().await?;
    let keys = Arc::new(MemoryKeyStore::default());
    let keyring = Arc::new(Keyring::new(
        MasterKey::generate()?,
        Sealing::On,
        keys.clone(),
    ));
    broker.broker().use_keyring(keyring.clone());
    Ok((broker, keys, keyring, [d1, d2]))
}

/// A persistent session of `user`: an owner with the password the tests
/// give, or a device with its token.
async fn connect(
    broker: &TestBroker,
    client_id: &str,
    user: &str,
    secret: &str,
) -> Result<TestClient, Box<dyn std::error::Error>> {
    let login = Connect {
        username: Some(user.to_owned()),
        password: Some(Bytes::from(secret.to_owned())),
        ..persistent(V5, client_id, 600)
    };
    let (client, connack) = broker.connect(login).await?;
    assert_eq!(connack.reason, ReasonCode::Success, "{client_id}");
    Ok(client)
}

async fn ann(
    broker: &TestBroker,
    client_id: &str,
) -> Result<TestClient, Box<dyn std::error::Error>> {
    connect(broker, client_id, "ann", "ann-password").await
}

/// Ann's reader: a persistent session on `filters`, away while something
/// is published for it.
async fn away_reader(broker: &TestBroker, filters: &[&str]) -> TestResult {
    let mut reader = ann(broker, "reader").await?;
    for filter in filters {
        let suback = reader.subscribe(filter, QoS::AtLeastOnce).await?;
        assert_eq!(suback.reasons, [ReasonCode::GrantedQoS1], "{filter}");
    }
    reader.disconnect().await?;
    Ok(())
}

async fn publish_as(mut publisher: TestClient, topic: &str, payload: &'static [u8]) -> TestResult {
    let reason = publisher
        .publish_stored(topic, payload, QoS::AtLeastOnce)
        .await?;
    assert_eq!(reason, ReasonCode::Success);
    publisher.disconnect().await?;
    Ok(())
}

async fn publish(broker: &TestBroker, payload: &'static [u8]) -> TestResult {
    let publisher = ann(broker, "publisher").await?;
    publish_as(publisher, "tributary/v1/d1/commands/light", payload).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_stops_even_what_the_node_sealed_a_moment_before() -> TestResult {
    let (broker, keys, keyring, _) = sealing_broker().await?;
    away_reader(&broker, &[COMMANDS]).await?;
    publish(&broker, b"on").await?;

    // Sealed in the log; the reader gets it as sent.
    let logged = broker
        .broker()
        .log()
        .read(tributary_log::Offset(0), 16)
        .await?;
    let (_, sealed) = logged
        .iter()
        .find(|(_, r)| r.topic.ends_with("/light"))
        .expect("appended");
    assert!(
        tributary_rights::seal::is_sealed(&sealed.payload),
        "sealed in the log"
    );
    let mut reader = ann(&broker, "reader").await?;
    let delivered = reader.expect_publish().await?;
    assert_eq!(&delivered.payload[..], b"on");
    reader.ack(&delivered).await?;
    reader.disconnect().await?;

    // Another owner's erasure: ann's message sealed before it still goes
    // out (opened, now that the kept plaintext no longer vouches for it).
    publish(&broker, b"off").await?;
    keys.destroy("bob");
    keyring.forget("bob");
    let mut reader = ann(&broker, "reader").await?;
    let delivered = reader.expect_publish().await?;
    assert_eq!(&delivered.payload[..], b"off");
    reader.ack(&delivered).await?;
    reader.disconnect().await?;

    // Ann's erasure, between the sealing and the delivery of a message:
    // it is never sent.
    publish(&broker, b"dim").await?;
    keys.destroy("ann");
    keyring.forget("ann");
    let mut reader = ann(&broker, "reader").await?;
    let next = tokio::time::timeout(Duration::from_secs(1), reader.next()).await;
    assert!(
        next.is_err(),
        "nothing of an erased owner goes out: {next:?}"
    );
    broker.shutdown().await?;
    Ok(())
}

/// An erasure of one device at any time (as a tombstone says it).
#[derive(Default)]
struct ErasedDevice(Mutex<Option<(String, String)>>);

impl Erasures for ErasedDevice {
    fn covers(&self, owner: &str, device: &str, _time_ms: i64) -> bool {
        self.0.lock().expect("lock").as_ref() == Some(&(owner.to_owned(), device.to_owned()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_catching_up_does_not_get_an_erased_devices_records() -> TestResult {
    let (broker, _, _, [d1, d2]) = sealing_broker().await?;
    let erasures = Arc::new(ErasedDevice::default());
    broker.broker().use_erasures(erasures.clone());
    away_reader(&broker, &["tributary/v1/d1/senml", "tributary/v1/d2/senml"]).await?;
    let first = connect(&broker, "d1", "d1", &d1).await?;
    publish_as(first, "tributary/v1/d1/senml", b"from d1").await?;
    let second = connect(&broker, "d2", "d2", &d2).await?;
    publish_as(second, "tributary/v1/d2/senml", b"from d2").await?;

    // Ann erases d1 while her reader is away.
    *erasures.0.lock().expect("lock") = Some(("ann".into(), "d1".into()));
    let mut reader = ann(&broker, "reader").await?;
    let delivered = reader.expect_publish().await?;
    assert_eq!(
        (delivered.topic.as_str(), &delivered.payload[..]),
        ("tributary/v1/d2/senml", &b"from d2"[..]),
        "d1's record is passed over, d2's comes"
    );
    reader.ack(&delivered).await?;
    let next = tokio::time::timeout(Duration::from_secs(1), reader.next()).await;
    assert!(next.is_err(), "nothing more: {next:?}");
    broker.shutdown().await?;
    Ok(())
}
