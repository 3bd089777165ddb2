//! One client connection: the handshake (`ExpectConnect`), then the
//! connected loop that reads packets, appends publishes to the log, answers
//! acknowledgements once the log made them durable, and delivers matching
//! log records to the client.
//!
//! Everything a connection does happens in its one task, in one `select!`
//! loop; the read and write buffers live in the struct, so every branch is
//! cancel-safe. Backpressure: the task stops reading from the client while
//! its write buffer is over `limits.max_write_buffer` or (3.1.1) while
//! `limits.receive_maximum` publishes await their acknowledgement, and stops
//! delivering while the outbound window (`limits.inflight`) is full.

mod connect;
mod inbound;
mod outbound;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tributary_log::{Offset, Record};
use tributary_mqtt::{Disconnect, Packet, PacketId, ProtocolVersion, QoS, ReasonCode};

use tributary_accounts::rate::TokenBucket;
use tributary_accounts::Identity;

use crate::broker::Broker;
use crate::session::{ClientId, Held, Subscription};
use crate::shared::SharedDelivery;
use crate::transport::Transport;
pub(crate) use connect::ExpectConnect;
use connect::Negotiated;

/// Buffer capacity kept by a connection whose buffer just emptied; larger
/// buffers are freed so that idle connections stay small.
const IDLE_BUFFER: usize = 4096;

/// Read sizes of a quiet and of a busy client.
const SMALL_READ: u32 = 2048;
const BIG_READ: u32 = 64 * 1024;

/// Appends one connection may have in flight at once: enough to keep a
/// busy publisher's messages flowing into consecutive group commits.
const APPENDS_IN_FLIGHT: usize = 8;

/// How long a closing connection may take to flush what it still has to say.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a connection that sent DISCONNECT waits for the client to
/// close, reading what it still sends (see `Connection::linger`).
const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// Least time between two writes of a moving cursor to the session
/// directory (on Kafka).
const DIRECTORY_EVERY: Duration = Duration::from_secs(1);

/// How often a service's or admin's connection looks again whether the
/// audit writer has made room.
const AUDIT_RETRY: Duration = Duration::from_millis(20);

/// How long a connection being taken over still reads what its client
/// sent before the new connection's CONNECT (`Connection::last_words`).
const LAST_WORDS: Duration = Duration::from_millis(10);

/// Topic aliases of one connection (5.0 §3.3.2.3.4).
#[derive(Default)]
struct Aliases {
    /// Set by the client on its publishes.
    inbound: HashMap<u16, String>,
    /// Set by the broker on its publishes to the client, at most the
    /// client's Topic Alias Maximum.
    outbound: HashMap<String, u16>,
}

/// Why the connected loop ended; decides the will and the last word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    /// The client sent DISCONNECT (0x04 in 5.0 asks for the will anyway).
    ClientDisconnect { publish_will: bool },
    /// The socket closed or failed without DISCONNECT.
    Lost,
    /// The client broke the protocol; 5.0 clients get DISCONNECT with this
    /// reason code and (unless they asked not to) this reason string.
    Violation(ReasonCode, &'static str),
    /// Another connection took over the session.
    TakenOver,
    /// The device's credentials were revoked.
    Revoked,
    /// The broker is shutting down.
    Shutdown,
    /// The node is draining ([`Broker::drain`]): the client should connect
    /// again, through the load balancer, to another node.
    Moved,
}

impl Close {
    fn publishes_will(self) -> bool {
        match self {
            Close::ClientDisconnect { publish_will } => publish_will,
            Close::Lost | Close::Violation(..) | Close::TakenOver => true,
            Close::Revoked => false,
            Close::Shutdown | Close::Moved => false,
        }
    }

    /// The DISCONNECT a 5.0 client is sent, if any.
    fn reason(self) -> Option<(ReasonCode, &'static str)> {
        match self {
            Close::Violation(r, text) => Some((r, text)),
            Close::TakenOver => Some((
                ReasonCode::SessionTakenOver,
                "another connection took over the session",
            )),
            Close::Revoked => Some((
                ReasonCode::AdministrativeAction,
                "the device's credentials were revoked",
            )),
            Close::Shutdown => Some((
                ReasonCode::ServerShuttingDown,
                "the server is shutting down",
            )),
            Close::Moved => Some((
                ReasonCode::UseAnotherServer,
                "the node is leaving the cluster: connect again",
            )),
            Close::ClientDisconnect { .. } | Close::Lost => None,
        }
    }
}

/// A publish that is being made durable, with what to answer once it is.
#[derive(Debug)]
struct PendingAck {
    qos: QoS,
    packet_id: Option<PacketId>,
    retain: bool,
    /// Set when the publish was refused before reaching the log; the answer
    /// still waits its turn so acknowledgements keep the publishes' order.
    refused: Option<(ReasonCode, &'static str)>,
    /// A copy of a retained publish, for the retained map once it is durable.
    retained: Option<Arc<Record>>,
}

type AppendFuture = crate::durable::DurableFuture;

/// Publishes with the answers they are owed, in arrival order.
type Acks = Vec<PendingAck>;

/// A client's publish rate buckets and whether its slowing was logged.
struct Rates {
    messages: Option<TokenBucket>,
    bytes: Option<TokenBucket>,
    logged: bool,
    /// While set, the client is over its rate and is not read from.
    throttled_until: Option<Instant>,
}

/// On Kafka: this connection's claim of its client id in the session
/// directory (boxed in `Connection`: without Kafka no connection has one).
struct ClusterClaim {
    epoch: i64,
    /// When the session's state was last written to the directory.
    written: Option<Instant>,
    /// The will is in the directory, to settle there at the connection's end.
    will_in_directory: bool,
}

/// Where shared subscription groups hand this connection their messages.
type SharedInbox = (mpsc::Sender<SharedDelivery>, mpsc::Receiver<SharedDelivery>);

/// A connection's publishes on their way into the log.
#[derive(Default)]
struct Ingest {
    /// Publishes waiting to be handed to the log, in arrival order.
    queued: Vec<(Option<Record>, PendingAck)>,
    /// Appends in flight, oldest first, each with the acknowledgements that
    /// wait for it. They were handed to the log in this order, so they become
    /// durable in this order and the client's publishes keep theirs.
    appending: VecDeque<Append>,
    /// True while the oldest append waits for room in the log's queue:
    /// nothing more is handed over until it got in, or order could break.
    blocked: bool,
}

impl Ingest {
    fn is_empty(&self) -> bool {
        self.queued.is_empty() && self.appending.is_empty()
    }

