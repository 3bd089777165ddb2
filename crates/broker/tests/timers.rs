//! The broker's timers: wills, session expiry and keep-alive. A will is
//! published when a client vanishes and not when it says goodbye; a 5.0
//! will waits out its Will Delay Interval (and no longer than the session
//! lasts), and is dropped when the client returns in time; an offline
//! session expires after its interval; a silent client is disconnected
//! after 1.5 × its keep-alive.
//!
//! Delays run on paused time (`tokio::time::pause`, then `advance` in
//! steps), so a 5 s delay takes no 5 s. Two things shape how:
//! - The log's writer is an OS thread that fsyncs, and on paused time tokio
//!   moves the clock by itself whenever the runtime is idle — waiting for
//!   an fsync included. A test that waited for a stored publish on paused
//!   time could see the clock (and its own receive timeout) jump ahead. So
//!   the clock is paused only after the connections are set up, moved by
//!   `advance` alone, and resumed before waiting for anything that goes
//!   through the log (a will being delivered, a marker message).
//! - "Not yet delivered" is checked with a marker: a message published after
//!   the moment in question that must arrive first. A will due by then would
//!   have been stored before it, and delivery follows the log's order.
//!
//! Connections are in-memory (`Broker::serve_io`), so no socket decides when
//! bytes arrive. Session expiry runs on paused time too: the broker measures
//! how long a session has been offline on tokio's clock.

use std::time::Duration;

use tokio::time;
use tributary_mqtt::{Disconnect, Packet, ProtocolVersion, QoS, ReasonCode};
use tributary_testkit::{clean, persistent, settle, will, TestBroker, TestClient};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const V311: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;
const VERSIONS: [ProtocolVersion; 2] = [V311, V5];
const WILL: &[u8] = b"gone";
const MARKER: &[u8] = b"marker";

/// A client subscribed to every will and marker, and a client to publish
/// markers with.
async fn watchers(
    broker: &TestBroker,
) -> Result<(TestClient, TestClient), Box<dyn std::error::Error>> {
    let (mut watcher, _) = broker.connect_in_memory(clean(V5, "watcher")).await?;
    watcher.subscribe("wills/#", QoS::AtLeastOnce).await?;
    let (marker, _) = broker.connect_in_memory(clean(V5, "marker")).await?;
    Ok((watcher, marker))
}

/// Publishes a marker and checks it is the next thing the watcher gets:
/// no will was stored before it.
async fn expect_no_will_yet(
    watcher: &mut TestClient,
    marker: &mut TestClient,
) -> Result<(), Box<dyn std::error::Error>> {
    marker
        .publish_stored("wills/marker", MARKER, QoS::AtLeastOnce)
        .await?;
    let next = watcher.expect_publish().await?;
    assert_eq!(
        &next.payload[..],
        MARKER,
        "expected no will yet, got {next:?}"
    );
    watcher.ack(&next).await?;
    Ok(())
}

async fn expect_will(
    watcher: &mut TestClient,
    topic: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let next = watcher.expect_publish().await?;
    assert_eq!((next.topic.as_str(), &next.payload[..]), (topic, WILL));
    watcher.ack(&next).await?;
    Ok(())
}

/// A 5.0 client with a persistent session and a will delayed by `delay_secs`.
fn delayed_will(client_id: &str, expiry_secs: u32, delay_secs: u32) -> tributary_mqtt::Connect {
    let mut connect = persistent(V5, client_id, expiry_secs);
    let mut will = will(&format!("wills/{client_id}"), WILL);
    will.properties.will_delay_interval = Some(delay_secs);
    connect.will = Some(will);
    connect
}

