//! Feeds arbitrary bytes to one broker connection, after a valid CONNECT
//! (so that the connected state machine is what gets explored), through an
//! in-memory pipe into a real broker on a real log.
//!
//! Must hold for every input: no panic (a panicking connection task fails
//! the input), the connection ends by itself once the input ends (no hang,
//! no task left running), and memory stays bounded (libFuzzer's
//! `-rss_limit_mb`, 2 GiB by default, over the whole run).
//!
//! The first input byte picks the CONNECT: bit 0 the protocol version
//! (3.1.1 / 5.0), bit 1 clean start, bit 2 a persistent session; the rest
//! goes to the broker as it is.

#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tributary_broker::{Broker, BrokerConfig};
use tributary_log::{Log, LogConfig};
use tributary_mqtt::{encode, Connect, Packet, Properties, ProtocolVersion};

/// How long a connection may take to end once its input ended.
const END_WITHIN: Duration = Duration::from_secs(10);
/// Bytes of broker output read per input at most (the rest is discarded
/// by closing the pipe).
const OUTPUT_LIMIT: usize = 4 * 1024 * 1024;

struct Harness {
    runtime: tokio::runtime::Runtime,
    broker: Arc<Broker>,
    /// Kept so the data dir lives as long as the process.
    _dir: tempfile::TempDir,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        // tmpfs when there is one: the log fsyncs every batch.
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            std::path::PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = tempfile::tempdir_in(base).expect("data dir");
        let mut log_config = LogConfig::new(dir.path().join("log"));
        log_config.max_bytes = 256 * 1024 * 1024;
        let mut config = BrokerConfig::default();
        config.mqtt.allow_anonymous = true;
        // Small limits, so that the fuzzer reaches them.
        config.limits.max_packet_size = 64 * 1024;
        config.limits.receive_maximum = 16;
        config.limits.inflight = 16;
        config.limits.max_subscriptions = 16;
        config.limits.topic_alias_maximum = 8;
        config.limits.connect_timeout_ms = 2_000;
        config.limits.max_connections_per_sec_per_source = 0;
        let broker = runtime.block_on(async {
            let log = Log::open(log_config).expect("log");
            Broker::open(config, log, dir.path()).await.expect("broker")
        });
        Harness {
            runtime,
            broker,
            _dir: dir,
        }
    })
}

fn connect_packet(selector: u8) -> BytesMut {
    let protocol = if selector & 1 == 0 {
        ProtocolVersion::V311
    } else {
        ProtocolVersion::V5
    };
    let mut properties = Properties::default();
    if selector & 4 != 0 && protocol == ProtocolVersion::V5 {
        properties.session_expiry_interval = Some(60);
    }
    let connect = Connect {
        protocol,
        clean_start: selector & 2 != 0 || protocol == ProtocolVersion::V5,
        keep_alive: 0,
        client_id: format!("fuzz-{}", selector & 7),
        will: None,
        username: None,
        password: None,
        properties,
    };
    let mut out = BytesMut::new();
    encode(&Packet::Connect(connect), protocol, &mut out).expect("encode CONNECT");
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let harness = harness();
    let mut input = connect_packet(selector);
    input.extend_from_slice(rest);
    harness.runtime.block_on(async {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let peer = SocketAddr::from(([127, 0, 0, 1], 40000));
        let connection = tokio::spawn(harness.broker.clone().serve_io(server, peer));
        let (mut from_broker, mut to_broker) = tokio::io::split(client);
        let reader = tokio::spawn(async move {
            let mut sink = vec![0u8; 16 * 1024];
            let mut total = 0;
            while total < OUTPUT_LIMIT {
                match from_broker.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
        });
        // The broker may stop reading (a protocol error closes it): a
        // failed write only means the connection is over.
        let _ = to_broker.write_all(&input).await;
        let _ = to_broker.shutdown().await;
        match tokio::time::timeout(END_WITHIN, connection).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("the connection task failed: {e}"),
            Err(_) => panic!("the connection did not end within {END_WITHIN:?} of its input's end"),
        }
        drop(to_broker);
        let _ = reader.await;
    });
});