    fn can_submit(&self) -> bool {
        !self.queued.is_empty() && self.appending.len() < APPENDS_IN_FLIGHT && !self.blocked
    }
}

/// One append a connection has in flight.
struct Append {
    future: AppendFuture,
    acks: Acks,
    /// It waits for room in the log's queue (see `Ingest::blocked`).
    blocking: bool,
    /// When it was handed to the log, and how many records it carries: the
    /// append-latency histogram counts each record once.
    submitted: std::time::Instant,
    records: u64,
}

/// Serves one accepted connection to its end: its CONNECT
/// ([`ExpectConnect`]), then the connected loop, then the will and the
/// session's hand-back. Takes a box: the task of every connection holds
/// this future, and a pointer keeps it small (idle connections are most).
/// The box goes to the handshake whole, which frees it when it returns: a
/// box moved out of here (`*expect`) would keep its memory until the
/// connection ends.
pub(crate) async fn serve(expect: Box<ExpectConnect>) {
    let Ok(permit) = expect.broker.connection_permits.clone().try_acquire_owned() else {
        Box::pin(expect.refuse_busy()).await;
        return;
    };
    // Boxed where a step is large and rare or short-lived, so that the task
    // of an idle connection only keeps the small `serve` loop alive.
    let Some((mut connection, mut held)) = Box::pin(expect.handshake()).await else {
        return;
    };
    let close = connection.serve(&mut held).await;
    Box::pin(connection.finish(held, close)).await;
    drop(permit);
}

/// A client connection after CONNACK.
pub(crate) struct Connection {
    broker: Arc<Broker>,
    id: u64,
    peer: SocketAddr,
    /// Plain TCP, or TLS / WebSocket layers (see `transport`).
    transport: Transport,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// Cancelled at broker shutdown (it is a child of the broker's token)
    /// and when another connection takes the session over (the registry
    /// holds a clone): one token, so an idle connection pays for one.
    stop: CancellationToken,
    version: ProtocolVersion,
    client_id: ClientId,
    /// Seconds; 0 turns keep-alive off.
    keep_alive: u16,
    /// Boxed: most clients set none, and an idle connection should be small.
    will: Option<Box<tributary_mqtt::Will>>,
    /// Message and byte rate buckets (`limits.max_messages_per_sec`,
    /// `max_bytes_per_sec`), made with the first publish.
    rates: Option<Box<Rates>>,
    /// Who authenticated; `None` for an anonymous client (loopback only).
    identity: Option<Box<Identity>>,
    /// Publishes on their way into the log; allocated while there are any,
    /// so an idle connection does not carry it.
    ingest: Option<Box<Ingest>>,
    /// QoS 1/2 publishes received and not yet answered with PUBACK/PUBREC.
    unacked_inbound: u32,
    /// Smaller of `limits.inflight` and the client's 5.0 Receive Maximum.
    outbound_window: u32,
    /// The client's 5.0 Maximum Packet Size (outgoing packets above it are not sent).
    client_max_packet: u32,
    /// Whether the client asked for reason strings and user properties (5.0).
    problem_information: bool,
    /// The cursor last committed to the log, to commit only on change.
    committed: Option<Offset>,
    cluster_claim: Option<Box<ClusterClaim>>,
    /// Topic aliases in both directions (5.0), allocated on first use.
    aliases: Option<Box<Aliases>>,
    client_topic_alias_maximum: u16,
    /// When the client must have sent something by (1.5 × keep-alive).
    keep_alive_deadline: Option<Instant>,
    /// Room made in `rbuf` before each read: `SMALL_READ` or `BIG_READ`.
    read_chunk: u32,
    /// PUBLISH packets written since they were last added to the broker's
    /// count: added once per turn of the loop, not per message (`stats`).
    unreported_sent: u32,
    /// The session's place in the node's subscription index, while it has
    /// subscriptions of its own (`tributary_router`); boxed, as an idle connection
    /// without subscriptions should not pay for it.
    routed: Option<Box<tributary_router::Registration>>,
    /// Messages of shared subscriptions handed to this connection by their
    /// groups (bounded: a group moves on to another member when it is full).
    /// Created with the first shared subscription: an idle connection
    /// should cost as little memory as possible.
    shared: Option<Box<SharedInbox>>,
    /// Seals this identity's payloads under its owner's data key before they
    /// are appended (docs/erasure.md); `None` without an owner or with
    /// sealing off.
    sealer: Option<Box<tributary_rights::seal::Sealer>>,
}

impl Connection {
    /// The connected connection, on the terms its CONNECT negotiated.
    fn new(expect: ExpectConnect, terms: Negotiated) -> Self {
        Connection {
            broker: expect.broker,
            id: expect.id,
            peer: expect.peer,
            transport: expect.transport,
            rbuf: expect.rbuf,
            wbuf: BytesMut::new(),
            stop: expect.stop,
            version: terms.version,
            client_id: terms.client_id,
            keep_alive: terms.keep_alive,
            will: terms.will,
            ingest: None,
            identity: terms.identity,
            rates: None,
            unacked_inbound: 0,
            outbound_window: terms.outbound_window,
            client_max_packet: terms.client_max_packet,
            problem_information: terms.problem_information,
            committed: None,
            cluster_claim: None,
            aliases: None,
            sealer: terms.sealer,
            client_topic_alias_maximum: terms.client_topic_alias_maximum,
            shared: None,
            routed: None,
            read_chunk: SMALL_READ,
            unreported_sent: 0,
            keep_alive_deadline: None,
        }
    }

