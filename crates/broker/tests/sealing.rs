//! Per-owner sealing at the broker (docs/erasure.md): an owner's payloads
//! are sealed on the way in and reach the owner's own sessions as they
//! were sent; once the owner is erased (the key destroyed in the store,
//! forgotten by the keyring) nothing of theirs goes out, including what
//! the node sealed just before and keeps the plaintext of; another
//! owner's erasure costs the others nothing but the shortcut.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tributary_mqtt::{Connect, ProtocolVersion, QoS, ReasonCode};
use tributary_rights::keyring::MasterKey;
use tributary_rights::owner_keys::{BoxFuture, KeyStore, Keyring, Sealing, StoreError, Wrapped};
use tributary_testkit::{persistent, TestBroker, TestClient};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const V5: ProtocolVersion = ProtocolVersion::V5;
const COMMANDS: &str = "tributary/v1/d1/commands/#";

/// Wrapped keys in memory: the store's contract without a database.
#[derive(Default)]
struct MemoryKeys(Mutex<HashMap<String, Wrapped>>);

impl MemoryKeys {
    /// What an account erasure does to the store: the key destroyed.
    fn destroy(&self, owner: &str) {
        if let Some(key) = self.0.lock().expect("lock").get_mut(owner) {
            key.bytes = None;
        }
    }
}

impl KeyStore for MemoryKeys {
    fn load<'a>(&'a self, owner: &'a str) -> BoxFuture<'a, Result<Option<Wrapped>, StoreError>> {
        let key = self.0.lock().expect("lock").get(owner).cloned();
        Box::pin(async move { Ok(key) })
    }

    fn create<'a>(
        &'a self,
        owner: &'a str,
        key: Wrapped,
    ) -> BoxFuture<'a, Result<Wrapped, StoreError>> {
        let mut keys = self.0.lock().expect("lock");
        let entry = keys.entry(owner.to_owned()).or_insert(key.clone());
        if entry.bytes.is_none() {
            *entry = key;
        }
        let kept = entry.clone();
        Box::pin(async move { Ok(kept) })
    }
}

/// A broker with owners ann (device d1) and bob, sealing on.
async fn sealing_broker(
) -> Result<(TestBroker, Arc<MemoryKeys>, Arc<Keyring>), Box<dyn std::error::Error>> {
    let broker = TestBroker::start().await?;
    tributary_accounts::add_owner(broker.data_dir(), "ann", Some("ann-password"))?;
    tributary_accounts::add_device(broker.data_dir(), "ann", "d1")?;
    tributary_accounts::add_owner(broker.data_dir(), "bob", Some("bob-password"))?;
    // Accounts are read when the broker opens.
    let broker = broker.restart().await?;
    let keys = Arc::new(MemoryKeys::default());
    let keyring = Arc::new(Keyring::new(
        MasterKey::generate()?,
        Sealing::On,
        keys.clone(),
    ));
    broker.broker().use_keyring(keyring.clone());
    Ok((broker, keys, keyring))
}

fn login(client_id: &str, owner: &str) -> Connect {
    Connect {
        username: Some(owner.to_owned()),
        password: Some(Bytes::from(format!("{owner}-password"))),
        ..persistent(V5, client_id, 600)
    }
}

async fn connect(
    broker: &TestBroker,
    client_id: &str,
    owner: &str,
) -> Result<TestClient, Box<dyn std::error::Error>> {
    let (client, connack) = broker.connect(login(client_id, owner)).await?;
    assert_eq!(connack.reason, ReasonCode::Success, "{client_id}");
    Ok(client)
}

/// Ann's reader: a persistent session on her device's commands, away
/// while something is published for it.
async fn away_reader(broker: &TestBroker) -> TestResult {
    let mut reader = connect(broker, "reader", "ann").await?;
    reader.subscribe(COMMANDS, QoS::AtLeastOnce).await?;
    reader.disconnect().await?;
    Ok(())
}

async fn publish(broker: &TestBroker, payload: &'static [u8]) -> TestResult {
    let mut publisher = connect(broker, "publisher", "ann").await?;
    let reason = publisher
        .publish_stored("tributary/v1/d1/commands/light", payload, QoS::AtLeastOnce)
        .await?;
    assert_eq!(reason, ReasonCode::Success);
    publisher.disconnect().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_stops_even_what_the_node_sealed_a_moment_before() -> TestResult {
    let (broker, keys, keyring) = sealing_broker().await?;
    away_reader(&broker).await?;
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
    let mut reader = connect(&broker, "reader", "ann").await?;
    let delivered = reader.expect_publish().await?;
    assert_eq!(&delivered.payload[..], b"on");
    reader.ack(&delivered).await?;
    reader.disconnect().await?;

    // Another owner's erasure: ann's message sealed before it still goes
    // out (opened, now that the kept plaintext no longer vouches for it).
    publish(&broker, b"off").await?;
    keys.destroy("bob");
    keyring.forget("bob");
    let mut reader = connect(&broker, "reader", "ann").await?;
    let delivered = reader.expect_publish().await?;
    assert_eq!(&delivered.payload[..], b"off");
    reader.ack(&delivered).await?;
    reader.disconnect().await?;

    // Ann's erasure, between the sealing and the delivery of a message:
    // it is never sent.
    publish(&broker, b"dim").await?;
    keys.destroy("ann");
    keyring.forget("ann");
    let mut reader = connect(&broker, "reader", "ann").await?;
    let next = tokio::time::timeout(Duration::from_secs(1), reader.next()).await;
    assert!(
        next.is_err(),
        "nothing of an erased owner goes out: {next:?}"
    );
    broker.shutdown().await?;
    Ok(())
}
