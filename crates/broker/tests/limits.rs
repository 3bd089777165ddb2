//! Limits on what unauthenticated strangers and one owner can make the
//! broker do (principles 5 and 7 of docs/architecture.md), each shown
//! refusing the abuse while a well-behaved client goes on unaffected:
//! password guessing locks a name without running Argon2, concurrent
//! password checks keep to their bound, retained messages (retained wills
//! too) are bounded per owner, and an anonymous client id cannot name an
//! authenticated session.

use bytes::Bytes;
use tributary_broker::BrokerConfig;
use tributary_mqtt::{Connect, Packet, Properties, ProtocolVersion, Publish, QoS, ReasonCode};
use tributary_testkit::{clean, persistent, will, TestBroker, TestClient};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V311;

/// A clean CONNECT with credentials.
fn login(protocol: ProtocolVersion, user: &str, secret: &str) -> Connect {
    let mut connect = clean(protocol, &format!("{user}-c"));
    connect.username = Some(user.to_owned());
    connect.password = Some(Bytes::from(secret.to_owned()));
    connect
}

/// Reloads the accounts the test just wrote (the broker would within a second).
fn reload(broker: &TestBroker) -> TestResult {
    broker.broker().accounts().reload_if_changed()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guessed_owner_name_is_locked_and_answered_without_argon2() -> TestResult {
    let broker = TestBroker::start().await?;
    tributary_accounts::add_owner(broker.data_dir(), "ann", Some("correct horse"))?;
    tributary_accounts::add_owner(broker.data_dir(), "bob", Some("battery staple"))?;
    reload(&broker)?;
    for i in 0..tributary_accounts::throttle::FREE_FAILURES {
        let version = if i % 2 == 0 { V5 } else { V311 };
        let (_, connack) = broker.connect(login(version, "ann", "guess")).await?;
        assert_eq!(connack.reason, ReasonCode::BadUserNameOrPassword);
    }
    let accounts = broker.broker().accounts();
    let checked = accounts.check_stats().checked;
    // Locked: the right password gets the wrong password's answer, on
    // either version, and no Argon2 check runs for it.
    let (_, connack) = broker.connect(login(V5, "ann", "correct horse")).await?;
    assert_eq!(connack.reason, ReasonCode::BadUserNameOrPassword);
    let (_, connack) = broker.connect(login(V311, "ann", "correct horse")).await?;
    assert_eq!(
        connack.reason,
        ReasonCode::BadUserNameOrPassword,
        "3.1.1 return code 4"
    );
    assert_eq!(
        accounts.check_stats().checked,
        checked,
        "no Argon2 for a locked name"
    );
    // The HTTP API's login counts in the same throttle.
    assert!(accounts
        .login_throttle()
        .check("ann", std::time::Instant::now())
        .is_err());
    // Another owner is not affected.
    let (_, connack) = broker.connect(login(V5, "bob", "battery staple")).await?;
    assert_eq!(connack.reason, ReasonCode::Success);
    broker.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_wrong_tokens_keep_to_the_check_bound_and_the_device_still_connects(
) -> TestResult {
    let mut config = TestBroker::config();
    config.limits.max_password_checks = 2;
    // Argon2 with the default parameters is slow in a debug build: the
    // queue of checks must not run into the CONNECT timeout here.
    config.limits.connect_timeout_ms = 120_000;
    let broker = TestBroker::start_with(config).await?;
    tributary_accounts::add_owner(broker.data_dir(), "ann", None)?;
    let token = tributary_accounts::add_device(broker.data_dir(), "ann", "watch")?;
    reload(&broker)?;
    let addr = broker.addr();
    let mut guesses = tokio::task::JoinSet::new();
    for i in 0..8 {
        guesses.spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            let connect = login(V5, "watch", &format!("guess {i}"));
            let (_, connack) = connect_over(stream, connect).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(connack.reason)
        });
    }
    let (mut device, connack) = broker.connect(login(V5, "watch", &token)).await?;
    assert_eq!(connack.reason, ReasonCode::Success);
    let reason = device
        .publish_stored("tributary/v1/watch/senml", b"[]", QoS::AtLeastOnce)
        .await?;
    assert_eq!(reason, ReasonCode::Success);
    while let Some(guess) = guesses.join_next().await {
        let reason = guess?.map_err(|e| e.to_string())?;
        assert_eq!(reason, ReasonCode::BadUserNameOrPassword);
    }
    let stats = broker.broker().accounts().check_stats();
    assert!(
        stats.peak <= 2,
        "at most 2 Argon2 checks at once: {stats:?}"
    );
    assert!(stats.waited > 0, "checks waited their turn: {stats:?}");
    assert_eq!(stats.running, 0);
    broker.shutdown().await?;
    Ok(())
}