    /// The connected loop. Returns why it ended.
    ///
    /// An idle connection (nothing to write, store or deliver) waits in a
    /// small `select!` for its socket, its keep-alive and its token; anything
    /// else runs in the full loop, boxed, so the task of an idle connection
    /// stays small (most connections are idle devices).
    async fn serve(&mut self, held: &mut Held) -> Close {
        self.keep_alive_deadline = self.next_keep_alive_deadline();
        loop {
            if self.is_idle(held) {
                if self.wbuf.capacity() > 0 {
                    self.wbuf = BytesMut::new();
                }
                // A last read that filled its room (a busy client gone
                // quiet) left the read buffer allocated: give it back too.
                if self.rbuf.is_empty() && self.rbuf.capacity() > 0 {
                    self.rbuf = BytesMut::new();
                }
                self.ingest = None;
                tokio::select! {
                    () = self.stop.cancelled() => return self.stop_reason(),
                    () = keep_alive_sleep(self.keep_alive_deadline), if self.keep_alive_deadline.is_some() => {
                        return self.keep_alive_expired();
                    }
                    ready = self.transport.readable() => {
                        if ready.is_err() {
                            return Close::Lost;
                        }
                    }
                    () = woken(&self.routed) => {
                        // Records to deliver, or the router's nudge to
                        // move a quiet persistent session's cursor on.
                        if !self.delivery_pending(held) {
                            if held.state.persistent {
                                self.catch_up(held);
                                self.sync_cursor(&held.state);
                            }
                            continue;
                        }
                    }
                }
            }
            if let Some(close) = Box::pin(self.serve_busy(held)).await {
                return close;
            }
        }
    }

    /// True when the connection waits only for its client and the router:
    /// nothing to write, no publish being stored, no log records or shared
    /// deliveries to hand out.
    fn is_idle(&self, held: &Held) -> bool {
        self.transport.is_plain()
            && self.wbuf.is_empty()
            && self.ingest.as_ref().is_none_or(|i| i.is_empty())
            && self.throttled_until().is_none()
            && self.shared.is_none()
            && !self.delivery_pending(held)
    }

    /// True when the session has records to deliver: in the log before
    /// where its routing started, or in its inbox.
    fn delivery_pending(&self, held: &Held) -> bool {
        self.routed
            .as_ref()
            .is_some_and(|r| r.has_pending(held.state.read_pos))
    }

    /// Puts a new subscription of the session's own into the router's
    /// index (registering the session on its first); returns the offset
    /// from which the router routes its records.
    fn route_filter(&mut self, persistent: bool, filter: &str) -> Offset {
        match &self.routed {
            Some(routed) => routed.subscribe(filter),
            None => {
                let routed = self.broker.router.register(persistent, [filter]);
                let from = routed.scan_until;
                self.routed = Some(Box::new(routed));
                from
            }
        }
    }

    /// Registers a resumed session's own subscriptions with the router;
    /// it reads the log itself from its cursor up to where routing starts.
    fn route_session(&mut self, held: &Held) {
        let own = held.state.subscriptions.values().filter(|s| !s.is_shared());
        let filters: Vec<&str> = own.map(|s| s.filter.as_str()).collect();
        if !filters.is_empty() {
            let routed = self.broker.router.register(held.state.persistent, filters);
            self.routed = Some(Box::new(routed));
        }
    }

    /// Moves the cursor of a session whose inbox is empty up to the
    /// router's position: nothing before it is for the session.
    fn catch_up(&self, held: &mut Held) {
        if let Some(to) = self
            .routed
            .as_ref()
            .and_then(|r| r.caught_up(held.state.read_pos))
        {
            held.state.read_pos = held.state.read_pos.max(to);
        }
    }

    /// How a connection taken over ends: it first reads what its client
    /// already sent. A client that sent DISCONNECT (say with Session Expiry
    /// 0, which ends the session) and connected again at once can have its
    /// new CONNECT seen first, and the session it ended must not be resumed
    /// (nor its will sent). Called from `finish`, which is boxed, so that
    /// the idle connection's future does not grow.
    async fn last_words(&mut self, held: &mut Held) -> Close {
        let until = Instant::now() + LAST_WORDS;
        loop {
            // Its words are read whatever its rate: the connection ends anyway.
            self.end_throttle();
            match Box::pin(self.handle_input(held)).await {
                Err(close @ Close::ClientDisconnect { .. }) => return close,
                Err(_) => return Close::TakenOver,
                // Stopped by its rate with more in the buffer.
                Ok(()) if self.throttled_until().is_some() && Instant::now() < until => continue,
                Ok(()) => {}
            }
            let read = self
                .transport
                .reader()
                .read_some(&mut self.rbuf, SMALL_READ as usize);
            match tokio::time::timeout_at(until, read).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return Close::TakenOver,
            }
        }
    }

