//! A full log: when a consumer that holds retention back (the pipeline,
//! the archive) has not read the oldest segment and the log is at
//! `log.max_bytes`, publishes are refused, never dropped: 5.0 gets PUBACK
//! 0x97 Quota exceeded, 3.1.1 is closed without PUBACK (it resends). A
//! session's cursor never does this (it yields: see the routing and the
//! `test_limits.py` integration test); here a consumer named like the
//! pipeline holds the log.

use tributary_log::Offset;
use tributary_mqtt::{Packet, ProtocolVersion, QoS, ReasonCode};
use tributary_testkit::{clean, TestBroker};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const KIB: &[u8] = &[7; 1024];

#[tokio::test]
async fn a_full_log_refuses_publishes_until_its_consumer_catches_up() -> TestResult {
    let broker = TestBroker::start_with_log(TestBroker::config(), Some((8192, 32768))).await?;
    let log = broker.broker().log().clone();
    log.commit_offset("pipeline", Offset(0))?;

    let (mut v5, _) = broker.connect(clean(ProtocolVersion::V5, "v5")).await?;
    let mut acked = 0;
    let refused = loop {
        let reason = v5.publish_stored("fill", KIB, QoS::AtLeastOnce).await?;
        if reason != ReasonCode::Success {
            break reason;
        }
        acked += 1;
        assert!(acked < 400, "never refused");
    };
    assert_eq!(refused, ReasonCode::QuotaExceeded);
    assert!(acked >= 10, "{acked}");

    let (mut v311, _) = broker.connect(clean(ProtocolVersion::V311, "v311")).await?;
    v311.publish("fill", KIB, QoS::AtLeastOnce).await?;
    assert!(
        matches!(v311.next().await?, None | Some(Packet::Disconnect(_))),
        "3.1.1: closed without PUBACK"
    );

    // The consumer catches up: appends are taken again.
    log.commit_offset("pipeline", log.end_offset())?;
    let mut accepted = false;
    for _ in 0..50 {
        if v5.publish_stored("fill", KIB, QoS::AtLeastOnce).await? == ReasonCode::Success {
            accepted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(accepted, "publishes accepted again");
    Ok(())
}