#[tokio::test]
async fn will_is_published_when_a_client_vanishes_not_when_it_disconnects() -> TestResult {
    let broker = TestBroker::start().await?;
    let (mut watcher, mut marker) = watchers(&broker).await?;
    for version in VERSIONS {
        let topic = format!("wills/{}", version.level());
        let mut connect = clean(version, &format!("polite-{}", version.level()));
        connect.will = Some(will(&topic, WILL));
        let (polite, _) = broker.connect_in_memory(connect.clone()).await?;
        polite.disconnect().await?;
        expect_no_will_yet(&mut watcher, &mut marker).await?;

        connect.client_id = format!("vanishing-{}", version.level());
        let (vanishing, _) = broker.connect_in_memory(connect).await?;
        vanishing.drop_connection();
        expect_will(&mut watcher, &topic).await?;
    }
    broker.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn v5_disconnect_with_will_message_publishes_the_will() -> TestResult {
    let broker = TestBroker::start().await?;
    let (mut watcher, _) = watchers(&broker).await?;
    let mut connect = clean(V5, "leaving");
    connect.will = Some(will("wills/leaving", WILL));
    let (client, _) = broker.connect_in_memory(connect).await?;
    client
        .disconnect_with(Disconnect::new(ReasonCode::DisconnectWithWillMessage))
        .await?;
    expect_will(&mut watcher, "wills/leaving").await?;
    broker.shutdown().await?;
    Ok(())
}

/// Drops a 5.0 client with a delayed will on paused time, checks that
/// there is no will `quiet` later, and that there is one `due` after that.
async fn expect_will_between(
    client_id: &str,
    expiry_secs: u32,
    delay_secs: u32,
    quiet: Duration,
    due: Duration,
) -> TestResult {
    let broker = TestBroker::start().await?;
    let (mut watcher, mut marker) = watchers(&broker).await?;
    let (client, _) = broker
        .connect_in_memory(delayed_will(client_id, expiry_secs, delay_secs))
        .await?;

    time::pause();
    client.drop_connection();
    settle().await;
    time::advance(quiet).await;
    time::resume();
    expect_no_will_yet(&mut watcher, &mut marker).await?;

    time::pause();
    time::advance(due).await;
    time::resume();
    expect_will(&mut watcher, &format!("wills/{client_id}")).await?;
    broker.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn v5_will_waits_for_its_delay_interval() -> TestResult {
    expect_will_between(
        "delayed",
        600,
        5,
        Duration::from_secs(4),
        Duration::from_secs(2),
    )
    .await
}

#[tokio::test]
async fn v5_will_is_dropped_when_the_client_returns_within_the_delay() -> TestResult {
    let broker = TestBroker::start().await?;
    let (mut watcher, mut marker) = watchers(&broker).await?;
    let (client, _) = broker
        .connect_in_memory(delayed_will("returning", 600, 5))
        .await?;

    time::pause();
    client.drop_connection();
    settle().await;
    time::advance(Duration::from_secs(3)).await;
    time::resume();
    let (client, connack) = broker
        .connect_in_memory(persistent(V5, "returning", 600))
        .await?;
    assert!(connack.session_present);

    time::pause();
    time::advance(Duration::from_secs(10)).await;
    time::resume();
    expect_no_will_yet(&mut watcher, &mut marker).await?;
    client.disconnect().await?;
    broker.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn v5_will_is_published_when_the_session_ends_before_the_delay() -> TestResult {
    // 5.0 §3.1.3.2.2: the will goes out when the delay passes or the
    // session ends, whichever is first: here after 2 s, not an hour.
    expect_will_between(
        "short-session",
        2,
        3600,
        Duration::from_secs(1),
        Duration::from_secs(2),
    )
    .await
}

/// Polls `condition` every 20 ms until it holds, for at most 10 s.
async fn wait_for(
    what: &str,
    mut condition: impl FnMut() -> bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        if time::Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test]
async fn offline_session_expires_after_its_interval() -> TestResult {
    let mut config = TestBroker::config();
    // 3.1.1 sessions last this long offline; a 5.0 client asks for 1 s.
    config.limits.max_session_expiry_secs = 1;
    let broker = TestBroker::start_with(config).await?;
    for version in VERSIONS {
        let id = format!("expiring-{}", version.level());
        let topic = format!("expiring/{}", version.level());
        let (mut client, _) = broker
            .connect_in_memory(persistent(version, &id, 1))
            .await?;
        client.subscribe(&topic, QoS::AtLeastOnce).await?;
        client.disconnect().await?;

        // Expiry removes the session's cursor from the log (consumer
        // "session/<session key>", an anonymous client's key being
        // `anon:<client id>`): the one sign of it that needs no new
        // connection, which would resume the session instead. Checked to
        // exist first, so a renamed cursor fails here rather than passing.
        let cursor = format!("session/anon:{id}");
        let log = broker.broker().log();
        assert!(
            log.committed_offset(&cursor).is_some(),
            "{cursor} committed"
        );
        time::pause();
        // Half the interval offline (the broker's expiry check runs every
        // second): the session is still there.
        time::advance(Duration::from_millis(500)).await;
        settle().await;
        assert!(
            log.committed_offset(&cursor).is_some(),
            "{id}: expired after half its interval"
        );
        // Past the interval and the next check: gone.
        time::advance(Duration::from_millis(1600)).await;
        settle().await;
        time::resume();
        wait_for("session expiry", || log.committed_offset(&cursor).is_none()).await?;

        let (mut client, connack) = broker
            .connect_in_memory(persistent(version, &id, 1))
            .await?;
        assert!(!connack.session_present, "{id}: the session expired");
        // The subscription went with it: only the new one delivers.
        client
            .subscribe("expiring/marker", QoS::AtLeastOnce)
            .await?;
        let (mut publisher, _) = broker.connect_in_memory(clean(V5, "publisher")).await?;
        publisher
            .publish_stored(&topic, b"lost", QoS::AtLeastOnce)
            .await?;
        publisher
            .publish_stored("expiring/marker", MARKER, QoS::AtLeastOnce)
            .await?;
        let next = client.expect_publish().await?;
        assert_eq!(&next.payload[..], MARKER);
        client.ack(&next).await?;
        publisher.disconnect().await?;
        client.disconnect().await?;
    }
    broker.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn silent_client_is_disconnected_after_one_and_a_half_keep_alives() -> TestResult {
    let broker = TestBroker::start().await?;
    for version in VERSIONS {
        let mut connect = clean(version, &format!("quiet-{}", version.level()));
        connect.keep_alive = 2;
        let (mut client, _) = broker.connect_in_memory(connect).await?;

        time::pause();
        // Any packet within 1.5 × 2 s keeps the connection: each PINGREQ
        // at 2.9 s is answered, and starts the 3 s over.
        for _ in 0..2 {
            time::advance(Duration::from_millis(2900)).await;
            client.send(&Packet::PingReq).await?;
            client.expect_pingresp().await?;
        }
        time::advance(Duration::from_millis(3100)).await;
        time::resume();
        let disconnect = client.expect_closed().await?;
        match version {
            // 5.0 §3.1.2.10: DISCONNECT 0x8D Keep Alive timeout, then close.
            ProtocolVersion::V5 => assert_eq!(
                disconnect.map(|d| d.reason),
                Some(ReasonCode::KeepAliveTimeout)
            ),
            // 3.1.1 has no DISCONNECT from the server: the socket closes.
            ProtocolVersion::V311 => assert_eq!(disconnect, None),
        }
    }
    broker.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn v5_server_keep_alive_overrides_a_client_without_keep_alive() -> TestResult {
    let mut config = TestBroker::config();
    config.limits.max_keep_alive_secs = 1;
    let broker = TestBroker::start_with(config).await?;
    let (mut client, connack) = broker.connect_in_memory(clean(V5, "no-keep-alive")).await?;
    assert_eq!(connack.properties.server_keep_alive, Some(1));

    time::pause();
    time::advance(Duration::from_millis(1400)).await;
    client.send(&Packet::PingReq).await?;
    client.expect_pingresp().await?;
    time::advance(Duration::from_millis(1600)).await;
    time::resume();
    let disconnect = client.expect_closed().await?;
    assert_eq!(
        disconnect.map(|d| d.reason),
        Some(ReasonCode::KeepAliveTimeout)
    );
    broker.shutdown().await?;
    Ok(())
}