    fn stop_reason(&self) -> Close {
        if self.broker.shutdown.is_cancelled() {
            return Close::Shutdown;
        }
        if self
            .broker
            .draining
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Close::Moved;
        }
        match self.identity.as_deref() {
            Some(identity) if !self.broker.accounts.is_active(identity) => {
                tracing::info!(client_id = %self.client_id, "disconnected: account revoked");
                Close::Revoked
            }
            _ => Close::TakenOver,
        }
    }

    fn keep_alive_expired(&self) -> Close {
        tracing::info!(client_id = %self.client_id, peer = %self.peer, "keep-alive timeout");
        Close::Violation(
            ReasonCode::KeepAliveTimeout,
            "no packet within 1.5 times the keep-alive",
        )
    }

    /// The full loop; returns `None` when the connection became idle.
    async fn serve_busy(&mut self, held: &mut Held) -> Option<Close> {
        let limits = self.broker.config.limits.clone();
        let mut first = true;
        loop {
            if let Err(close) = self.flush_progress(held) {
                return Some(close);
            }
            if !first && self.is_idle(held) {
                return None;
            }
            first = false;
            let throttled_until = self.throttled_until();
            let can_read = throttled_until.is_none()
                && self.wbuf.len() < limits.max_write_buffer
                && (self.version == ProtocolVersion::V5
                    || self.unacked_inbound < u32::from(limits.receive_maximum));
            // Deliveries to services and admins wait while the audit
            // writer is behind (docs/consent.md, "The audit log"): they stay
            // in the log rather than go out unrecorded.
            let audit_full =
                crate::reader::is_audited(self.identity.as_deref()) && self.broker.audit.is_full();
            let has_room = held.state.outbound.len() < self.outbound_window as usize
                && self.wbuf.len() < limits.max_write_buffer
                && !audit_full;
            if !held.state.reads_log() {
                // Nothing to deliver from the log: keep the cursor at the end
                // so this session never holds log retention back.
                held.state.read_pos = self.broker.log.end_offset();
            }
            let pending = self.delivery_pending(held);
            let can_deliver = has_room && pending;
            let can_take_shared = has_room;
            let must_write = !self.wbuf.is_empty() || self.transport.has_unflushed();
            let (reader, writer) = self.transport.halves();
            tokio::select! {
                () = self.stop.cancelled() => return Some(self.stop_reason()),
                () = sleep_until_opt(self.keep_alive_deadline) => return Some(self.keep_alive_expired()),
                () = sleep_until_opt(throttled_until), if throttled_until.is_some() => {
                    self.end_throttle();
                    if let Err(close) = Box::pin(self.handle_input(held)).await {
                        return Some(close);
                    }
                }
                // With an empty buffer, this flushes what a layered stream holds.
                written = writer.write_some(&self.wbuf), if must_write => match written {
                    Ok(n) => {
                        self.wbuf.advance(n);
                        if self.wbuf.is_empty() && self.wbuf.capacity() > IDLE_BUFFER {
                            self.wbuf = BytesMut::new();
                        }
                    }
                    Err(_) => return Some(Close::Lost),
                },
                read = reader.read_some(&mut self.rbuf, self.read_chunk as usize), if can_read => match read {
                    Ok(0) | Err(_) => return Some(Close::Lost),
                    Ok(n) => {
                        // A read that fills most of the room means a busy
                        // client: read bigger chunks (fewer system calls);
                        // a quiet one goes back to small reads.
                        self.read_chunk = if n >= self.read_chunk as usize / 2 { BIG_READ } else { SMALL_READ };
                        self.keep_alive_deadline = self.next_keep_alive_deadline();
                        if let Err(close) = Box::pin(self.handle_input(held)).await {
                            return Some(close);
                        }
                        if self.rbuf.is_empty() && self.read_chunk == SMALL_READ {
                            // Give the read buffer back while the client is quiet.
                            self.rbuf = BytesMut::new();
                        }
                    }
                },
                done = poll_append(&mut self.ingest, &self.broker.stats) => {
                    if let Err(close) = self.appended(held, done) {
                        return Some(close);
                    }
                }
                Some(delivery) = recv_shared(&mut self.shared), if can_take_shared => {
                    self.send_shared(held, delivery);
                }
                () = std::future::ready(()), if can_deliver => {
                    if let Err(close) = Box::pin(self.deliver(held)).await {
                        return Some(close);
                    }
                }
                () = routed_woken(&self.routed), if !pending => {}
                () = tokio::time::sleep(AUDIT_RETRY), if audit_full => {}
            }
        }
    }

    fn next_keep_alive_deadline(&self) -> Option<Instant> {
        // 1.5 × keep-alive (3.1.1 §3.1.2.10, 5.0 §3.1.2.10); 0 means none.
        (self.keep_alive > 0)
            .then(|| Instant::now() + Duration::from_millis(u64::from(self.keep_alive) * 1500))
    }

    /// Decodes and handles every complete packet in the read buffer.
    async fn handle_input(&mut self, held: &mut Held) -> Result<(), Close> {
        let max = self.broker.config.limits.max_packet_size;
        loop {
            match tributary_mqtt::decode(&self.rbuf, self.version, max) {
                Ok((packet, used)) => {
                    self.rbuf.advance(used);
                    self.handle_packet(held, packet).await?;
                    if self.throttled_until().is_some() {
                        // Over its rate: the rest of what it sent waits in the
                        // read buffer until the throttle ends.
                        return Ok(());
                    }
                }
                Err(tributary_mqtt::Error::Incomplete { .. }) => return Ok(()),
                Err(e) => {
                    tracing::info!(client_id = %self.client_id, peer = %self.peer, error = %e, "protocol violation");
                    return Err(Close::Violation(ReasonCode::from(&e), violation_text(&e)));
                }
            }
        }
    }

    /// Starts the next append when none is in flight, and commits the
    /// session cursor when it moved.
    fn flush_progress(&mut self, held: &mut Held) -> Result<(), Close> {
        self.report_sent();
        if let Some(ingest) = self.ingest.as_mut().filter(|i| i.can_submit()) {
            let batch = std::mem::take(&mut ingest.queued);
            let mut records = Vec::with_capacity(batch.len());
            let mut acks = Vec::with_capacity(batch.len());
            for (record, mut ack) in batch {
                if let Some(record) = record {
                    if ack.retain {
                        ack.retained = Some(Arc::new(record.clone()));
                    }
                    records.push(record);
                }
                acks.push(ack);
            }
            let count = records.len() as u64;
            if count > 0 {
                // Once per batch, not per publish: see `stats`.
                self.broker.stats.add_received(count);
            }
            let (future, blocking) = self.broker.durability.submit(records);
            ingest.blocked = blocking;
            ingest.appending.push_back(Append {
                future,
                acks,
                blocking,
                submitted: std::time::Instant::now(),
                records: count,
            });
        }
        if held.state.persistent {
            self.catch_up(held);
            self.sync_cursor(&held.state);
        }
        Ok(())
    }

    /// Adds the PUBLISH packets written since last time to the broker's count.
    fn report_sent(&mut self) {
        if self.unreported_sent > 0 {
            self.broker
                .stats
                .add_sent(u64::from(std::mem::take(&mut self.unreported_sent)));
        }
    }

    /// Commits a persistent session's cursor when it moved. A session that
    /// reads nothing from the log (no subscription of its own, nothing in
    /// flight from it) keeps no cursor at all, so that a device that only
    /// publishes never holds log retention back.
    fn sync_cursor(&mut self, state: &crate::session::SessionState) {
        let consumer = self.client_id.consumer_name();
        if !state.reads_log() {
            if self.committed.take().is_some() {
                if let Err(e) = self.broker.log.remove_consumer(&consumer) {
                    tracing::error!(client_id = %self.client_id, error = %e, "remove session cursor");
                }
            }
            return;
        }
        let cursor = state.cursor();
        if self.committed != Some(cursor) {
            if let Err(e) = self.broker.log.commit_offset(&consumer, cursor) {
                tracing::error!(client_id = %self.client_id, error = %e, "commit session cursor");
            }
            self.committed = Some(cursor);
            self.share_cursor(state);
        }
    }

    /// On Kafka: tells the session directory where the session stands, at
    /// most once per `DIRECTORY_EVERY`, so that a node resuming it after
    /// this one was killed sends again at most about that much.
    fn share_cursor(&mut self, state: &crate::session::SessionState) {
        let (Some(cluster), Some(claim)) = (&self.broker.cluster, self.cluster_claim.as_mut())
        else {
            return;
        };
        let now = Instant::now();
        if claim
            .written
            .is_some_and(|at| now.duration_since(at) < DIRECTORY_EVERY)
        {
            return;
        }
        claim.written = Some(now);
        let epoch = claim.epoch;
        let written =
            cluster
                .directory
                .put_state(&self.client_id, epoch, cluster.describe(state, true));
        let client_id = self.client_id.clone();
        tokio::spawn(async move {
            if let Err(e) = written.await {
                tracing::warn!(client_id = %client_id, error = %e, "write the session's cursor to the directory");
            }
        });
    }

    /// Counts a publish against the client's rate limits; over them, the
    /// client is not read from until it is within them again (slowed, not
    /// refused: nothing it sent is lost). Anonymous clients, which exist
    /// only on loopback for trying out and load tests, are not limited.
    fn count_publish(&mut self, payload_len: usize) {
        let limits = &self.broker.config.limits;
        if self.identity.is_none()
            || (limits.max_messages_per_sec == 0 && limits.max_bytes_per_sec == 0)
        {
            return;
        }
        let now = std::time::Instant::now();
        let rates = self.rates.get_or_insert_with(|| {
            Box::new(Rates {
                messages: (limits.max_messages_per_sec > 0)
                    .then(|| TokenBucket::per_second(f64::from(limits.max_messages_per_sec), now)),
                bytes: (limits.max_bytes_per_sec > 0)
                    .then(|| TokenBucket::per_second(limits.max_bytes_per_sec as f64, now)),
                logged: false,
                throttled_until: None,
            })
        });
        let wait_messages = rates.messages.as_mut().and_then(|b| b.take(1.0, now));
        let wait_bytes = rates
            .bytes
            .as_mut()
            .and_then(|b| b.take(payload_len as f64, now));
        let Some(wait) = wait_messages.max(wait_bytes) else {
            return;
        };
        if !rates.logged {
            rates.logged = true;
            tracing::info!(client_id = %self.client_id, peer = %self.peer, "client slowed: over limits.max_messages_per_sec or max_bytes_per_sec");
        }
        let until = Instant::now() + wait;
        rates.throttled_until = Some(rates.throttled_until.map_or(until, |t| t.max(until)));
    }

    /// While set, the client is over its rate and is not read from.
    fn throttled_until(&self) -> Option<Instant> {
        self.rates.as_ref().and_then(|r| r.throttled_until)
    }

    fn end_throttle(&mut self) {
        if let Some(rates) = self.rates.as_mut() {
            rates.throttled_until = None;
        }
    }

    /// On Kafka: the epoch of this connection's claim of its client id.
    fn cluster_epoch(&self) -> Option<i64> {
        self.cluster_claim.as_ref().map(|c| c.epoch)
    }

    /// The log record of a publish, its payload sealed when the connection
    /// has a sealer; `None` (logged) when sealing failed, so that nothing is
    /// appended in the clear that should not be.
    fn new_record(
        &mut self,
        topic: String,
        qos: QoS,
        retain: bool,
        properties: &tributary_mqtt::Properties,
        payload: bytes::Bytes,
    ) -> Option<Record> {
        let record = self.plain_record(topic, qos, retain, properties, payload);
        self.sealed(record, true)
    }

    /// `record` with its payload sealed when the connection has a sealer;
    /// `None` (logged) when sealing failed. With `keep`, the plaintext is
    /// kept for this node's subscribers (plaintexts.rs): for a record about
    /// to be appended.
    fn sealed(&mut self, mut record: Record, keep: bool) -> Option<Record> {
        // An empty payload holds nothing personal, and sealed it would no
        // longer clear a retained message (MQTT's empty retained PUBLISH).
        if record.payload.is_empty() {
            return Some(record);
        }
        if let Some(sealer) = self.sealer.as_mut() {
            match sealer.seal(&record.owner, &record.payload) {
                Ok(sealed) => {
                    let plaintext = std::mem::replace(&mut record.payload, sealed.into());
                    // Kept for this node's subscribers while the key is the
                    // owner's live one (plaintexts.rs).
                    let broker = &self.broker;
                    if let (true, Some(recent), Some(keyring)) =
                        (keep, &broker.recent_plaintexts, broker.keyring.get())
                    {
                        if let Some(live_as_of) = keyring.sealer_still_live(&record.owner, sealer) {
                            recent.keep(&record, &plaintext, live_as_of);
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(client_id = %self.client_id, error = %e, "could not seal a payload; not appended");
                    return None;
                }
            }
        }
        Some(record)
    }

    /// A log record of a message this client published (or its will),
    /// stamped with the time, the client and a new message id.
    fn plain_record(
        &self,
        topic: String,
        qos: QoS,
        retain: bool,
        properties: &tributary_mqtt::Properties,
        payload: bytes::Bytes,
    ) -> Record {
        Record {
            receive_time_ms: crate::persist::unix_ms(),
            topic,
            qos: qos as u8,
            retain,
            properties: tributary_mqtt::stored::stored_properties(properties),
            payload,
            client_id: self.client_id.as_str().to_owned(),
            message_id: self.broker.next_message_id(),
            // Only a device's own connection says whose data a record is; an
            // owner's command carries the owner, a service's or admin's command
            // neither owner nor device (its `client_id` names the sender).
            owner: match self.identity.as_deref() {
                Some(Identity::Device { owner, .. } | Identity::Owner { owner }) => owner.clone(),
                Some(Identity::Service { .. } | Identity::Admin { .. }) | None => String::new(),
            },
            device: match self.identity.as_deref() {
                Some(Identity::Device { device, .. }) => device.clone(),
                _ => String::new(),
            },
        }
    }

    /// Appends `packet` to the write buffer. Packets above the client's
    /// Maximum Packet Size are dropped (5.0 §3.1.2.11.4) and `false` returned.
    fn send(&mut self, packet: &Packet) -> bool {
        let start = self.wbuf.len();
        let encoded = tributary_mqtt::encode(packet, self.version, &mut self.wbuf);
        self.keep_encoded(start, encoded)
    }

    /// Keeps what an encoder appended to the write buffer from `start` if it
    /// succeeded and fits the client's Maximum Packet Size (5.0
    /// §3.1.2.11.4: a packet the client cannot take is dropped for it);
    /// otherwise removes it and returns false.
    fn keep_encoded(&mut self, start: usize, encoded: tributary_mqtt::Result<()>) -> bool {
        if let Err(e) = encoded {
            tracing::error!(client_id = %self.client_id, error = %e, "encode an outgoing packet");
            self.wbuf.truncate(start);
            return false;
        }
        if self.wbuf.len() - start > self.client_max_packet as usize {
            self.wbuf.truncate(start);
            return false;
        }
        true
    }

    /// The sender shared subscription groups use to reach this connection.
    fn shared_sender(&mut self) -> mpsc::Sender<SharedDelivery> {
        self.shared
            .get_or_insert_with(|| Box::new(mpsc::channel(crate::shared::MEMBER_QUEUE)))
            .0
            .clone()
    }

    /// Writes out the write buffer, bounded in time.
    async fn flush(&mut self) {
        let write = self.transport.writer().write_all(&self.wbuf);
        let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, write).await;
        self.wbuf.clear();
    }

    /// After the last word: reads (and drops) what the client still sends
    /// until it closes, for at most `CLOSE_LINGER`. Closing a socket with
    /// unread bytes makes the kernel reset the connection, and a reset can
    /// make the client lose the DISCONNECT and its reason before reading it
    /// (a client still publishing over its Receive Maximum, say).
    async fn linger(&mut self) {
        let drain = async {
            let mut sink = BytesMut::new();
            loop {
                sink.clear();
                match self
                    .transport
                    .reader()
                    .read_some(&mut sink, SMALL_READ as usize)
                    .await
                {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_LINGER, drain).await;
    }

    /// Ends the connection: finishes appends in flight, sends the last word,
    /// publishes the will, and hands the session back to the registry.
    async fn finish(mut self: Box<Self>, mut held: Held, mut close: Close) {
        if close == Close::TakenOver {
            close = self.last_words(&mut held).await;
        }
        // Publishes already received are still made durable and, where the
        // socket allows, acknowledged: the client may not resend them.
        while self.ingest.as_ref().is_some_and(|i| !i.is_empty()) {
            let _ = self.flush_progress(&mut held);
            let done = poll_append(&mut self.ingest, &self.broker.stats).await;
            let _ = self.appended(&mut held, done);
        }
        let mut told = false;
        if let (ProtocolVersion::V5, Some((reason, text))) = (self.version, close.reason()) {
            let mut disconnect = Disconnect::new(reason);
            if self.problem_information {
                disconnect.properties.reason_string = Some(text.to_string());
            }
            told = self.send(&Packet::Disconnect(disconnect));
        }
        self.flush().await;
        self.report_sent();
        self.transport.shutdown().await;
        self.routed = None;
        let state = &mut held.state;
        for key in Subscription::shared_keys(state.subscriptions.values()) {
            self.broker.shared.leave(&key, self.id);
            if !state.persistent {
                self.broker.shared.release(&key);
            }
        }
        self.publish_will(state, close.publishes_will()).await;
        state.disconnected_at = Some(Instant::now());
        if state.persistent {
            self.sync_cursor(state);
            self.save_session(state, false).await;
        }
        self.broker
            .sessions
            .release(&self.client_id, self.id, state.persistent);
        if let (Some(cluster), Some(epoch)) = (&self.broker.cluster, self.cluster_epoch()) {
            cluster.directory.let_go(&self.client_id, epoch);
            if !state.persistent {
                let (directory, client_id) = (cluster.directory.clone(), self.client_id.clone());
                tokio::spawn(async move { directory.forget(&client_id, epoch).await });
            }
        }
        if told {
            // Last, so that nothing waits for it: a connection taking the
            // session over, say.
            self.linger().await;
        }
        tracing::debug!(client_id = %self.client_id, peer = %self.peer, ?close, "connection closed");
    }

    /// Seconds a will waits after the connection's end: the 5.0 Will Delay
    /// Interval, capped by the session expiry (5.0 §3.1.3.2.2); none for a
    /// session that ends with the connection.
    fn will_delay(will: &tributary_mqtt::Will, state: &crate::session::SessionState) -> u32 {
        let delay = will.properties.will_delay_interval.unwrap_or(0);
        delay.min(if state.persistent {
            state.expiry_secs
        } else {
            0
        })
    }

    /// On Kafka: writes the connection's will to the session directory
    /// (sealed as it would be appended), so that another node publishes it
    /// should this one die before the connection ends (orphans.rs).
    pub(super) async fn will_to_directory(&mut self, state: &crate::session::SessionState) {
        let (Some(cluster), Some(epoch)) = (self.broker.cluster.clone(), self.cluster_epoch())
        else {
            return;
        };
        let Some(will) = self.will.as_deref() else {
            return;
        };
        let delay = Self::will_delay(will, state);
        let record = self.plain_record(
            will.topic.clone(),
            will.qos,
            will.retain,
            &will.properties,
            will.payload.clone(),
        );
        let Some(record) = self.sealed(record, false) else {
            return;
        };
        let will = crate::cluster::directory::ClusterWill::of(&record, delay);
        let written = cluster.directory.put_will(&self.client_id, epoch, will);
        let failed = "the will was not written; should this node die, it is not published";
        if will_write_done(&self.client_id, written, failed).await {
            if let Some(claim) = self.cluster_claim.as_mut() {
                claim.will_in_directory = true;
            }
        }
    }

    /// Publishes the will message, if the client set one: at once, or after
    /// its 5.0 Will Delay Interval (capped by the session expiry, 5.0
    /// §3.1.3.2.2) unless a connection for the client id arrives first.
    /// Settles it in the session directory when it was written there.
    async fn publish_will(&mut self, state: &mut crate::session::SessionState, publish: bool) {
        let settle = self.settle_will();
        let Some(will) = self.will.take().filter(|_| publish) else {
            settle.await;
            return;
        };
        let delay = Self::will_delay(&will, state);
        if delay > 0 && self.taken_over_elsewhere() {
            // A connection for the client id is open on another node: the
            // delayed will is not sent (5.0 §3.1.3.2.2).
            settle.await;
            return;
        }
        let Some(record) = self.new_record(
            will.topic,
            will.qos,
            will.retain,
            &will.properties,
            will.payload,
        ) else {
            settle.await;
            return;
        };
        if delay == 0 {
            self.broker.append_will(record).await;
            settle.await;
            return;
        }
        let cancel = CancellationToken::new();
        state.pending_will = Some(cancel.clone());
        let broker = self.broker.clone();
        let (client_id, epoch) = (self.client_id.clone(), self.cluster_epoch());
        let due = Instant::now() + Duration::from_secs(u64::from(delay));
        let noted = self.note_will_waiting();
        tokio::spawn(async move {
            let waited = async {
                tokio::select! {
                    () = cancel.cancelled() => {}
                    () = tokio::time::sleep_until(due) => {
                        // A connection on another node within the delay may
                        // have come too late to cancel this task itself.
                        if !claimed_elsewhere(&broker, &client_id, epoch) {
                            broker.append_will(record).await;
                        }
                    }
                }
            };
            // The note is handed to Kafka when first polled, so before the
            // settlement, which follows the wait.
            tokio::join!(noted, waited);
            settle.await;
        });
    }

    /// The session directory, client id and epoch under which this
    /// connection's will is in the directory; `None` when it is not there.
    fn will_in_directory(&self) -> Option<(Arc<crate::cluster::SessionDirectory>, ClientId, i64)> {
        let cluster = self.broker.cluster.as_ref()?;
        let epoch = self.cluster_epoch()?;
        self.cluster_claim
            .as_ref()
            .filter(|claim| claim.will_in_directory)?;
        Some((cluster.directory.clone(), self.client_id.clone(), epoch))
    }

    /// For a will now waiting out its delay here: notes in the session
    /// directory when the connection ended, so that a node taking the will
    /// up should this one die counts the delay from then (orphans.rs). A
    /// no-op when the will is not in the directory.
    fn note_will_waiting(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let noting = self.will_in_directory();
        let ended_ms = crate::persist::unix_ms();
        async move {
            let Some((directory, client_id, epoch)) = noting else {
                return;
            };
            let noted = directory.will_waiting(&client_id, epoch, ended_ms);
            let failed = "when the connection of a delayed will ended was not noted; should this node die, the delay counts from its last beat";
            will_write_done(&client_id, noted, failed).await;
        }
    }

    /// What settles this connection's will in the session directory (a
    /// no-op when it was not written there): to await once the will was
    /// published, or once it is clear it will not be. Nothing is written
    /// before it is awaited: a settlement written before the will's append
    /// would lose the will if the node died between the two.
    fn settle_will(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let settling = self.will_in_directory();
        if let Some((directory, client_id, epoch)) = &settling {
            directory.will_pending(client_id, *epoch);
        }
        async move {
            if let Some((directory, client_id, epoch)) = settling {
                let settled = directory.will_settled(&client_id, epoch);
                will_write_done(&client_id, settled, "the will was not settled").await;
            }
        }
    }

    /// On Kafka: true when another node claimed this connection's client id
    /// after it.
    fn taken_over_elsewhere(&self) -> bool {
        claimed_elsewhere(&self.broker, &self.client_id, self.cluster_epoch())
    }

    /// Writes the session's subscriptions and expiry to the session file.
    /// (Takes `&mut self` only so the connection future needs no `Sync`.)
    async fn save_session(&mut self, state: &crate::session::SessionState, connected: bool) {
        let stored = crate::persist::StoredSession::of(state, connected);
        let file = self.broker.session_file.clone();
        let id = self.client_id.clone();
        match tokio::task::spawn_blocking(move || file.update(&id, Some(stored))).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(client_id = %self.client_id, error = %e, "write sessions.json")
            }
            Err(e) => {
                tracing::error!(client_id = %self.client_id, error = %e, "write sessions.json")
            }
        }
        if let (Some(cluster), Some(claim)) = (&self.broker.cluster, self.cluster_claim.as_mut()) {
            claim.written = Some(Instant::now());
            let epoch = claim.epoch;
            let written = cluster.directory.put_state(
                &self.client_id,
                epoch,
                cluster.describe(state, connected),
            );
            if let Err(e) = written.await {
                tracing::error!(client_id = %self.client_id, error = %e, "write the session to the directory");
            }
        }
    }
}

