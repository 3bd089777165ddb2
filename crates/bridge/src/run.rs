//! The run loop: create the Kafka topics, connect to the source, forward
//! every PUBLISH to Kafka and acknowledge it once Kafka has it; reconnect
//! with backoff whenever the source goes away or Kafka fails a message.
//!
//! ```text
//! source ──PUBLISH──► Link::forward ──Producer::send──► Kafka
//!   ▲                      │ (AckQueue, arrival order,        │
//!   │                      │  at most `inflight` entries)     │ delivery future
//!   └──PUBACK──── Link::settle ◄── oldest delivery resolved ──┘
//! ```
//!
//! Backpressure: while `inflight` messages await Kafka the socket is not
//! read, so the source holds (and, with a persistent session, queues) the
//! rest. A message Kafka does not acknowledge within `ack_timeout` ends the
//! connection without a PUBACK for it or anything after it; the source
//! redelivers all of them on the next connection (with DUP set).

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;
use tributary_client::Client;
use tributary_kafka::{Delivered, Producer};
use tributary_mqtt::{Packet, PubResp, Publish, QoS};

use crate::acks::{AckQueue, Settled};
use crate::source::{Source, SUBSCRIBE_ID};
use crate::stats::{Counters, Summary};
use crate::{BridgeConfig, Error, Result};

/// First wait before reconnecting; doubles up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A connection that lasted this long resets the backoff: the next failure
/// is a new incident, not the same one again.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10);
/// The producer gives up at `ack_timeout` itself; this guard only covers a
/// delivery future that never resolves.
const ACK_TIMEOUT_SLACK: Duration = Duration::from_secs(2);
/// How long the DISCONNECT at shutdown may take.
const DISCONNECT_GRACE: Duration = Duration::from_secs(1);

/// A message's Kafka delivery, bounded by the ack timeout.
type Delivery = Pin<Box<dyn Future<Output = tributary_kafka::Result<Delivered>> + Send>>;

/// Runs the bridge until `shutdown` resolves (then drains, disconnects and
/// returns the summary) or a fatal error (a refused CONNACK or SUBACK, a
/// bad configuration). Everything else is retried.
pub async fn run(config: BridgeConfig, shutdown: impl Future<Output = ()>) -> Result<Summary> {
    config.validate()?;
    let stop = CancellationToken::new();
    let done = CancellationToken::new();
    let counters = Counters::new();
    let watch = async {
        tokio::select! {
            _ = shutdown => {
                tracing::info!("stopping: no new messages are read from the source");
                stop.cancel();
            }
            _ = done.cancelled() => {}
        }
    };
    let work = async {
        let result = bridge(&config, &stop, &counters).await;
        done.cancel();
        result
    };
    let progress = counters.report_progress(config.progress_interval, &done);
    let ((), result, ()) = tokio::join!(watch, work, progress);
    result?;
    Ok(counters.summary())
}

async fn bridge(
    config: &BridgeConfig,
    stop: &CancellationToken,
    counters: &Counters,
) -> Result<()> {
    let source = Source::new(config)?;
    tracing::info!(
        source = %source.name(),
        filters = %config.filters.join(" "),
        mqtt = if config.protocol == tributary_mqtt::ProtocolVersion::V5 { "5.0" } else { "3.1.1" },
        client_id = %config.client_id,
        kafka = %config.kafka.brokers,
        topics = %describe_topics(config),
        inflight = config.inflight,
        ack_timeout_ms = config.kafka.ack_timeout.as_millis() as u64,
        "bridge starting"
    );

    let mut backoff = Backoff::new();
    loop {
        let created = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            created = tributary_kafka::ensure_topics(&config.kafka) => created,
        };
        match created {
            Ok(()) => break,
            Err(e) => {
                let wait = backoff.next_wait();
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "create the Kafka topics (is Kafka up?)");
                if sleep_or_stop(wait, stop).await {
                    return Ok(());
                }
            }
        }
    }
    let producer = Producer::new(&config.kafka).map_err(Error::Kafka)?;

    backoff = Backoff::new();
    while !stop.is_cancelled() {
        let connected = tokio::select! {
            _ = stop.cancelled() => break,
            connected = source.connect() => connected,
        };
        let error = match connected {
            Ok(client) => {
                Counters::add(&counters.connections, 1);
                tracing::info!(source = %source.name(), session_present = client.session_present, "connected to the source");
                let since = Instant::now();
                let link = Link {
                    client,
                    acks: AckQueue::new(config.inflight),
                    source: &source,
                    producer: &producer,
                    config,
                    counters,
                    subscribed: false,
                    last_heard: tokio::time::Instant::now(),
                };
                let result = link.serve(stop).await;
                counters
                    .in_flight
                    .store(0, std::sync::atomic::Ordering::Relaxed);
                match result {
                    Ok(()) => break,
                    Err(e) => {
                        if since.elapsed() >= BACKOFF_RESET_AFTER {
                            backoff = Backoff::new();
                        }
                        e
                    }
                }
            }
            Err(e) => e,
        };
        if error.is_fatal() {
            return Err(error);
        }
        let wait = backoff.next_wait();
        tracing::warn!(
            source = %source.name(),
            error = %error,
            retry_in_ms = wait.as_millis() as u64,
            "no connection to the source; unacknowledged messages will be redelivered"
        );
        if sleep_or_stop(wait, stop).await {
            break;
        }
    }

    // Nothing waits for these any more (their PUBACKs were not sent, so the
    // source redelivers them); flushing just leaves Kafka with whole batches.
    let grace = config.shutdown_grace;
    let flushed = tokio::task::spawn_blocking(move || producer.flush(grace)).await;
    if let Ok(Err(e)) = flushed {
        tracing::warn!(error = %e, "flush the Kafka producer");
    }
    Ok(())
}

