//! The identity of an authenticated device reaches the log: every record it
//! publishes carries its owner and device, whatever the topic says
//! (principle 3 of docs/architecture.md). Runs a broker in-process on port 0 with a real
//! log and account store, and speaks MQTT over a socket with the codec.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tributary_broker::{Broker, BrokerConfig, Listeners};
use tributary_log::{Log, LogConfig, Offset};
use tributary_mqtt::{
    decode, encode, Connect, Packet, Properties, ProtocolVersion, Publish, QoS, ReasonCode,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const V5: ProtocolVersion = ProtocolVersion::V5;

async fn send(stream: &mut TcpStream, packet: Packet) -> TestResult {
    let mut buf = BytesMut::new();
    encode(&packet, V5, &mut buf)?;
    stream.write_all(&buf).await?;
    Ok(())
}

async fn receive(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
) -> Result<Packet, Box<dyn std::error::Error>> {
    loop {
        match decode(buf, V5, 1 << 20) {
            Ok((packet, used)) => {
                let _ = buf.split_to(used);
                return Ok(packet);
            }
            Err(tributary_mqtt::Error::Incomplete { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read_buf(buf)).await??;
        if n == 0 {
            return Err("connection closed".into());
        }
    }
}

async fn login(
    addr: std::net::SocketAddr,
    user: &str,
    secret: &str,
) -> Result<(TcpStream, BytesMut), Box<dyn std::error::Error>> {
    let mut stream = TcpStream::connect(addr).await?;
    let connect = Connect {
        protocol: V5,
        clean_start: true,
        keep_alive: 30,
        client_id: format!("{user}-client"),
        will: None,
        username: Some(user.to_string()),
        password: Some(Bytes::from(secret.to_string())),
        properties: Properties::default(),
    };
    send(&mut stream, Packet::Connect(connect)).await?;
    let mut buf = BytesMut::new();
    match receive(&mut stream, &mut buf).await? {
        Packet::ConnAck(ack) if ack.reason == ReasonCode::Success => Ok((stream, buf)),
        other => Err(format!("login of {user}: {other:?}").into()),
    }
}

async fn publish(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    topic: &str,
    id: u16,
) -> Result<ReasonCode, Box<dyn std::error::Error>> {
    let publish = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: topic.to_string(),
        packet_id: Some(id),
        properties: Properties::default(),
        payload: Bytes::from_static(b"[{\"n\":\"hr\",\"v\":61}]"),
    };
    send(stream, Packet::Publish(publish)).await?;
    match receive(stream, buf).await? {
        Packet::PubAck(ack) if ack.packet_id == id => Ok(ack.reason),
        other => Err(format!("expected PUBACK {id}, got {other:?}").into()),
    }
}

type Server = tokio::task::JoinHandle<tributary_broker::Result<()>>;

/// A broker on the embedded log in `dir`, serving plain MQTT on a free
/// loopback port until the returned token is cancelled.
async fn start_broker(
    dir: &std::path::Path,
) -> Result<(Arc<Broker>, SocketAddr, CancellationToken, Server), Box<dyn std::error::Error>> {
    let log = Log::open(LogConfig::new(dir.join("log")))?;
    let mut config = BrokerConfig::default();
    config.mqtt.listen = "127.0.0.1:0".parse()?;
    let broker = Broker::open(config.clone(), log, dir).await?;
    let listeners = Listeners::bind(&config).await?;
    let addr = listeners.addresses()[0].1;
    let stop = CancellationToken::new();
    let server = tokio::spawn({
        let broker = broker.clone();
        let stop = stop.clone();
        async move {
            broker
                .run(listeners, async move { stop.cancelled().await })
                .await
        }
    });
    Ok((broker, addr, stop, server))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_carry_the_authenticated_owner_and_device() -> TestResult {
    let dir = tempfile::tempdir()?;
    tributary_accounts::add_owner(dir.path(), "ann", Some("ann-password"))?;
    tributary_accounts::add_owner(dir.path(), "bob", Some("bob-password"))?;
    let token_a1 = tributary_accounts::add_device(dir.path(), "ann", "a1")?;
    let token_b1 = tributary_accounts::add_device(dir.path(), "bob", "b1")?;

    let (broker, addr, stop, server) = start_broker(dir.path()).await?;

    let (mut a1, mut a1_buf) = login(addr, "a1", &token_a1).await?;
    let (mut b1, mut b1_buf) = login(addr, "b1", &token_b1).await?;
    assert_eq!(
        publish(&mut a1, &mut a1_buf, "tributary/v1/a1/senml", 1).await?,
        ReasonCode::Success
    );
    assert_eq!(
        publish(&mut b1, &mut b1_buf, "tributary/v1/b1/senml", 1).await?,
        ReasonCode::Success
    );
    // A device naming another device in the topic is refused: nothing of it is stored.
    assert_eq!(
        publish(&mut a1, &mut a1_buf, "tributary/v1/b1/senml", 2).await?,
        ReasonCode::NotAuthorized
    );

    let records = broker.log().read(Offset(0), 100).await?;
    let stamped: Vec<(String, String, String)> = records
        .iter()
        .map(|(_, r)| (r.topic.clone(), r.owner.clone(), r.device.clone()))
        .collect();
    assert_eq!(
        stamped,
        vec![
            ("tributary/v1/a1/senml".into(), "ann".into(), "a1".into()),
            ("tributary/v1/b1/senml".into(), "bob".into(), "b1".into()),
        ]
    );
    assert!(
        records.iter().all(|(_, r)| r.client_id.starts_with("d:")),
        "session keys are identity-scoped"
    );

    stop.cancel();
    server.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_of_services_and_admins_name_no_owner_or_device() -> TestResult {
    let dir = tempfile::tempdir()?;
    tributary_accounts::add_owner(dir.path(), "ann", Some("ann-password"))?;
    tributary_accounts::add_device(dir.path(), "ann", "a1")?;
    let grants = tributary_accounts::Grants {
        read: false,
        command: true,
        packs: false,
    };
    let token = tributary_accounts::add_service(dir.path(), "commander", grants)?;
    tributary_accounts::add_admin(dir.path(), "ops", Some("ops-password"))?;

    let (broker, addr, stop, server) = start_broker(dir.path()).await?;

    let (mut service, mut service_buf) = login(addr, "commander", &token).await?;
    let (mut admin, mut admin_buf) = login(addr, "ops", "ops-password").await?;
    assert_eq!(
        publish(
            &mut service,
            &mut service_buf,
            "tributary/v1/a1/commands/led",
            1
        )
        .await?,
        ReasonCode::Success
    );
    assert_eq!(
        publish(
            &mut admin,
            &mut admin_buf,
            "tributary/v1/a1/commands/reboot",
            1
        )
        .await?,
        ReasonCode::Success
    );
    // Neither may speak for the device: its data topic is refused, nothing stored.
    assert_eq!(
        publish(&mut service, &mut service_buf, "tributary/v1/a1/senml", 2).await?,
        ReasonCode::NotAuthorized
    );
    assert_eq!(
        publish(&mut admin, &mut admin_buf, "tributary/v1/a1/senml", 2).await?,
        ReasonCode::NotAuthorized
    );

    let records = broker.log().read(Offset(0), 100).await?;
    let stamped: Vec<(&str, &str, &str, &str)> = records
        .iter()
        .map(|(_, r)| {
            (
                r.topic.as_str(),
                r.owner.as_str(),
                r.device.as_str(),
                r.client_id.as_str(),
            )
        })
        .collect();
    assert_eq!(
        stamped,
        vec![
            (
                "tributary/v1/a1/commands/led",
                "",
                "",
                "s:commander:commander-client"
            ),
            (
                "tributary/v1/a1/commands/reboot",
                "",
                "",
                "a:ops:ops-client"
            ),
        ]
    );

    stop.cancel();
    server.await??;
    Ok(())
}
