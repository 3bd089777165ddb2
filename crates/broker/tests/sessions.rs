//! Persistent sessions in both protocol versions: subscriptions and
//! messages published while the client is away are kept (across a broker
//! restart too) and delivered when it comes back with session present; an
//! unacknowledged delivery is resent; a clean start discards the session.

use tributary_mqtt::{Disconnect, Packet, ProtocolVersion, QoS, ReasonCode};
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

/// A client that ends its session at DISCONNECT (5.0 Session Expiry 0) and
/// connects again at once can have its new CONNECT seen before the
/// DISCONNECT; the connection taken over reads its client's last words
/// first, so the session it ended is not resumed. The broker is made to see
/// the CONNECT first by not reading the old connection: it is over its rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ended_at_disconnect_is_not_resumed_by_a_connect_seen_first() -> TestResult {
    let mut config = TestBroker::config();
    config.limits.max_messages_per_sec = 1;
    let broker = TestBroker::start_with(config).await?;
    let dir = broker.data_dir();
    tributary_accounts::add_owner(dir, "ann", Some("ann password"))?;
    let secret = tributary_accounts::add_device(dir, "ann", "a1")?;
    broker.broker().accounts().reload_if_changed()?;
    let mut connect = persistent(ProtocolVersion::V5, "a1-session", EXPIRY_SECS);
    connect.username = Some("a1".to_owned());
    connect.password = Some(bytes::Bytes::from(secret));

    let (mut device, _) = broker.connect(connect.clone()).await?;
    // The second publish within a second slows the device: the broker reads
    // nothing more from it for about a second (its PUBACK still comes).
    for _ in 0..2 {
        let reason = device
            .publish_stored("tributary/v1/a1/x", b"1", QoS::AtLeastOnce)
            .await?;
        assert_eq!(reason, ReasonCode::Success);
    }
    let mut end_session = Disconnect::new(ReasonCode::NORMAL_DISCONNECTION);
    end_session.properties.session_expiry_interval = Some(0);
    device.send(&Packet::Disconnect(end_session)).await?;

    let (_again, connack) = broker.connect(connect).await?;
    assert!(
        !connack.session_present,
        "the session ended by the DISCONNECT was resumed"
    );
    broker.shutdown().await?;
    Ok(())
}

/// A QoS 2 publish stored and answered with PUBREC stays "received" across
/// a broker restart (as it does across a move to another node): the
/// client's resend is answered again and not stored twice, and its PUBREL
/// finds the flow.
#[tokio::test]
async fn a_qos2_publish_awaiting_pubrel_is_stored_once_across_a_restart() -> TestResult {
    let mut broker = TestBroker::start().await?;
    for version in VERSIONS {
        let id = format!("q2-restart-{}", version.level());
        let topic = format!("q2/restart/{}", version.level());
        let first = broker.broker().log().end_offset();
        let (mut client, _) = broker
            .connect(persistent(version, &id, EXPIRY_SECS))
            .await?;
        let publish = tributary_mqtt::Publish {
            dup: false,
            qos: QoS::ExactlyOnce,
            retain: false,
            topic: topic.clone(),
            packet_id: Some(9),
            properties: Default::default(),
            payload: "once".into(),
        };
        client.send(&Packet::Publish(publish.clone())).await?;
        assert_eq!(client.expect_pubrec().await?.packet_id, 9);
        drop(client);

        broker = broker.restart().await?;
        let (mut client, connack) = broker
            .connect(persistent(version, &id, EXPIRY_SECS))
            .await?;
        assert!(connack.session_present);
        let resend = tributary_mqtt::Publish {
            dup: true,
            ..publish
        };
        client.send(&Packet::Publish(resend)).await?;
        assert_eq!(client.expect_pubrec().await?.packet_id, 9);
        client
            .send(&Packet::PubRel(tributary_mqtt::PubResp::success(9)))
            .await?;
        let pubcomp = client.expect_pubcomp().await?;
        assert_eq!(
            (pubcomp.packet_id, pubcomp.reason),
            (9, ReasonCode::Success)
        );
        let stored = broker.broker().log().read(first, 10).await?;
        let ours: Vec<_> = stored.iter().filter(|(_, r)| r.topic == topic).collect();
        assert_eq!(
            ours.len(),
            1,
            "{version:?}: records stored for one QoS 2 message"
        );
        client.disconnect().await?;
    }
    broker.shutdown().await?;
    Ok(())
}

/// QoS 2 deliveries in flight to a persistent subscriber are carried over
/// a broker restart (as over a move to another node): one the client
/// released gets its PUBREL again and is not sent again; one it had not
/// answered comes again with DUP and its packet id, not as a new message.
#[tokio::test]
async fn qos2_deliveries_in_flight_are_carried_over_a_restart() -> TestResult {
    let mut broker = TestBroker::start().await?;
    for version in VERSIONS {
        let id = format!("q2-out-{}", version.level());
        let topic = format!("q2/out/{}", version.level());
        let (mut subscriber, _) = broker
            .connect(persistent(version, &id, EXPIRY_SECS))
            .await?;
        subscriber.subscribe(&topic, QoS::ExactlyOnce).await?;
        let (mut publisher, _) = broker.connect(clean(version, "q2-out-pub")).await?;
        for payload in [&b"first"[..], &b"second"[..]] {
            publisher
                .publish_stored(&topic, payload, QoS::ExactlyOnce)
                .await?;
        }
        publisher.disconnect().await?;
        let first = subscriber.expect_publish().await?;
        assert_eq!(&first.payload[..], b"first");
        let first_id = first.packet_id.ok_or("QoS 2 without an id")?;
        let second = subscriber.expect_publish().await?;
        assert_eq!(&second.payload[..], b"second");
        let second_id = second.packet_id.ok_or("QoS 2 without an id")?;
        subscriber
            .send(&Packet::PubRec(tributary_mqtt::PubResp::success(first_id)))
            .await?;
        assert_eq!(subscriber.expect_pubrel().await?.packet_id, first_id);
        // Neither PUBCOMP for the first nor PUBREC for the second.
        drop(subscriber);

        broker = broker.restart().await?;
        let (mut subscriber, connack) = broker
            .connect(persistent(version, &id, EXPIRY_SECS))
            .await?;
        assert!(connack.session_present);
        assert_eq!(subscriber.expect_pubrel().await?.packet_id, first_id);
        let again = subscriber.expect_publish().await?;
        assert_eq!(
            (&again.payload[..], again.packet_id, again.dup),
            (&b"second"[..], Some(second_id), true),
            "{version:?}: the unanswered delivery comes again as itself"
        );
        subscriber
            .send(&Packet::PubComp(tributary_mqtt::PubResp::success(first_id)))
            .await?;
        subscriber.ack(&again).await?;
        // Nothing else is owed: the next message is the next one published.
        let (mut publisher, _) = broker.connect(clean(version, "q2-out-pub")).await?;
        publisher
            .publish_stored(&topic, b"third", QoS::AtMostOnce)
            .await?;
        assert_eq!(&subscriber.expect_publish().await?.payload[..], b"third");
        subscriber.disconnect().await?;
        publisher.disconnect().await?;
    }
    broker.shutdown().await?;
    Ok(())
}