/// Longest a connection waits for Kafka to take its will, or the will's
/// settlement, in the session directory (Kafka away must not hold a
/// CONNECT or a connection's end for the producer's whole timeout).
const WILL_WRITE_WAIT: Duration = Duration::from_secs(3);

/// Waits at most [`WILL_WRITE_WAIT`] for a write of `client_id`'s will to
/// the session directory; true once Kafka took it. When it did not, the log
/// says so with `failed` (what was not written, and what follows from it).
async fn will_write_done(
    client_id: &ClientId,
    write: impl std::future::Future<Output = tributary_kafka::Result<()>>,
    failed: &str,
) -> bool {
    match tokio::time::timeout(WILL_WRITE_WAIT, write).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(client_id = %client_id, error = %e, "session directory: {failed}");
            false
        }
        Err(_) => {
            tracing::warn!(client_id = %client_id, "session directory: {failed} (Kafka did not answer within {WILL_WRITE_WAIT:?})");
            false
        }
    }
}

/// On Kafka: true when another node claimed `client_id` after the claim
/// `epoch` of this node.
fn claimed_elsewhere(broker: &Broker, client_id: &ClientId, epoch: Option<i64>) -> bool {
    match (&broker.cluster, epoch) {
        (Some(cluster), Some(epoch)) => cluster.directory.claimed_after(client_id, epoch),
        _ => false,
    }
}

