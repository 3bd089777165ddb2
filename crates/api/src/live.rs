//! `GET /api/v1/live`: the caller's messages as they arrive, as
//! Server-Sent Events, read from the log (the live feed is one more log consumer,
//! docs/architecture.md principle 2; it commits no offset, since it starts
//! at the end).
//!
//! A feed follows its owner through the node's router (`tributary-router`),
//! which reads the log once and hands each record to the feeds of its
//! authenticated owner: a feed costs work per record of its owner, not per
//! record of everyone. A feed reads the log itself only from a resumed
//! `Last-Event-ID` up to where its routing starts, or after it fell more
//! than an inbox behind.
//!
//! A feed ends when the token it was opened with ends: at logout, when a
//! newer login pushes it out (tokens per owner), or when it expires. Ended
//! on this node, at once; ended on another node sharing the store, at the
//! feed's next look at the store ([`SESSION_CHECK`]).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tributary_rights::owner_keys::Opened;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use base64::Engine;
use futures_util::stream::Stream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tributary_log::{Log, Offset, Record};
use tributary_router::{Next, Registration};
use tributary_store::TokenHash;

use crate::auth::{LiveSession, SessionWatch};
use crate::error::{ApiError, Result};
use crate::ApiState;

/// A comment line this often keeps proxies from closing an idle feed.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// A feed ends after this long; an `EventSource` reconnects by itself.
/// Bounds how long a client (or a stolen token) holds a feed.
pub const MAX_FEED_DURATION: Duration = Duration::from_secs(60 * 60);
/// A feed looks its session up in the store this often, so that a logout
/// on another node ends it within this time (one on this node ends it at
/// once).
pub const SESSION_CHECK: Duration = Duration::from_secs(5);
/// At most this many feeds at once (of all owners); more get 503.
pub const MAX_FEEDS: usize = 256;

/// The bounds on open feeds: all of them, and each owner's.
#[derive(Debug)]
pub(crate) struct Feeds {
    all: Arc<Semaphore>,
    per_owner: usize,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// One open feed's place in [`Feeds`], given back when the feed ends.
struct FeedSlot {
    _all: OwnedSemaphorePermit,
    owner: String,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

impl Feeds {
    pub(crate) fn new(max: usize, per_owner: usize) -> Feeds {
        Feeds {
            all: Arc::new(Semaphore::new(max)),
            per_owner: per_owner.max(1),
            open: Arc::default(),
        }
    }

    /// A slot for one more feed of `owner`: 429 beyond the owner's bound
    /// (the owner can close one), 503 beyond the server's.
    fn open(&self, owner: &str) -> Result<FeedSlot> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = open.get(owner).copied().unwrap_or(0);
        if count >= self.per_owner {
            return Err(ApiError::TooMany {
                detail: format!(
                    "you have {count} live feeds open, the most one owner may; close one first"
                ),
                retry_after_s: None,
            });
        }
        let all = self.all.clone().try_acquire_owned().map_err(|_| {
            ApiError::Unavailable("too many live feeds open; try again later".into())
        })?;
        open.insert(owner.to_owned(), count + 1);
        Ok(FeedSlot {
            _all: all,
            owner: owner.to_owned(),
            open: self.open.clone(),
        })
    }
}

impl Drop for FeedSlot {
    fn drop(&mut self) {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.owner) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.owner);
            }
        }
    }
}
/// Records read from the log per step.
const READ_BATCH: usize = 256;
/// A feed resumed with `Last-Event-ID` goes back at most this many log
/// records (of every owner): enough for a reconnect after a network blip,
/// and a bound on the log a feed may make the server re-read.
pub const MAX_RESUME_RECORDS: u64 = 100_000;