/// CONNECT over a socket the caller opened (for a spawned task).
async fn connect_over(
    stream: tokio::net::TcpStream,
    connect: Connect,
) -> Result<(TestClient, tributary_mqtt::ConnAck), Box<dyn std::error::Error + Send + Sync>> {
    TestClient::handshake(Box::new(stream), connect)
        .await
        .map_err(|e| e.to_string().into())
}

/// Publishes a retained QoS `qos` message; the reason of its PUBACK, or
/// `None` when the broker closed the connection instead.
async fn retain(
    client: &mut TestClient,
    topic: &str,
    payload: &'static [u8],
    qos: QoS,
    packet_id: u16,
) -> Result<Option<ReasonCode>, Box<dyn std::error::Error>> {
    client
        .send(&Packet::Publish(Publish {
            dup: false,
            qos,
            retain: true,
            topic: topic.to_owned(),
            packet_id: (qos != QoS::AtMostOnce).then_some(packet_id),
            properties: Properties::default(),
            payload: Bytes::from_static(payload),
        }))
        .await?;
    match client.next().await? {
        Some(Packet::PubAck(ack)) => Ok(Some(ack.reason)),
        Some(Packet::Disconnect(d)) => Ok(Some(d.reason)),
        None => Ok(None),
        Some(other) => Err(format!("unexpected {other:?}").into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_are_bounded_per_owner() -> TestResult {
    let mut config: BrokerConfig = TestBroker::config();
    config.limits.max_retained_per_owner = 2;
    let broker = TestBroker::start_with(config).await?;
    let dir = broker.data_dir();
    tributary_accounts::add_owner(dir, "ann", Some("ann password"))?;
    tributary_accounts::add_owner(dir, "bob", None)?;
    let a1 = tributary_accounts::add_device(dir, "ann", "a1")?;
    let b1 = tributary_accounts::add_device(dir, "bob", "b1")?;
    reload(&broker)?;

    let (mut ann_device, _) = broker.connect(login(V5, "a1", &a1)).await?;
    let q1 = QoS::AtLeastOnce;
    assert_eq!(
        retain(&mut ann_device, "tributary/v1/a1/r1", b"1", q1, 1).await?,
        Some(ReasonCode::Success)
    );
    assert_eq!(
        retain(&mut ann_device, "tributary/v1/a1/r2", b"2", q1, 2).await?,
        Some(ReasonCode::Success)
    );
    // A third topic is over ann's bound: refused, nothing stored.
    assert_eq!(
        retain(&mut ann_device, "tributary/v1/a1/r3", b"3", q1, 3).await?,
        Some(ReasonCode::QuotaExceeded)
    );
    // Replacing one of hers is not, and ordinary publishes go on.
    assert_eq!(
        retain(&mut ann_device, "tributary/v1/a1/r1", b"1b", q1, 4).await?,
        Some(ReasonCode::Success)
    );
    assert_eq!(
        ann_device
            .publish_stored("tributary/v1/a1/plain", b"x", q1)
            .await?,
        ReasonCode::Success
    );
    // Another owner has a bound of his own.
    let (mut bob_device, _) = broker.connect(login(V5, "b1", &b1)).await?;
    for (i, topic) in ["tributary/v1/b1/r1", "tributary/v1/b1/r2"]
        .into_iter()
        .enumerate()
    {
        assert_eq!(
            retain(&mut bob_device, topic, b"b", q1, i as u16 + 1).await?,
            Some(ReasonCode::Success)
        );
    }
    // 3.1.1 cannot refuse one publish: the connection is closed, and
    // 5.0 QoS 0 gets DISCONNECT 0x97.
    let mut old = login(V311, "a1", &a1);
    old.client_id = "a1-old".into();
    let (mut old_device, _) = broker.connect(old).await?;
    assert_eq!(
        retain(&mut old_device, "tributary/v1/a1/r4", b"4", q1, 1).await?,
        None
    );
    assert_eq!(
        retain(
            &mut ann_device,
            "tributary/v1/a1/r5",
            b"5",
            QoS::AtMostOnce,
            0
        )
        .await?,
        Some(ReasonCode::QuotaExceeded)
    );
    // What a subscriber gets: ann's two retained messages, the newest r1.
    let (mut ann, _) = broker.connect(login(V5, "ann", "ann password")).await?;
    ann.subscribe("tributary/v1/a1/#", QoS::AtMostOnce).await?;
    let mut got = Vec::new();
    for _ in 0..2 {
        let publish = ann.expect_publish().await?;
        got.push((publish.topic, publish.payload));
    }
    got.sort();
    assert_eq!(
        got,
        [
            ("tributary/v1/a1/r1".to_owned(), Bytes::from_static(b"1b")),
            ("tributary/v1/a1/r2".to_owned(), Bytes::from_static(b"2")),
        ]
    );
    // No third retained message follows.
    ann.send(&Packet::PingReq).await?;
    ann.expect_pingresp().await?;
    let usage = broker.broker().retained_usage("ann");
    assert_eq!((usage.messages, usage.bytes), (2, 2 * 18 + 3));
    assert_eq!(broker.broker().retained_usage("bob").messages, 2);
    broker.shutdown().await?;
    Ok(())
}

/// A device connection of a1 under `client_id` whose will is retained on `topic`.
async fn with_retained_will(
    broker: &TestBroker,
    secret: &str,
    client_id: &str,
    topic: &str,
    payload: &'static [u8],
) -> Result<TestClient, Box<dyn std::error::Error>> {
    let mut connect = login(V5, "a1", secret);
    connect.client_id = client_id.into();
    let mut retained_will = will(topic, payload);
    retained_will.retain = true;
    connect.will = Some(retained_will);
    Ok(broker.connect(connect).await?.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_will_keeps_to_its_owners_bound() -> TestResult {
    let mut config: BrokerConfig = TestBroker::config();
    config.limits.max_retained_per_owner = 1;
    let broker = TestBroker::start_with(config).await?;
    let dir = broker.data_dir();
    tributary_accounts::add_owner(dir, "ann", Some("ann password"))?;
    let a1 = tributary_accounts::add_device(dir, "ann", "a1")?;
    reload(&broker)?;
    let (mut device, _) = broker.connect(login(V5, "a1", &a1)).await?;
    assert_eq!(
        retain(
            &mut device,
            "tributary/v1/a1/status",
            b"on",
            QoS::AtLeastOnce,
            1
        )
        .await?,
        Some(ReasonCode::Success)
    );
    let (mut watcher, _) = broker.connect(login(V5, "ann", "ann password")).await?;
    watcher
        .subscribe("tributary/v1/a1/#", QoS::AtLeastOnce)
        .await?;
    assert_eq!(watcher.expect_publish().await?.payload, &b"on"[..]);

    // A will retained on a second topic would be ann's second retained
    // message: not published. One that replaces her first is.
    with_retained_will(&broker, &a1, "a1-w1", "tributary/v1/a1/gone", b"x")
        .await?
        .drop_connection();
    with_retained_will(&broker, &a1, "a1-w2", "tributary/v1/a1/status", b"off")
        .await?
        .drop_connection();
    let fired = watcher.expect_publish().await?;
    assert_eq!(
        (fired.topic.as_str(), &fired.payload[..]),
        ("tributary/v1/a1/status", &b"off"[..])
    );
    // The two connections end in either order: wait (bounded) for the
    // first will's refusal to be counted.
    for _ in 0..50 {
        if broker.broker().stats().wills_refused() > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(broker.broker().stats().wills_refused(), 1);
    assert_eq!(broker.broker().retained_usage("ann").messages, 1);

    // A new subscriber finds the one retained message, and only it.
    let mut late = login(V5, "ann", "ann password");
    late.client_id = "ann-late".into();
    let (mut late, _) = broker.connect(late).await?;
    late.subscribe("tributary/v1/a1/#", QoS::AtMostOnce).await?;
    let retained = late.expect_publish().await?;
    assert_eq!(
        (retained.topic.as_str(), &retained.payload[..]),
        ("tributary/v1/a1/status", &b"off"[..])
    );
    late.send(&Packet::PingReq).await?;
    late.expect_pingresp().await?;
    broker.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_client_id_cannot_name_a_devices_session() -> TestResult {
    let broker = TestBroker::start().await?;
    tributary_accounts::add_owner(broker.data_dir(), "ann", None)?;
    let token = tributary_accounts::add_device(broker.data_dir(), "ann", "x")?;
    reload(&broker)?;
    let mut device = persistent(V5, "c1", 3600);
    device.username = Some("x".into());
    device.password = Some(Bytes::from(token.clone()));
    let (mut client, connack) = broker.connect(device.clone()).await?;
    assert!(!connack.session_present);
    client
        .subscribe("tributary/v1/x/commands/#", QoS::AtLeastOnce)
        .await?;
    client.disconnect().await?;
    // The device's session key, chosen as an anonymous client id.
    let (anonymous, connack) = broker.connect(persistent(V5, "d:x:c1", 3600)).await?;
    assert!(
        !connack.session_present,
        "an anonymous client got the device's session"
    );
    anonymous.disconnect().await?;
    let (_, connack) = broker.connect(device).await?;
    assert!(
        connack.session_present,
        "the device's session is still its own"
    );
    broker.shutdown().await?;
    Ok(())
}
