//! Publishers: each client one task that keeps up to `inflight` QoS 1/2
//! messages unacknowledged, paced to its share of `rate`, and writes
//! publishes in batches.
//!
//! A PUBLISH is encoded once per client with the codec as a template; each
//! message copies the template into the write buffer and patches in its
//! packet id and payload header, so the hot path neither allocates nor
//! re-encodes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tributary_mqtt::{
    decode, encode, Packet, PacketId, Properties, ProtocolVersion, PubResp, Publish, QoS,
};

use crate::config::BenchConfig;
use crate::payload::{Header, HEADER_LEN};
use crate::shared::Shared;
use crate::stats::{Latency, SeqSet};
use crate::{Error, Result};
use tributary_client::{Client, Connector, SessionStart};

/// Stop adding publishes to the write buffer beyond this many bytes: large
/// enough that one `write` carries many messages, small enough to keep reading
/// acks in between.
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Time a finished or stopped client gets to send DISCONNECT.
const DISCONNECT_GRACE: Duration = Duration::from_secs(1);

/// What one publisher did.
#[derive(Debug, Default)]
pub(crate) struct PublisherOutcome {
    /// The sequence numbers every subscriber must receive: acknowledged ones
    /// at QoS 1/2, sent ones at QoS 0.
    pub ledger: SeqSet,
    /// Publish→PUBACK (QoS 1) or publish→PUBCOMP (QoS 2).
    pub ack_latency: Latency,
}

/// One PUBLISH encoded once, with the offsets of the bytes that change per
/// message.
#[derive(Debug, Clone)]
pub(crate) struct PublishTemplate {
    bytes: Vec<u8>,
    /// Offset of the two packet id bytes (QoS 1/2 only).
    packet_id_at: Option<usize>,
    /// Offset of the payload, whose first bytes are the [`Header`].
    payload_at: usize,
}

impl PublishTemplate {
    pub fn new(topic: &str, qos: QoS, size: usize, version: ProtocolVersion) -> Result<Self> {
        let publish = Publish {
            dup: false,
            qos,
            retain: false,
            topic: topic.to_owned(),
            packet_id: (qos != QoS::AtMostOnce).then_some(1),
            properties: Properties::default(),
            payload: Bytes::from(vec![0u8; size]),
        };
        let mut buf = BytesMut::new();
        encode(&Packet::Publish(publish.clone()), version, &mut buf).map_err(Error::Encode)?;
        // The payload is the tail of the packet; before it come the packet id
        // and, in 5.0, the properties — here empty, one length byte of 0
        // (§3.3.2, 5.0 §3.3.2.3).
        let payload_at = buf.len() - size;
        let properties_len = usize::from(version == ProtocolVersion::V5);
        let packet_id_at = publish.packet_id.map(|_| payload_at - properties_len - 2);
        let template = PublishTemplate {
            bytes: buf.to_vec(),
            packet_id_at,
            payload_at,
        };
        template.check(&publish, version)?;
        Ok(template)
    }

    /// Makes sure the offsets are right by decoding a patched copy, so a
    /// change in the codec's layout fails loudly instead of sending garbage.
    fn check(&self, publish: &Publish, version: ProtocolVersion) -> Result<()> {
        let header = Header {
            publisher: 0xA1A2_A3A4,
            seq: 0x0102_0304_0506_0708,
            sent_unix_nanos: 42,
        };
        let mut buf = BytesMut::new();
        self.append(&mut buf, publish.packet_id.map(|_| 0xBEEF), &header);
        let decoded = match decode(&buf, version, buf.len()) {
            Ok((Packet::Publish(p), used)) if used == buf.len() => p,
            _ => {
                return Err(Error::Encode(tributary_mqtt::Error::Encode(
                    "publish template layout",
                )))
            }
        };
        let ok = decoded.topic == publish.topic
            && decoded.qos == publish.qos
            && decoded.packet_id == publish.packet_id.map(|_| 0xBEEF)
            && decoded.payload.len() == publish.payload.len()
            && Header::read(&decoded.payload) == Some(header);
        if !ok {
            return Err(Error::Encode(tributary_mqtt::Error::Encode(
                "publish template layout",
            )));
        }
        Ok(())
    }

