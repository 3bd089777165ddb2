//! Routing through the node's subscription index: each session gets
//! exactly the records its filters match, and a session that falls more
//! than an inbox behind (a slow client) reads the rest from the log, so it
//! still gets every message, once and in order.

use tributary_mqtt::{ProtocolVersion, QoS, ReasonCode};
use tributary_testkit::{clean, TestBroker};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A payload that lives as long as the test (the client takes `'static`).
fn numbered(i: usize) -> &'static [u8] {
    Box::leak(format!("m{i}").into_boxed_str()).as_bytes()
}

#[tokio::test]
async fn each_session_gets_exactly_what_its_filters_match() -> TestResult {
    let broker = TestBroker::start().await?;
    let v = ProtocolVersion::V5;
    let (mut ann, _) = broker.connect(clean(v, "ann")).await?;
    ann.subscribe("ann/+/senml", QoS::AtLeastOnce).await?;
    let (mut bob, _) = broker.connect(clean(v, "bob")).await?;
    bob.subscribe("bob/watch/senml", QoS::AtLeastOnce).await?;
    let (mut all, _) = broker.connect(clean(v, "all")).await?;
    all.subscribe("#", QoS::AtLeastOnce).await?;
    all.subscribe("ann/#", QoS::AtLeastOnce).await?; // overlapping: still once

    let (mut publisher, _) = broker.connect(clean(v, "publisher")).await?;
    let topics = [
        "ann/watch/senml",
        "bob/watch/senml",
        "carl/ring/senml",
        "ann/ring/senml",
    ];
    for (i, topic) in topics.iter().enumerate() {
        let reason = publisher
            .publish_stored(topic, numbered(i), QoS::AtLeastOnce)
            .await?;
        assert_eq!(reason, ReasonCode::Success);
    }
    for (client, expected) in [
        (&mut ann, vec!["ann/watch/senml", "ann/ring/senml"]),
        (&mut bob, vec!["bob/watch/senml"]),
        (&mut all, topics.to_vec()),
    ] {
        for topic in expected {
            let delivered = client.expect_publish().await?;
            assert_eq!(delivered.topic, topic);
            client.ack(&delivered).await?;
        }
    }
    // Nothing more for anyone: a marker each expects next proves it.
    for (client, marker) in [(&mut ann, "ann/x/senml"), (&mut bob, "bob/watch/senml")] {
        publisher
            .publish_stored(marker, b"marker", QoS::AtLeastOnce)
            .await?;
        let delivered = client.expect_publish().await?;
        assert_eq!(
            (delivered.topic.as_str(), &delivered.payload[..]),
            (marker, &b"marker"[..])
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_subscriber_far_behind_gets_every_message_once_in_order() -> TestResult {
    // More than one inbox holds (router::INBOX_MAX = 1024), published while
    // the subscriber acknowledges nothing: its window fills, its inbox
    // overflows, and it must read the rest from the log.
    const MESSAGES: usize = 3000;
    let broker = TestBroker::start().await?;
    let v = ProtocolVersion::V311;
    let (mut subscriber, _) = broker.connect(clean(v, "slow")).await?;
    subscriber.subscribe("feed", QoS::AtLeastOnce).await?;
    let (mut publisher, _) = broker.connect(clean(v, "fast")).await?;
    for i in 0..MESSAGES {
        publisher
            .publish_stored("feed", numbered(i), QoS::AtLeastOnce)
            .await?;
    }
    for i in 0..MESSAGES {
        let delivered = subscriber.expect_publish().await?;
        assert_eq!(&delivered.payload[..], numbered(i), "message {i}");
        assert!(!delivered.dup, "message {i} sent once");
        subscriber.ack(&delivered).await?;
    }
    publisher
        .publish_stored("feed", b"last", QoS::AtLeastOnce)
        .await?;
    assert_eq!(&subscriber.expect_publish().await?.payload[..], b"last");
    Ok(())
}
