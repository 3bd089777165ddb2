//! Persistent sessions in both protocol versions: subscriptions and
//! messages published while the client is away are kept (across a broker
//! restart too) and delivered when it comes back with session present; an
//! unacknowledged delivery is resent; a clean start discards the session.

use tributary_mqtt::{ProtocolVersion, QoS, ReasonCode};
use tributary_testkit::{clean, persistent, TestBroker, TestClient};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const VERSIONS: [ProtocolVersion; 2] = [ProtocolVersion::V311, ProtocolVersion::V5];
/// 5.0 Session Expiry Interval of the sessions here: far beyond any test.
const EXPIRY_SECS: u32 = 600;

/// Connects `client_id` with a persistent session subscribed to `filter`
/// at QoS 1, then disconnects: the session is now offline.
async fn leave_subscribed(
    broker: &TestBroker,
    version: ProtocolVersion,
    client_id: &str,
    filter: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let (mut client, connack) = broker
        .connect(persistent(version, client_id, EXPIRY_SECS))
        .await?;
    assert!(!connack.session_present, "{client_id} is new");
    client.subscribe(filter, QoS::AtLeastOnce).await?;
    client.disconnect().await?;
    Ok(())
}

/// Publishes `payloads` at QoS 1 to `topic`, each acknowledged (stored).
async fn publish_all(
    broker: &TestBroker,
    version: ProtocolVersion,
    topic: &str,
    payloads: &[&'static [u8]],
) -> Result<(), Box<dyn std::error::Error>> {
    let (mut publisher, _) = broker.connect(clean(version, "publisher")).await?;
    for payload in payloads {
        let reason = publisher
            .publish_stored(topic, payload, QoS::AtLeastOnce)
            .await?;
        assert_eq!(reason, ReasonCode::Success);
    }
    publisher.disconnect().await?;
    Ok(())
}

/// Reconnects `client_id` expecting its session, and receives `payloads`
/// in order, acknowledging each.
async fn resume_and_receive(
    broker: &TestBroker,
    version: ProtocolVersion,
    client_id: &str,
    topic: &str,
    payloads: &[&'static [u8]],
) -> Result<TestClient, Box<dyn std::error::Error>> {
    let (mut client, connack) = broker
        .connect(persistent(version, client_id, EXPIRY_SECS))
        .await?;
    assert_eq!(connack.reason, ReasonCode::Success);
    assert!(connack.session_present, "{client_id}: session present");
    for payload in payloads {
        let delivered = client.expect_publish().await?;
        assert_eq!(
            (delivered.topic.as_str(), &delivered.payload[..]),
            (topic, *payload)
        );
        assert_eq!(delivered.qos, QoS::AtLeastOnce);
        client.ack(&delivered).await?;
    }
    Ok(client)
}

#[tokio::test]
async fn messages_published_while_away_are_delivered_on_resume() -> TestResult {
    let broker = TestBroker::start().await?;
    for version in VERSIONS {
        let id = format!("away-{}", version.level());
        let topic = format!("away/{}", version.level());
        leave_subscribed(&broker, version, &id, &topic).await?;
        publish_all(&broker, version, &topic, &[b"first", b"second"]).await?;
        // No SUBSCRIBE on the way back: the session kept the subscription.
        let client =
            resume_and_receive(&broker, version, &id, &topic, &[b"first", b"second"]).await?;
        client.disconnect().await?;
    }
    broker.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn persistent_session_survives_a_broker_restart() -> TestResult {
    let mut broker = TestBroker::start().await?;
    for version in VERSIONS {
        let id = format!("restart-{}", version.level());
        let topic = format!("restart/{}", version.level());
        leave_subscribed(&broker, version, &id, &topic).await?;
        publish_all(&broker, version, &topic, &[b"before restart"]).await?;
        broker = broker.restart().await?;
        publish_all(&broker, version, &topic, &[b"after restart"]).await?;
        let client = resume_and_receive(
            &broker,
            version,
            &id,
            &topic,
            &[b"before restart", b"after restart"],
        )
        .await?;
        client.disconnect().await?;
    }
    broker.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn unacknowledged_delivery_is_resent_as_duplicate_on_resume() -> TestResult {
    let broker = TestBroker::start().await?;
    for version in VERSIONS {
        let id = format!("unacked-{}", version.level());
        let topic = format!("unacked/{}", version.level());
        let (mut client, _) = broker
            .connect(persistent(version, &id, EXPIRY_SECS))
            .await?;
        client.subscribe(&topic, QoS::AtLeastOnce).await?;
        publish_all(&broker, version, &topic, &[b"once"]).await?;
        let first = client.expect_publish().await?;
        assert!(!first.dup);
        // Gone before PUBACK, as a device losing its network.
        client.drop_connection();

        let (mut client, connack) = broker
            .connect(persistent(version, &id, EXPIRY_SECS))
            .await?;
        assert!(connack.session_present);
        let again = client.expect_publish().await?;
        assert!(again.dup, "a resend carries DUP");
        assert_eq!(again.packet_id, first.packet_id, "with the same packet id");
        assert_eq!(&again.payload[..], b"once");
        client.ack(&again).await?;
        client.disconnect().await?;
    }
    broker.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn clean_start_discards_the_session_and_its_messages() -> TestResult {
    let broker = TestBroker::start().await?;
    for version in VERSIONS {
        let id = format!("discard-{}", version.level());
        let topic = format!("discard/{}", version.level());
        let marker = format!("marker/{}", version.level());
        leave_subscribed(&broker, version, &id, &topic).await?;
        publish_all(&broker, version, &topic, &[b"queued"]).await?;

        let (mut client, connack) = broker.connect(clean(version, &id)).await?;
        assert!(!connack.session_present);
        // Neither the queued message nor the old subscription survive:
        // after another message on the old topic, the first thing to
        // arrive is the marker on the only subscription left.
        client.subscribe(&marker, QoS::AtLeastOnce).await?;
        publish_all(&broker, version, &topic, &[b"ignored"]).await?;
        publish_all(&broker, version, &marker, &[b"marker"]).await?;
        let next = client.expect_publish().await?;
        assert_eq!(
            (next.topic.as_str(), &next.payload[..]),
            (marker.as_str(), &b"marker"[..])
        );
        client.ack(&next).await?;
        client.disconnect().await?;
    }
    broker.shutdown().await?;
    Ok(())
}
