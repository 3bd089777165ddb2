//! QoS 0, 1 and 2 in both directions — a client publishing to the broker,
//! the broker delivering to a subscriber — for every pair of protocol
//! versions (3.1.1 and 5.0 on either side), with each acknowledgement
//! checked: PUBACK, and PUBREC/PUBREL/PUBCOMP.

use tributary_mqtt::{Packet, ProtocolVersion, PubResp, Publish, QoS, ReasonCode};
use tributary_testkit::{clean, TestBroker, TestClient};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const VERSIONS: [ProtocolVersion; 2] = [ProtocolVersion::V311, ProtocolVersion::V5];

/// A publisher and a subscriber of one version pair, and their topic.
struct Pair {
    publisher: TestClient,
    subscriber: TestClient,
    topic: String,
}

/// One [`Pair`] for each pair of versions, the subscriber subscribed at
/// `qos` to a topic under `base` of its own.
async fn pairs(
    broker: &TestBroker,
    base: &str,
    qos: QoS,
) -> Result<Vec<Pair>, Box<dyn std::error::Error>> {
    let mut pairs = Vec::new();
    for (i, publisher) in VERSIONS.into_iter().enumerate() {
        for (j, subscriber) in VERSIONS.into_iter().enumerate() {
            let (publisher, _) = broker
                .connect(clean(publisher, &format!("pub-{i}{j}")))
                .await?;
            let (mut subscriber, _) = broker
                .connect(clean(subscriber, &format!("sub-{i}{j}")))
                .await?;
            let topic = format!("{base}/{i}{j}");
            let suback = subscriber.subscribe(&topic, qos).await?;
            let granted = match qos {
                QoS::AtMostOnce => ReasonCode::GRANTED_QOS0,
                QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
                QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
            };
            assert_eq!(suback.reasons, vec![granted]);
            pairs.push(Pair {
                publisher,
                subscriber,
                topic,
            });
        }
    }
    Ok(pairs)
}

/// The next delivery, checked to be `payload` on `topic` at `qos`, not a resend.
async fn expect_delivery(
    subscriber: &mut TestClient,
    topic: &str,
    payload: &[u8],
    qos: QoS,
) -> Result<Publish, Box<dyn std::error::Error>> {
    let delivered = subscriber.expect_publish().await?;
    assert_eq!(delivered.topic, topic);
    assert_eq!(&delivered.payload[..], payload);
    assert_eq!(delivered.qos, qos);
    assert!(!delivered.dup && !delivered.retain);
    Ok(delivered)
}

#[tokio::test]
async fn qos0_publish_is_delivered_without_packet_id() -> TestResult {
    let broker = TestBroker::start().await?;
    for Pair {
        mut publisher,
        mut subscriber,
        topic,
    } in pairs(&broker, "q0", QoS::AtMostOnce).await?
    {
        assert_eq!(
            publisher.publish(&topic, b"zero", QoS::AtMostOnce).await?,
            None
        );
        let delivered = expect_delivery(&mut subscriber, &topic, b"zero", QoS::AtMostOnce).await?;
        assert_eq!(delivered.packet_id, None);
    }
    broker.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn qos1_publish_is_acknowledged_then_delivered_and_acknowledged() -> TestResult {
    let broker = TestBroker::start().await?;
    for Pair {
        mut publisher,
        mut subscriber,
        topic,
    } in pairs(&broker, "q1", QoS::AtLeastOnce).await?
    {
        let id = publisher
            .publish(&topic, b"one", QoS::AtLeastOnce)
            .await?
            .ok_or("QoS 1 has a packet id")?;
        let puback = publisher.expect_puback().await?;
        assert_eq!((puback.packet_id, puback.reason), (id, ReasonCode::Success));

        let delivered = expect_delivery(&mut subscriber, &topic, b"one", QoS::AtLeastOnce).await?;
        let delivery_id = delivered
            .packet_id
            .ok_or("delivered at QoS 1 without an id")?;
        subscriber
            .send(&Packet::PubAck(PubResp::success(delivery_id)))
            .await?;
        // Acknowledged: nothing is resent, the next message comes next.
        publisher
            .publish_stored(&topic, b"next", QoS::AtLeastOnce)
            .await?;
        assert_eq!(&subscriber.expect_publish().await?.payload[..], b"next");
    }
    broker.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn qos2_runs_pubrec_pubrel_pubcomp_both_ways_and_stores_once() -> TestResult {
    let broker = TestBroker::start().await?;
    for Pair {
        mut publisher,
        mut subscriber,
        topic,
    } in pairs(&broker, "q2", QoS::ExactlyOnce).await?
    {
        let first = broker.broker().log().end_offset();

        // Client to broker: PUBLISH, PUBREC; a resend before PUBREL is
        // answered again but not stored again; PUBREL, PUBCOMP.
        let publish = Publish {
            dup: false,
            qos: QoS::ExactlyOnce,
            retain: false,
            topic: topic.clone(),
            packet_id: Some(7),
            properties: Default::default(),
            payload: "two".into(),
        };
        publisher.send(&Packet::Publish(publish.clone())).await?;
        let pubrec = publisher.expect_pubrec().await?;
        assert_eq!((pubrec.packet_id, pubrec.reason), (7, ReasonCode::Success));
        let resend = Publish {
            dup: true,
            ..publish
        };
        publisher.send(&Packet::Publish(resend)).await?;
        assert_eq!(publisher.expect_pubrec().await?.packet_id, 7);
        publisher.send(&Packet::PubRel(PubResp::success(7))).await?;
        let pubcomp = publisher.expect_pubcomp().await?;
        assert_eq!(
            (pubcomp.packet_id, pubcomp.reason),
            (7, ReasonCode::Success)
        );

        // Broker to client: PUBLISH, PUBREC from us, PUBREL, PUBCOMP from us.
        let delivered = expect_delivery(&mut subscriber, &topic, b"two", QoS::ExactlyOnce).await?;
        let id = delivered
            .packet_id
            .ok_or("delivered at QoS 2 without an id")?;
        subscriber
            .send(&Packet::PubRec(PubResp::success(id)))
            .await?;
        let pubrel = subscriber.expect_pubrel().await?;
        assert_eq!((pubrel.packet_id, pubrel.reason), (id, ReasonCode::Success));
        subscriber
            .send(&Packet::PubComp(PubResp::success(id)))
            .await?;

        // Exactly once: the resend added nothing, and the subscriber's next
        // message is the next one published.
        let stored = broker.broker().log().read(first, 10).await?;
        assert_eq!(stored.len(), 1, "records stored for one QoS 2 message");
        publisher
            .publish_stored(&topic, b"after", QoS::AtMostOnce)
            .await?;
        assert_eq!(&subscriber.expect_publish().await?.payload[..], b"after");
    }
    broker.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn delivery_qos_is_the_lower_of_publish_and_subscription() -> TestResult {
    let broker = TestBroker::start().await?;
    for Pair {
        mut publisher,
        mut subscriber,
        topic,
    } in pairs(&broker, "down", QoS::AtLeastOnce).await?
    {
        publisher
            .publish_stored(&topic, b"two", QoS::ExactlyOnce)
            .await?;
        let delivered = expect_delivery(&mut subscriber, &topic, b"two", QoS::AtLeastOnce).await?;
        subscriber.ack(&delivered).await?;
    }
    broker.shutdown().await?;
    Ok(())
}