/// The idle wait's wake-up by the router, for a session with subscriptions
/// of its own; pending forever without any. The waiter is boxed (64 B), made
/// only for a session with subscriptions: every idle connection's task has
/// room for this future, and most connections subscribe to nothing.
fn woken(
    routed: &Option<Box<tributary_router::Registration>>,
) -> impl std::future::Future<Output = ()> + '_ {
    let waiter = routed.as_deref().map(|routed| Box::pin(routed.woken()));
    async move {
        match waiter {
            Some(waiter) => waiter.await,
            None => std::future::pending().await,
        }
    }
}

/// The busy loop's wake-up by the router; pending forever without
/// subscriptions. Not boxed: the busy loop's future is boxed already, and
/// it makes this future on every turn (`woken` would allocate each time).
async fn routed_woken(routed: &Option<Box<tributary_router::Registration>>) {
    match routed.as_deref() {
        Some(routed) => routed.woken().await,
        None => std::future::pending().await,
    }
}

/// The next shared-subscription delivery; pending forever without any.
async fn recv_shared(shared: &mut Option<Box<SharedInbox>>) -> Option<SharedDelivery> {
    match shared {
        Some(inbox) => inbox.1.recv().await,
        None => std::future::pending().await,
    }
}

/// Resolves with the result of the oldest append in flight, its latency
/// counted in `stats` when it succeeded; pending forever when none is.
/// Cancel-safe: the append stays queued until it resolves.
async fn poll_append(
    ingest: &mut Option<Box<Ingest>>,
    stats: &crate::stats::BrokerStats,
) -> (
    Result<crate::durable::Durable, crate::durable::NotDurable>,
    Acks,
) {
    match ingest.as_mut().and_then(|i| i.appending.front_mut()) {
        Some(append) => {
            let result = (&mut append.future).await;
            if result.is_ok() && append.records > 0 {
                stats.observe_append(append.submitted.elapsed(), append.records);
            }
            let ingest = ingest.as_mut().expect("append in flight");
            let append = ingest.appending.pop_front().expect("append in flight");
            if append.blocking {
                ingest.blocked = false;
            }
            (result, append.acks)
        }
        None => std::future::pending().await,
    }
}