    /// Appends one PUBLISH with this packet id and header.
    pub fn append(&self, out: &mut BytesMut, packet_id: Option<PacketId>, header: &Header) {
        let base = out.len();
        out.extend_from_slice(&self.bytes);
        if let (Some(at), Some(id)) = (self.packet_id_at, packet_id) {
            out[base + at..base + at + 2].copy_from_slice(&id.to_be_bytes());
        }
        let at = base + self.payload_at;
        header.write(&mut out[at..at + HEADER_LEN]);
    }
}

/// Spreads a client's messages evenly over time: message `n` is due
/// `n / per_second` after the start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pacer {
    start: Instant,
    /// `None`: as fast as possible.
    per_second: Option<f64>,
}

impl Pacer {
    pub fn new(start: Instant, per_second: f64) -> Pacer {
        Pacer {
            start,
            per_second: (per_second > 0.0).then_some(per_second),
        }
    }

    /// How many messages may have been sent by `now`.
    pub fn allowed(&self, now: Instant) -> u64 {
        match self.per_second {
            None => u64::MAX,
            Some(_) if now < self.start => 0,
            Some(r) => (now.saturating_duration_since(self.start).as_secs_f64() * r) as u64 + 1,
        }
    }

    /// When message `n` (from 0) is due; `None` when unpaced.
    pub fn due(&self, n: u64) -> Option<Instant> {
        let r = self.per_second?;
        Some(self.start + Duration::from_secs_f64(n as f64 / r))
    }
}

/// Runs publisher `index`: connect, report ready, wait for the start signal,
/// publish, disconnect.
pub(crate) async fn publisher(
    index: usize,
    config: Arc<BenchConfig>,
    connector: Arc<Connector>,
    shared: Arc<Shared>,
    mut start: watch::Receiver<Option<Instant>>,
) -> PublisherOutcome {
    let mut outcome = PublisherOutcome {
        ledger: SeqSet::with_capacity(config.messages),
        ack_latency: Latency::new(),
    };
    let client_id = config.client_id("pub", index);
    let mut client = match connector.connect(&client_id, SessionStart::Clean).await {
        Ok(client) => client,
        Err(e) => {
            shared.fail(&format!("publisher {client_id}"), &e);
            return outcome;
        }
    };
    shared.ready.fetch_add(1, Ordering::Relaxed);
    let started = tokio::select! {
        _ = shared.cancel.cancelled() => None,
        s = start.wait_for(Option::is_some) => s.ok().and_then(|s| *s),
    };
    let Some(started) = started else {
        client.disconnect(DISCONNECT_GRACE).await;
        return outcome;
    };
    let result = publish_all(index, &config, &shared, &mut client, started, &mut outcome).await;
    if !matches!(result, Ok(Finished::Stopped)) {
        let now = shared.nanos_since_start(Instant::now());
        shared.last_finish.fetch_max(now, Ordering::Relaxed);
    }
    match result {
        Ok(Finished::AllSent) => client.disconnect(DISCONNECT_GRACE).await,
        Ok(Finished::Stopped) => client.disconnect(DISCONNECT_GRACE).await,
        Err(e) => shared.fail(&format!("publisher {client_id}"), &e),
    }
    outcome
}

enum Finished {
    /// Every message sent and, at QoS 1/2, acknowledged.
    AllSent,
    /// The run stopped first.
    Stopped,
}

/// QoS 1/2 messages awaiting their acknowledgement, by packet id.
struct Inflight {
    /// Index = packet id: the sequence number and send time, while in flight.
    slots: Vec<Option<(u64, Instant)>>,
    free: Vec<PacketId>,
}