/// `GET /api/v1/live`. Each event's id is its log offset; a client that
/// reconnects with `Last-Event-ID` (an `EventSource` does by itself)
/// resumes after it, so nothing in between is missed.
pub(crate) async fn live(
    State(state): State<ApiState>,
    session: LiveSession,
    headers: HeaderMap,
) -> Result<impl IntoResponse> {
    let slot = state.inner.feeds.open(&session.owner)?;
    let log = state.inner.log.clone();
    let end = log.end_offset();
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|last| {
            Offset(
                last.saturating_add(1)
                    .clamp(end.0.saturating_sub(MAX_RESUME_RECORDS), end.0),
            )
        });
    let follow = state.router().follow_owner(&session.owner);
    let feed = Feed {
        next: resume.unwrap_or(end),
        log,
        follow,
        owner: session.owner,
        pending: VecDeque::new(),
        // The feed's own bound, or the token's expiry if that comes first.
        deadline: (Instant::now() + state.inner.config.live_max_duration)
            .min(Instant::from_std(session.expires)),
        session: state.inner.sessions.watch(session.token_hash),
        token_hash: session.token_hash,
        check_at: Instant::now() + SESSION_CHECK,
        state: state.clone(),
        closing: state.inner.closing.clone(),
        _slot: slot,
    };
    Ok(Sse::new(feed.into_stream()).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

struct Feed {
    log: Log,
    /// The feed's place in the router.
    follow: Registration,
    owner: String,
    /// The next log offset to read.
    next: Offset,
    /// The caller's events read but not yet sent.
    pending: VecDeque<Event>,
    deadline: Instant,
    /// Its `ended` is cancelled when the token the feed was opened with
    /// ends on this node.
    session: SessionWatch,
    /// The token's session in the store, looked up at `check_at`: how an
    /// end on another node reaches the feed.
    token_hash: TokenHash,
    check_at: Instant,
    state: ApiState,
    /// Cancelled when the server shuts down.
    closing: CancellationToken,
    /// Held while the feed is open (the bounds on feeds).
    _slot: FeedSlot,
}

impl Feed {
    fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> {
        // Fused: a layer may poll again after the end, which `unfold` forbids.
        futures_util::StreamExt::fuse(futures_util::stream::unfold(self, |mut feed| async move {
            let event = feed.next_event().await?;
            Some((Ok(event), feed))
        }))
    }

    /// The next of the caller's events; `None` ends the feed (deadline,
    /// token ended, server shutting down, log closed or failed).
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if self.session.ended.is_cancelled()
                || self.closing.is_cancelled()
                || Instant::now() >= self.deadline
            {
                return None;
            }
            if Instant::now() >= self.check_at {
                // A store that fails ends the feed too (it is logged where
                // the error is made): a feed is not kept on a session that
                // cannot be checked.
                let live = self.state.inner.sessions.is_live(self.token_hash).await;
                if !live.unwrap_or(false) {
                    return None;
                }
                self.check_at = Instant::now() + SESSION_CHECK;
            }
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.next < self.follow.scan_until {
                self.read_log().await?;
                continue;
            }
            match self.follow.next() {
                Next::Record(offset, record) => {
                    if offset >= self.next {
                        self.next = Offset(offset.0 + 1);
                        if let Some(event) = opened_event(&self.state, offset, &record).await {
                            self.pending.push_back(event);
                        }
                    }
                }
                Next::CaughtUp(to) => {
                    self.next = self.next.max(to);
                    let woken = tokio::select! {
                        () = self.session.ended.cancelled() => return None,
                        () = tokio::time::sleep_until(self.check_at) => continue,
                        () = self.closing.cancelled() => return None,
                        woken = tokio::time::timeout_at(self.deadline, self.follow.woken()) => woken,
                    };
                    if woken.is_err() {
                        return None;
                    }
                }
                Next::Overflowed => {
                    self.follow.rearm();
                }
                Next::Closed => return None,
            }
        }
    }

    /// Reads the log from `next` up to where the feed's routing starts,
    /// keeping the caller's records; `None` when the log failed.
    async fn read_log(&mut self) -> Option<()> {
        let until = self.follow.scan_until;
        match self.log.read(self.next, READ_BATCH).await {
            Ok(records) => {
                let before = self.next;
                for (offset, record) in records.iter().take_while(|(o, _)| *o < until) {
                    self.next = Offset(offset.0 + 1);
                    if record.owner == self.owner {
                        if let Some(event) = opened_event(&self.state, *offset, record).await {
                            self.pending.push_back(event);
                        }
                    }
                }
                if self.next == before {
                    self.next = until; // nothing (more) before it
                }
                Some(())
            }
            // Retention passed this feed (it fell far behind): skip
            // ahead rather than end it.
            Err(tributary_log::Error::OffsetOutOfRange { start, .. }) => {
                self.next = Offset(start);
                Some(())
            }
            Err(error) => {
                tracing::warn!(%error, owner = %self.owner, "live feed: read log; ending the feed");
                None
            }
        }
    }
}

/// The event for one record with its payload opened (docs/erasure.md), or
/// `None` when it must not be shown: its owner, its device or its time was
/// erased, or it does not open (logged).
async fn opened_event(state: &ApiState, offset: Offset, record: &Arc<Record>) -> Option<Event> {
    if state.erased(record) {
        return None;
    }
    let Some(keyring) = state.keyring() else {
        return Some(event(offset, record));
    };
    match keyring.open(&record.owner, &record.payload).await {
        Ok(Opened::Plain) => Some(event(offset, record)),
        Ok(Opened::Unsealed(plain)) => {
            let mut opened = (**record).clone();
            opened.payload = plain.into();
            Some(event(offset, &Arc::new(opened)))
        }
        Ok(Opened::KeyGone) => None,
        Err(e) => {
            tracing::warn!(owner = %record.owner, error = %e, "live feed: a sealed payload does not open; not sent");
            None
        }
    }
}

/// The event for one record, its id the record's offset.
fn event(offset: Offset, record: &Arc<Record>) -> Event {
    let mut data = serde_json::json!({
        "topic": record.topic,
        "device": record.device,
        "received_ms": record.receive_time_ms,
    });
    match std::str::from_utf8(&record.payload) {
        Ok(text) => data["payload"] = text.into(),
        Err(_) => {
            data["payload"] = base64::engine::general_purpose::STANDARD
                .encode(&record.payload)
                .into();
            data["encoding"] = "base64".into();
        }
    }
    Event::default()
        .event("message")
        .id(offset.0.to_string())
        .data(data.to_string())
}