/// The reason string for a decoding error (the spec's words where it has them).
fn violation_text(error: &tributary_mqtt::Error) -> &'static str {
    use tributary_mqtt::Error;
    match error {
        Error::Malformed(what) | Error::Protocol(what) | Error::Encode(what) => what,
        Error::PacketTooLarge { .. } => "packet exceeds the maximum packet size",
        Error::TopicNameInvalid => "topic name contains wildcards or is empty",
        Error::TopicAliasInvalid => "topic alias 0",
        Error::UnsupportedProtocolVersion(_) => "unsupported protocol version",
        Error::Incomplete { .. } => "incomplete packet",
    }
}

/// The idle wait's keep-alive timer: a bare `Sleep` (112 B), which in the
/// idle task is smaller than `sleep_until_opt`'s future around one. Without
/// a deadline its `select!` branch is disabled, so it is never polled (nor
/// put on the timer wheel).
fn keep_alive_sleep(deadline: Option<Instant>) -> tokio::time::Sleep {
    tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now))
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The connection task's future is what an idle connection costs; keep
    /// it small (the memory bar is 2 KiB per idle connection in all).
    #[test]
    fn connection_future_stays_small() {
        fn size_of_future<F: std::future::Future>(_: &F) -> usize {
            std::mem::size_of::<F>()
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let log =
                tributary_log::Log::open(tributary_log::LogConfig::new(dir.path().join("log")))
                    .expect("log");
            let broker = Broker::open(crate::BrokerConfig::default(), log, dir.path())
                .await
                .expect("broker");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            let client = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let (server, peer) = listener.accept().await.expect("accept");
            let future = serve(Box::new(ExpectConnect::new(
                broker,
                1,
                Transport::Tcp(server),
                peer,
                CancellationToken::new(),
            )));
            let size = size_of_future(&future);
            let connection = std::mem::size_of::<Connection>();
            eprintln!("connection future: {size} bytes, Connection: {connection} bytes");
            // With tokio's task header and trailer (about 100 B, the task
            // 128-byte aligned) a future of up to 384 B keeps the task in
            // 512 B; the boxed `Connection` fits jemalloc's 320 B class.
            assert!(size <= 384, "connection future is {size} bytes");
            assert!(connection <= 320, "Connection is {connection} bytes");
            drop(client);
        });
    }
}