impl Inflight {
    fn new(window: u16) -> Inflight {
        Inflight {
            slots: vec![None; usize::from(window) + 1],
            // Popped from the end: ids are handed out from 1 upwards.
            free: (1..=window).rev().collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.free.len() + 1 == self.slots.len()
    }

    fn start(&mut self, seq: u64, at: Instant) -> Option<PacketId> {
        let id = self.free.pop()?;
        self.slots[usize::from(id)] = Some((seq, at));
        Some(id)
    }

    /// Frees `id`, returning what was in flight under it.
    fn finish(&mut self, id: PacketId) -> Result<(u64, Instant)> {
        let slot = self
            .slots
            .get_mut(usize::from(id))
            .and_then(Option::take)
            .ok_or(Error::Unexpected(
                "acknowledgement for a packet id not in flight",
            ))?;
        self.free.push(id);
        Ok(slot)
    }
}

async fn publish_all(
    index: usize,
    config: &BenchConfig,
    shared: &Shared,
    client: &mut Client,
    started: Instant,
    outcome: &mut PublisherOutcome,
) -> Result<Finished> {
    let template = PublishTemplate::new(
        &config.topic_for(index),
        config.qos,
        config.size,
        config.protocol,
    )?;
    if let Some(max) = client.broker_max_packet {
        if template.bytes.len() > max as usize {
            return Err(Error::Config(format!(
                "the broker accepts packets up to {max} bytes; a publish of --size {} is {}",
                config.size,
                template.bytes.len()
            )));
        }
    }
    let qos = config.qos;
    let window = config.inflight.min(client.receive_maximum).max(1);
    let mut inflight = Inflight::new(window);
    // Paced publishers start one after another across the first interval,
    // so that the sum of their messages is an even flow, not bursts.
    let phase = if config.rate > 0 {
        Duration::from_secs_f64(index as f64 / config.rate as f64)
    } else {
        Duration::ZERO
    };
    let pacer = Pacer::new(started + phase, config.rate as f64 / config.clients as f64);
    let total = config.messages;
    let publisher = index as u32;
    let mut next_seq = 0u64;
    let mut ping = ping_interval(config.keep_alive);

    loop {
        let now = Instant::now();
        // Queue what the window, the pace and the buffer allow.
        let allowed = pacer.allowed(now).min(total);
        let sent_unix_nanos = shared.clock.unix_nanos_at(now);
        let before = next_seq;
        while next_seq < allowed && client.writer.buf.len() < WRITE_HIGH_WATER {
            let packet_id = match qos {
                QoS::AtMostOnce => {
                    outcome.ledger.insert(next_seq);
                    None
                }
                _ => match inflight.start(next_seq, now) {
                    Some(id) => Some(id),
                    None => break,
                },
            };
            let header = Header {
                publisher,
                seq: next_seq,
                sent_unix_nanos,
            };
            template.append(&mut client.writer.buf, packet_id, &header);
            next_seq += 1;
        }
        Shared::add(&shared.sent, next_seq - before);

        if next_seq == total
            && match qos {
                QoS::AtMostOnce => !client.writer.wants_write(),
                _ => inflight.is_empty(),
            }
        {
            return Ok(Finished::AllSent);
        }
        let wake = if next_seq < total && next_seq >= allowed {
            pacer.due(next_seq)
        } else {
            None
        };

        let Client { reader, writer, .. } = client;
        tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return Ok(Finished::Stopped),
            read = reader.fill() => {
                read?;
                let now = Instant::now();
                let (mut acked, mut rejected) = (0, 0);
                while let Some(packet) = reader.next_packet()? {
                    match packet {
                        Packet::PubAck(ack) | Packet::PubComp(ack) => {
                            let (seq, sent_at) = inflight.finish(ack.packet_id)?;
                            if ack.reason.is_error() {
                                rejected += 1;
                            } else {
                                outcome.ledger.insert(seq);
                                outcome.ack_latency.record(now.saturating_duration_since(sent_at));
                                acked += 1;
                            }
                        }
                        Packet::PubRec(rec) if rec.reason.is_error() => {
                            inflight.finish(rec.packet_id)?;
                            rejected += 1;
                        }
                        Packet::PubRec(rec) => {
                            writer.queue(&Packet::PubRel(PubResp::success(rec.packet_id)))?;
                        }
                        Packet::PingResp => {}
                        Packet::Disconnect(d) => return Err(Error::Closed(Some(d.reason))),
                        _ => return Err(Error::Unexpected("packet on a publisher connection")),
                    }
                }
                Shared::add(&shared.acked, acked);
                Shared::add(&shared.rejected, rejected);
            }
            written = writer.write_some(), if writer.wants_write() => written?,
            _ = sleep_until_some(wake), if wake.is_some() => {}
            _ = ping.tick() => {
                if !writer.wants_write() {
                    writer.queue(&Packet::PingReq)?;
                }
            }
        }
    }
}

