//! Subscribers: each client one task that subscribes to its filter,
//! acknowledges what it receives (PUBACK, or PUBREC then PUBCOMP), and feeds
//! every payload to its [`ReceiveTracker`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tributary_mqtt::{
    Packet, Properties, PubResp, QoS, ReasonCode, Subscribe, Subscription, SubscriptionOptions,
};

use crate::config::BenchConfig;
use crate::pub_mode::ping_interval;
use crate::shared::Shared;
use crate::stats::ReceiveTracker;
use crate::{Error, Result};
use tributary_client::{Client, Connector, SessionStart};

/// How long a subscriber may wait for its SUBACK.
pub const SUBACK_TIMEOUT: Duration = Duration::from_secs(10);
const DISCONNECT_GRACE: Duration = Duration::from_secs(1);
/// Packet id of the one SUBSCRIBE each subscriber sends.
const SUBSCRIBE_ID: u16 = 1;

/// What one subscriber did; `healthy` is false when it failed, so its
/// (partial) receipts do not count as losses.
#[derive(Debug)]
pub(crate) struct SubscriberOutcome {
    pub tracker: ReceiveTracker,
    pub healthy: bool,
}

/// Runs subscriber `index`: connect, subscribe, and receive until the run
/// stops. `seq_limit` bounds the sequence numbers it tracks.
pub(crate) async fn subscriber(
    index: usize,
    config: Arc<BenchConfig>,
    connector: Arc<Connector>,
    shared: Arc<Shared>,
    seq_limit: u64,
) -> SubscriberOutcome {
    let mut outcome = SubscriberOutcome {
        tracker: ReceiveTracker::new(seq_limit),
        healthy: false,
    };
    let client_id = config.client_id("sub", index);
    let session = if config.clean_start {
        SessionStart::Clean
    } else {
        SessionStart::Persistent
    };
    let result = match connector.connect(&client_id, session).await {
        Ok(mut client) => {
            let result = receive(index, &config, &shared, &mut client, &mut outcome.tracker).await;
            if result.is_ok() {
                client.disconnect(DISCONNECT_GRACE).await;
            }
            result
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => outcome.healthy = true,
        Err(e) => shared.fail(&format!("subscriber {client_id}"), &e),
    }
    outcome
}

async fn receive(
    index: usize,
    config: &BenchConfig,
    shared: &Shared,
    client: &mut Client,
    tracker: &mut ReceiveTracker,
) -> Result<()> {
    client.writer.queue(&Packet::Subscribe(Subscribe {
        packet_id: SUBSCRIBE_ID,
        properties: Properties::default(),
        subscriptions: vec![Subscription {
            filter: config.filter_for(index),
            options: SubscriptionOptions {
                qos: config.sub_qos,
                ..SubscriptionOptions::default()
            },
        }],
    }))?;
    let suback_deadline = tokio::time::Instant::now() + SUBACK_TIMEOUT;
    let mut subscribed = false;
    let mut ping = ping_interval(config.keep_alive);

    loop {
        let Client { reader, writer, .. } = client;
        tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return Ok(()),
            read = reader.fill() => {
                read?;
                let now = Instant::now();
                let now_unix = shared.clock.unix_nanos_at(now);
                let (received_before, distinct_before) = (tracker.received, tracker.distinct);
                while let Some(packet) = reader.next_packet()? {
                    match packet {
                        Packet::Publish(publish) => {
                            tracker.record(&publish.payload, now_unix);
                            match (publish.qos, publish.packet_id) {
                                (QoS::AtLeastOnce, Some(id)) => {
                                    writer.queue(&Packet::PubAck(PubResp::success(id)))?
                                }
                                (QoS::ExactlyOnce, Some(id)) => {
                                    writer.queue(&Packet::PubRec(PubResp::success(id)))?
                                }
                                _ => {}
                            }
                        }
                        Packet::PubRel(rel) => {
                            writer.queue(&Packet::PubComp(PubResp::success(rel.packet_id)))?
                        }
                        Packet::SubAck(ack) if ack.packet_id == SUBSCRIBE_ID && !subscribed => {
                            let reason = ack.reasons.first().copied().unwrap_or(ReasonCode::UnspecifiedError);
                            if reason.is_error() {
                                return Err(Error::SubscribeRefused {
                                    filter: config.filter_for(index),
                                    reason,
                                });
                            }
                            subscribed = true;
                            shared.ready.fetch_add(1, Ordering::Relaxed);
                        }
                        Packet::PingResp => {}
                        Packet::Disconnect(d) => return Err(Error::Closed(Some(d.reason))),
                        _ => return Err(Error::Unexpected("packet on a subscriber connection")),
                    }
                }
                let received = tracker.received - received_before;
                if received > 0 {
                    Shared::add(&shared.received, received);
                    let at = shared.nanos_since_start(now);
                    shared.first_receive.fetch_min(at, Ordering::Relaxed);
                    shared.last_receive.fetch_max(at, Ordering::Relaxed);
                }
                if let Some(counter) = shared.distinct.get(index) {
                    Shared::add(counter, tracker.distinct - distinct_before);
                }
            }
            written = writer.write_some(), if writer.wants_write() => written?,
            _ = tokio::time::sleep_until(suback_deadline), if !subscribed => {
                return Err(Error::Timeout("SUBACK"));
            }
            _ = ping.tick() => {
                if !writer.wants_write() {
                    writer.queue(&Packet::PingReq)?;
                }
            }
        }
    }
}