/// `true` when `stop` came first.
async fn sleep_or_stop(wait: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = stop.cancelled() => true,
        _ = tokio::time::sleep(wait) => false,
    }
}

fn describe_topics(config: &BridgeConfig) -> String {
    let mut parts: Vec<String> = config
        .kafka
        .rules
        .iter()
        .map(|rule| format!("{} -> {}", rule.filter, rule.topic))
        .collect();
    parts.push(format!("otherwise {}", config.kafka.default_topic));
    parts.join(", ")
}

/// Waits between reconnects: 100 ms, doubling to 5 s.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub fn new() -> Backoff {
        Backoff { next: BACKOFF_MIN }
    }

    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (wait * 2).min(BACKOFF_MAX);
        wait
    }
}

/// One connection to the source.
struct Link<'a> {
    client: Client,
    acks: AckQueue<Delivery>,
    source: &'a Source,
    producer: &'a Producer,
    config: &'a BridgeConfig,
    counters: &'a Counters,
    /// The SUBACK arrived and granted every filter.
    subscribed: bool,
    /// Last time bytes came from the source while we were reading it.
    last_heard: tokio::time::Instant,
}

impl Link<'_> {
    /// Forwards until `stop` (then drains and disconnects: `Ok`) or the
    /// connection fails (`Err`: the caller reconnects).
    async fn serve(mut self, stop: &CancellationToken) -> Result<()> {
        let keep_alive = Duration::from_secs(u64::from(self.config.keep_alive));
        loop {
            let full = self.acks.is_full();
            self.counters
                .in_flight
                .store(self.acks.len() as u64, std::sync::atomic::Ordering::Relaxed);
            if full {
                // We are not listening: the source's silence means nothing.
                self.last_heard = tokio::time::Instant::now();
            }
            let ping_due = self.client.ping_due().map(tokio::time::Instant::from_std);
            let silent_at = (!keep_alive.is_zero()).then(|| self.last_heard + keep_alive * 3 / 2);
            let wake = match (ping_due, silent_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                biased;
                _ = stop.cancelled() => return self.drain().await,
                settled = self.acks.next(), if !self.acks.is_empty() => {
                    self.settle(settled)?;
                    while let Some(settled) = self.acks.pop_ready() {
                        self.settle(settled)?;
                    }
                    // Room again: PUBLISHes already read may go on.
                    self.take_packets()?;
                }
                written = self.client.writer.write_some(), if self.client.writer.wants_write() => written?,
                read = self.client.reader.fill(), if !full => {
                    read?;
                    self.last_heard = tokio::time::Instant::now();
                    self.take_packets()?;
                }
                _ = sleep_until_some(wake) => {
                    let now = tokio::time::Instant::now();
                    if silent_at.is_some_and(|at| now >= at) {
                        return Err(Error::Unexpected(format!(
                            "nothing for {} s (keep-alive {} s): the connection is dead",
                            (keep_alive * 3 / 2).as_secs(),
                            keep_alive.as_secs()
                        )));
                    }
                    if ping_due.is_some_and(|at| now >= at) && !self.client.writer.wants_write() {
                        self.client.writer.queue(&Packet::PingReq)?;
                    }
                }
            }
        }
    }

    /// Decodes and handles the packets already read, while there is room
    /// for more messages in flight.
    fn take_packets(&mut self) -> Result<()> {
        while !self.acks.is_full() {
            let Some(packet) = self.client.reader.next_packet()? else {
                return Ok(());
            };
            match packet {
                Packet::Publish(publish) => self.forward(publish)?,
                Packet::SubAck(ack) if ack.packet_id == SUBSCRIBE_ID && !self.subscribed => {
                    self.source.check_suback(&ack)?;
                    self.subscribed = true;
                    tracing::info!(filters = %self.config.filters.join(" "), "subscribed at QoS 1");
                }
                Packet::PingResp => {}
                Packet::Disconnect(d) => {
                    return Err(Error::Source(tributary_client::Error::Closed(Some(
                        d.reason,
                    ))))
                }
                other => return Err(Error::Unexpected(format!("an unexpected {}", other.name()))),
            }
        }
        Ok(())
    }

    /// Hands a PUBLISH to Kafka and queues it for its acknowledgement.
    fn forward(&mut self, publish: Publish) -> Result<()> {
        let packet_id = match publish.qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce => publish.packet_id,
            QoS::ExactlyOnce => {
                return Err(Error::Unexpected(
                    "a QoS 2 PUBLISH on subscriptions granted at most QoS 1".into(),
                ))
            }
        };
        self.counters.received(publish.dup);
        let record = self.source.record(publish, unix_ms())?;
        // A full producer queue (Kafka away for long) ends the connection
        // like a failed delivery: the source keeps the message.
        let delivery = self.producer.send(&record).map_err(Error::NotStored)?;
        let limit = self.config.kafka.ack_timeout + ACK_TIMEOUT_SLACK;
        self.acks.push(
            packet_id,
            Box::pin(async move {
                tokio::time::timeout(limit, delivery)
                    .await
                    .unwrap_or_else(|_| {
                        Err(tributary_kafka::Error::NotStored(format!(
                            "no acknowledgement within {} ms",
                            limit.as_millis()
                        )))
                    })
            }),
        );
        Ok(())
    }

    /// The oldest message's delivery resolved: acknowledge it to the source,
    /// or give up the connection so that the source sends it again.
    fn settle(&mut self, settled: Settled<tributary_kafka::Result<Delivered>>) -> Result<()> {
        match (settled.packet_id, settled.outcome) {
            (packet_id, Ok(_)) => {
                self.counters.forwarded();
                if let Some(id) = packet_id {
                    self.client
                        .writer
                        .queue(&Packet::PubAck(PubResp::success(id)))?;
                    Counters::add(&self.counters.acked, 1);
                }
                Ok(())
            }
            (Some(_), Err(e)) => {
                Counters::add(&self.counters.not_stored, 1);
                Err(Error::NotStored(e))
            }
            (None, Err(e)) => {
                Counters::add(&self.counters.lost_qos0, 1);
                tracing::warn!(error = %e, "kafka did not store a QoS 0 message: it is lost");
                Ok(())
            }
        }
    }

    /// Shutdown: read nothing more, wait (bounded) for the deliveries in
    /// flight and send their PUBACKs, then DISCONNECT. What is left the
    /// source keeps in the session and redelivers next time.
    async fn drain(mut self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.config.shutdown_grace;
        tracing::info!(
            in_flight = self.acks.len(),
            "waiting for Kafka to acknowledge the messages in flight"
        );
        while !self.acks.is_empty() || self.client.writer.wants_write() {
            tokio::select! {
                settled = self.acks.next(), if !self.acks.is_empty() => {
                    if let Err(e) = self.settle(settled) {
                        tracing::warn!(error = %e, "stopping without acknowledging the rest: the source will redeliver it");
                        break;
                    }
                }
                written = self.client.writer.write_some(), if self.client.writer.wants_write() => {
                    if let Err(e) = written {
                        tracing::warn!(error = %e, "send the last acknowledgements to the source");
                        return Ok(());
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(left = self.acks.len(), "shutdown grace over: the source will redeliver the messages still in flight");
                    break;
                }
            }
        }
        self.client.disconnect(DISCONNECT_GRACE).await;
        Ok(())
    }
}

async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_100ms_to_5s() {
        let mut backoff = Backoff::new();
        let waits: Vec<u64> = (0..8)
            .map(|_| backoff.next_wait().as_millis() as u64)
            .collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    }
}