/// Ticks at half the keep-alive: a client that has nothing to write then
/// sends PINGREQ. Busy clients never need it, but it costs one timer.
pub(crate) fn ping_interval(keep_alive: u16) -> tokio::time::Interval {
    // Keep-alive 0 turns pings off: tick once a day.
    let period = match keep_alive {
        0 => Duration::from_secs(86_400),
        k => Duration::from_secs(u64::from(k)) / 2,
    };
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

async fn sleep_until_some(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_patches_packet_id_and_header_for_every_qos_and_version() {
        for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                let template = PublishTemplate::new("bench/12", qos, 100, version).unwrap();
                let mut buf = BytesMut::new();
                for seq in 0..3u64 {
                    let header = Header {
                        publisher: 12,
                        seq,
                        sent_unix_nanos: 1000 + seq,
                    };
                    template.append(&mut buf, Some(seq as u16 + 7), &header);
                }
                let mut at = 0;
                for seq in 0..3u64 {
                    let (packet, used) = decode(&buf[at..], version, 1 << 20).unwrap();
                    at += used;
                    let Packet::Publish(p) = packet else {
                        panic!("not a publish: {packet:?}")
                    };
                    assert_eq!(p.topic, "bench/12");
                    assert_eq!(p.qos, qos);
                    let expected_id = (qos != QoS::AtMostOnce).then_some(seq as u16 + 7);
                    assert_eq!(p.packet_id, expected_id);
                    assert_eq!(p.payload.len(), 100);
                    let h = Header::read(&p.payload).unwrap();
                    assert_eq!(
                        (h.publisher, h.seq, h.sent_unix_nanos),
                        (12, seq, 1000 + seq)
                    );
                }
                assert_eq!(at, buf.len());
            }
        }
    }

    #[test]
    fn inflight_hands_out_and_takes_back_packet_ids() {
        let now = Instant::now();
        let mut inflight = Inflight::new(2);
        assert!(inflight.is_empty());
        assert_eq!(inflight.start(0, now), Some(1));
        assert_eq!(inflight.start(1, now), Some(2));
        assert_eq!(inflight.start(2, now), None);
        assert_eq!(inflight.finish(2).unwrap().0, 1);
        assert!(inflight.finish(2).is_err());
        assert!(inflight.finish(9).is_err());
        assert_eq!(inflight.start(3, now), Some(2));
        inflight.finish(1).unwrap();
        inflight.finish(2).unwrap();
        assert!(inflight.is_empty());
    }

    #[test]
    fn pacer_spreads_messages() {
        let start = Instant::now();
        let pacer = Pacer::new(start, 100.0);
        assert_eq!(pacer.allowed(start), 1);
        assert_eq!(pacer.allowed(start + Duration::from_millis(1005)), 101);
        assert_eq!(pacer.due(50), Some(start + Duration::from_millis(500)));
        let unpaced = Pacer::new(start, 0.0);
        assert_eq!(unpaced.allowed(start), u64::MAX);
        assert_eq!(unpaced.due(5), None);
    }
}
