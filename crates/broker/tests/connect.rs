//! CONNECT and CONNACK in both protocol versions: what the broker accepts,
//! what it refuses with which reason code, and what a 5.0 CONNACK
//! announces. Runs the broker in-process (tributary-testkit) over TCP.

use tributary_mqtt::{Properties, ProtocolVersion, ReasonCode};
use tributary_testkit::{clean, persistent, TestBroker};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const V311: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

#[tokio::test]
async fn v311_connect_is_accepted_with_no_session_present() -> TestResult {
    let broker = TestBroker::start().await?;
    for connect in [clean(V311, "c-clean"), persistent(V311, "c-persistent", 0)] {
        let (client, connack) = broker.connect(connect).await?;
        assert_eq!(connack.reason, ReasonCode::Success);
        assert!(!connack.session_present, "a new client has no session");
        assert_eq!(
            connack.properties,
            Properties::default(),
            "3.1.1 has no properties"
        );
        client.disconnect().await?;
    }
    broker.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn v5_connack_announces_the_broker_limits() -> TestResult {
    let broker = TestBroker::start().await?;
    let limits = TestBroker::config().limits;
    let (client, connack) = broker.connect(clean(V5, "c5")).await?;
    assert_eq!(connack.reason, ReasonCode::Success);
    assert!(!connack.session_present);
    let p = &connack.properties;
    assert_eq!(p.receive_maximum, Some(limits.receive_maximum));
    assert_eq!(p.maximum_packet_size, Some(limits.max_packet_size as u32));
    assert_eq!(p.topic_alias_maximum, Some(limits.topic_alias_maximum));
    assert_eq!(p.retain_available, Some(1));
    assert_eq!(p.shared_subscription_available, Some(1));
    assert_eq!(
        p.assigned_client_identifier, None,
        "the client named itself"
    );
    assert_eq!(p.session_expiry_interval, None, "nothing to lower");
    client.disconnect().await?;
    broker.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn v5_empty_client_id_is_assigned_one() -> TestResult {
    let broker = TestBroker::start().await?;
    let (client, connack) = broker.connect(clean(V5, "")).await?;
    assert_eq!(connack.reason, ReasonCode::Success);
    let assigned = connack.properties.assigned_client_identifier;
    assert!(
        assigned.as_deref().is_some_and(|id| !id.is_empty()),
        "assigned client identifier: {assigned:?}"
    );
    client.disconnect().await?;
    broker.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn v311_empty_client_id_needs_a_clean_session() -> TestResult {
    let broker = TestBroker::start().await?;
    let (_client, connack) = broker.connect(persistent(V311, "", 0)).await?;
    // 3.1.1 §3.1.3.1: return code 0x02 Identifier rejected.
    assert_eq!(connack.reason, ReasonCode::ClientIdentifierNotValid);
    assert!(!connack.session_present);
    broker.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn v5_session_expiry_above_the_limit_is_lowered_and_announced() -> TestResult {
    let mut config = TestBroker::config();
    config.limits.max_session_expiry_secs = 60;
    let broker = TestBroker::start_with(config).await?;
    let (client, connack) = broker.connect(persistent(V5, "c5", 3600)).await?;
    assert_eq!(connack.reason, ReasonCode::Success);
    assert_eq!(connack.properties.session_expiry_interval, Some(60));
    client.disconnect().await?;
    broker.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn without_anonymous_access_a_client_without_credentials_is_refused() -> TestResult {
    let mut config = TestBroker::config();
    config.mqtt.allow_anonymous = false;
    let broker = TestBroker::start_with(config).await?;
    for version in [V311, V5] {
        let (mut client, connack) = broker.connect(clean(version, "anonymous")).await?;
        // 5.0 0x87; 3.1.1 return code 5, Not authorized.
        assert_eq!(connack.reason, ReasonCode::NotAuthorized, "{version:?}");
        assert!(!connack.session_present);
        assert_eq!(client.expect_closed().await?, None, "{version:?}");
    }
    broker.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_client_over_its_receive_maximum_still_reads_why_it_was_closed() -> TestResult {
    use bytes::BytesMut;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tributary_mqtt::{Packet, PublishHeader, QoS};

    let broker = TestBroker::start().await?;
    let limit = TestBroker::config().limits.receive_maximum as usize;
    let mut stream = tokio::net::TcpStream::connect(broker.addr()).await?;
    let mut out = BytesMut::new();
    tributary_mqtt::encode(&Packet::Connect(clean(V5, "greedy")), V5, &mut out)?;
    // Far more QoS 1 publishes than the quota, sent without reading a
    // PUBACK, and still more after the broker gave up on the client.
    let publish = |id: u16, out: &mut BytesMut| {
        let header = PublishHeader {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            packet_id: Some(id),
        };
        tributary_mqtt::encode_publish_parts(
            header,
            "greedy/t",
            &Properties::default(),
            &[7; 100],
            V5,
            out,
        )
    };
    for id in 1..=(limit as u16 + 200) {
        publish(id, &mut out)?;
    }
    stream.write_all(&out).await?;
    // A client library stops at the first failed write (a reset) and then
    // never reads what the broker said: keep writing for a moment, as a
    // client in the middle of a burst does, and every write must succeed.
    for round in 0..30u16 {
        let mut more = BytesMut::new();
        for id in 1..=20u16 {
            publish(round * 20 + id, &mut more)?;
        }
        stream
            .write_all(&more)
            .await
            .map_err(|e| format!("write {round}: {e}"))?;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mut received = BytesMut::new();
    let read_all = async {
        loop {
            match stream.read_buf(&mut received).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), read_all).await?;
    let mut reasons = Vec::new();
    while let Ok((packet, used)) = tributary_mqtt::decode(&received, V5, 1 << 20) {
        let _ = received.split_to(used);
        if let Packet::Disconnect(d) = packet {
            reasons.push(d.reason);
        }
    }
    assert_eq!(reasons, [ReasonCode::ReceiveMaximumExceeded]);
    Ok(())
}
