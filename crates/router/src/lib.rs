//! `tributary-router`: routing by subscription index. One task per node
//! ([`run`]) reads the log once and hands each record to the connected MQTT
//! sessions whose subscriptions match it, found through a topic trie, and to
//! the live feeds of the record's owner (the HTTP API's `/live`), found by
//! owner. A record therefore costs work in proportion to the readers it is
//! for, and a reader whose records are quiet costs nothing per message
//! (architecture principle 7).
//!
//! The log stays the source of truth. A reader's [`Registration`] holds a
//! short queue (its inbox) of records the router already matched; the
//! reader keeps its own cursor into the log (a session also checks each
//! record against its own subscriptions before sending it). Where the inbox
//! cannot help, the reader reads the log itself:
//!
//! - **From where it resumes**: a session registers at the router's
//!   position `P` (the next offset the router will route); records from
//!   `P` on reach its inbox, and it reads `[read_pos, P)` from the log
//!   itself (a persistent session coming back after a disconnect or a
//!   restart catches up this way).
//! - **When it falls behind**: an inbox holds at most [`INBOX_MAX`] records.
//!   Past that the router empties it and marks it overflowed; the reader
//!   then re-arms at the router's position ([`Registration::rearm`]) and
//!   reads the records from its cursor up to there from the log.
//!
//! Records before `P` are never in the inbox, and records from `P` on always
//! are (or the inbox says it overflowed), because registering and routing a
//! batch both take the index's lock and the router's position moves only
//! under it.
//!
//! MQTT shared subscriptions are not in the index: their groups read the
//! log once per group. When the routing task stops, every reader is told
//! ([`Next::Closed`]).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tributary_log::{Log, Offset, Record};

/// Records one inbox holds before its session must read the log itself.
pub const INBOX_MAX: usize = 1024;

/// Records the router reads from the log at once.
const ROUTE_BATCH: usize = 1024;

/// How often the router wakes persistent sessions whose topics were quiet
/// while the log moved on, so that they commit a cursor that follows the
/// log and do not hold its retention back.
const NUDGE_EVERY: Duration = Duration::from_secs(10);

/// The node's subscription index and its position in the log.
pub struct Router {
    index: Mutex<Index>,
    /// The next log offset the router will route. Moved only under the
    /// index's lock, after the records before it are in their inboxes.
    routed: AtomicU64,
    /// Numbers the registrations.
    next_id: AtomicU64,
    /// Set when the routing task stopped.
    closed: AtomicBool,
}

#[derive(Default)]
struct Index {
    root: Node,
    /// Live feeds by the owner whose records they follow.
    owners: HashMap<Box<str>, Vec<Arc<Inbox>>>,
    /// Every registered inbox by id, with its filters and owner.
    registered: HashMap<u64, Entry>,
}

struct Entry {
    inbox: Arc<Inbox>,
    filters: Vec<String>,
    owner: Option<Box<str>>,
}

/// A level of the topic trie: subscribers whose filter ends here, ends
/// with `#` here, and the levels below (`+` apart).
#[derive(Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    plus: Option<Box<Node>>,
    exact: Vec<Arc<Inbox>>,
    hash: Vec<Arc<Inbox>>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.exact.is_empty()
            && self.hash.is_empty()
    }

    fn insert(&mut self, mut levels: std::str::Split<'_, char>, inbox: &Arc<Inbox>) {
        match levels.next() {
            None => self.exact.push(inbox.clone()),
            Some("#") => self.hash.push(inbox.clone()),
            Some("+") => self.plus.get_or_insert_default().insert(levels, inbox),
            Some(level) => self
                .children
                .entry(level.into())
                .or_default()
                .insert(levels, inbox),
        }
    }

    /// Removes registration `id` from the filter's place; prunes levels left empty.
    fn remove(&mut self, mut levels: std::str::Split<'_, char>, id: u64) {
        match levels.next() {
            None => self.exact.retain(|i| i.id != id),
            Some("#") => self.hash.retain(|i| i.id != id),
            Some("+") => {
                if let Some(plus) = self.plus.as_mut() {
                    plus.remove(levels, id);
                    if plus.is_empty() {
                        self.plus = None;
                    }
                }
            }
            Some(level) => {
                if let Some(child) = self.children.get_mut(level) {
                    child.remove(levels, id);
                    if child.is_empty() {
                        self.children.remove(level);
                    }
                }
            }
        }
    }

    /// Adds every inbox whose filter matches the topic whose levels are
    /// `levels[depth..]` to `out` (MQTT matching: `+` one level, `#` this
    /// level and all below, and wildcards at the first level never match
    /// topics that start with `$`).
    fn matches(&self, levels: &[&str], depth: usize, out: &mut Vec<Arc<Inbox>>) {
        let dollar = depth == 0 && levels.first().is_some_and(|l| l.starts_with('$'));
        if !dollar {
            out.extend(self.hash.iter().cloned());
        }
        let Some(level) = levels.get(depth) else {
            out.extend(self.exact.iter().cloned());
            return;
        };
        if let Some(child) = self.children.get(*level) {
            child.matches(levels, depth + 1, out);
        }
        if let (false, Some(plus)) = (dollar, &self.plus) {
            plus.matches(levels, depth + 1, out);
        }
    }
}

/// The records the router matched for one reader, waiting to be taken.
struct Inbox {
    id: u64,
    /// Persistent sessions are nudged now and then to commit their cursor.
    persistent: bool,
    state: Mutex<InboxState>,
    wake: Notify,
}

#[derive(Default)]
struct InboxState {
    queue: VecDeque<(Offset, Arc<Record>)>,
    /// The router dropped records for this inbox: the session must read
    /// the log from its cursor up to where it registers again.
    overflowed: bool,
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, InboxState> {
        self.state.lock().expect("inbox lock poisoned")
    }

    fn push(&self, offset: Offset, record: &Arc<Record>) {
        let mut state = self.lock();
        if state.overflowed {
            return;
        }
        if state.queue.len() >= INBOX_MAX {
            state.overflowed = true;
            state.queue.clear();
            state.queue.shrink_to_fit();
            drop(state);
            self.wake.notify_one();
            return;
        }
        let was_empty = state.queue.is_empty();
        state.queue.push_back((offset, record.clone()));
        drop(state);
        if was_empty {
            self.wake.notify_one();
        }
    }
}

/// What a reader finds in its inbox.
#[derive(Debug)]
pub enum Next {
    /// A record the router matched.
    Record(Offset, Arc<Record>),
    /// Nothing waiting, and every record before this offset was routed:
    /// the session's cursor may move up to it.
    CaughtUp(Offset),
    /// Records were dropped: read the log from the cursor, then go on
    /// from the inbox.
    Overflowed,
    /// The routing task stopped (the node is shutting down).
    Closed,
}

impl Router {
    /// A router that starts routing at `start` (the log's end when the node opens).
    pub fn new(start: Offset) -> Router {
        Router {
            index: Mutex::new(Index::default()),
            routed: AtomicU64::new(start.0),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        self.index.lock().expect("router index lock poisoned")
    }

    /// The next offset the router will route.
    pub fn routed(&self) -> Offset {
        Offset(self.routed.load(Ordering::Acquire))
    }

    /// Registers an MQTT session with its topic `filters`; records from the
    /// registration's `scan_until` on that match one reach its inbox.
    /// `persistent` sessions are woken now and then to move their cursor.
    pub fn register<'a>(
        self: &Arc<Self>,
        persistent: bool,
        filters: impl IntoIterator<Item = &'a str>,
    ) -> Registration {
        let filters = filters.into_iter().map(str::to_owned).collect();
        self.add(persistent, filters, None)
    }

    /// Registers a live feed of `owner`'s records: records from the
    /// registration's `scan_until` on whose authenticated owner is `owner`
    /// reach its inbox.
    pub fn follow_owner(self: &Arc<Self>, owner: &str) -> Registration {
        self.add(false, Vec::new(), Some(owner.into()))
    }

    fn add(
        self: &Arc<Self>,
        persistent: bool,
        filters: Vec<String>,
        owner: Option<Box<str>>,
    ) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let inbox = Arc::new(Inbox {
            id,
            persistent,
            state: Mutex::new(InboxState::default()),
            wake: Notify::new(),
        });
        let mut index = self.lock();
        for filter in &filters {
            index.root.insert(filter.split('/'), &inbox);
        }
        if let Some(owner) = &owner {
            index
                .owners
                .entry(owner.clone())
                .or_default()
                .push(inbox.clone());
        }
        index.registered.insert(
            id,
            Entry {
                inbox: inbox.clone(),
                filters,
                owner,
            },
        );
        Registration {
            router: self.clone(),
            id,
            inbox,
            scan_until: self.routed(),
        }
    }

    /// Adds a filter to a registration; records from the returned offset
    /// on that match it reach the inbox.
    fn subscribe(&self, id: u64, filter: &str) -> Offset {
        let mut index = self.lock();
        let index = &mut *index;
        if let Some(entry) = index.registered.get_mut(&id) {
            if !entry.filters.iter().any(|f| f == filter) {
                index.root.insert(filter.split('/'), &entry.inbox);
                entry.filters.push(filter.to_owned());
            }
        }
        self.routed()
    }

    /// Removes a filter of a registration.
    fn unsubscribe(&self, id: u64, filter: &str) {
        let mut index = self.lock();
        let index = &mut *index;
        if let Some(entry) = index.registered.get_mut(&id) {
            if let Some(at) = entry.filters.iter().position(|f| f == filter) {
                entry.filters.swap_remove(at);
                index.root.remove(filter.split('/'), id);
            }
        }
    }

    /// Removes a registration with its filters and owner.
    fn unregister(&self, id: u64) {
        let mut index = self.lock();
        let Some(entry) = index.registered.remove(&id) else {
            return;
        };
        for filter in entry.filters {
            index.root.remove(filter.split('/'), id);
        }
        if let Some(owner) = entry.owner {
            if let Some(feeds) = index.owners.get_mut(&owner) {
                feeds.retain(|i| i.id != id);
                if feeds.is_empty() {
                    index.owners.remove(&owner);
                }
            }
        }
    }

    /// After an overflow: takes the inbox back into routing from the
    /// router's position on, which it returns (the session reads the log
    /// up to there itself).
    fn rearm(&self, inbox: &Inbox) -> Offset {
        let _index = self.lock();
        let mut state = inbox.lock();
        state.overflowed = false;
        state.queue.clear();
        self.routed()
    }

    /// The next thing waiting in `inbox`, taken from it.
    fn next(&self, inbox: &Inbox) -> Next {
        // Read the position first: what the router routed before it is
        // in the inbox by the time the lock below is taken.
        let routed = self.routed();
        let mut state = inbox.lock();
        if state.overflowed {
            return Next::Overflowed;
        }
        if state.queue.is_empty() && self.closed.load(Ordering::Acquire) {
            return Next::Closed;
        }
        match state.queue.pop_front() {
            Some((offset, record)) => {
                if state.queue.is_empty() && state.queue.capacity() > 16 {
                    // An idle session should not keep a burst's queue.
                    state.queue = VecDeque::new();
                }
                Next::Record(offset, record)
            }
            None => Next::CaughtUp(routed),
        }
    }

    /// The router's position when `inbox` holds nothing: every record
    /// before it that the session's filters match was taken from the inbox.
    fn caught_up(&self, inbox: &Inbox) -> Option<Offset> {
        let routed = self.routed();
        let state = inbox.lock();
        (!state.overflowed && state.queue.is_empty()).then_some(routed)
    }

    /// True when `inbox` has records or an overflow waiting.
    fn has_pending(&self, inbox: &Inbox) -> bool {
        let state = inbox.lock();
        state.overflowed || !state.queue.is_empty()
    }

    /// Tells every reader that routing stopped.
    fn close(&self) {
        let index = self.lock();
        self.closed.store(true, Ordering::Release);
        for entry in index.registered.values() {
            entry.inbox.wake.notify_one();
        }
    }

    /// Routes one batch of records read from the log.
    fn route(&self, batch: &[(Offset, Arc<Record>)], matched: &mut Vec<Arc<Inbox>>) {
        let Some((last, _)) = batch.last() else {
            return;
        };
        let index = self.lock();
        let mut levels: Vec<&str> = Vec::new();
        for (offset, record) in batch {
            levels.clear();
            levels.extend(record.topic.split('/'));
            matched.clear();
            index.root.matches(&levels, 0, matched);
            if !record.owner.is_empty() {
                if let Some(feeds) = index.owners.get(record.owner.as_str()) {
                    matched.extend(feeds.iter().cloned());
                }
            }
            if matched.len() > 1 {
                // Overlapping filters of one session: deliver once.
                matched.sort_unstable_by_key(|i| i.id);
                matched.dedup_by_key(|i| i.id);
            }
            for inbox in matched.iter() {
                inbox.push(*offset, record);
            }
        }
        matched.clear();
        self.routed.store(last.0 + 1, Ordering::Release);
    }

    /// Wakes every persistent session (see [`NUDGE_EVERY`]).
    fn nudge(&self) {
        let index = self.lock();
        for entry in index.registered.values() {
            if entry.inbox.persistent {
                entry.inbox.wake.notify_one();
            }
        }
    }
}

/// A reader's place in the router; unregisters when dropped.
pub struct Registration {
    router: Arc<Router>,
    id: u64,
    inbox: Arc<Inbox>,
    /// The reader reads the log itself up to here (see the module's doc).
    pub scan_until: Offset,
}

impl Registration {
    /// Adds a filter; returns the offset from which its records reach the inbox.
    pub fn subscribe(&self, filter: &str) -> Offset {
        self.router.subscribe(self.id, filter)
    }

    pub fn unsubscribe(&self, filter: &str) {
        self.router.unsubscribe(self.id, filter)
    }

    /// The next thing waiting in the inbox, taken from it.
    pub fn next(&self) -> Next {
        self.router.next(&self.inbox)
    }

    /// After [`Next::Overflowed`]: routing resumes at the returned offset,
    /// and the session reads the log up to it.
    pub fn rearm(&mut self) -> Offset {
        self.scan_until = self.router.rearm(&self.inbox);
        self.scan_until
    }

    /// Where the session's cursor may move when it read the log up to
    /// `scan_until` and its inbox is empty: the router's position.
    pub fn caught_up(&self, read_pos: Offset) -> Option<Offset> {
        if read_pos < self.scan_until {
            return None;
        }
        self.router.caught_up(&self.inbox)
    }

    /// True when the session has something to deliver: records of the log
    /// before `scan_until` past its cursor `read_pos`, or its inbox.
    pub fn has_pending(&self, read_pos: Offset) -> bool {
        read_pos < self.scan_until || self.router.has_pending(&self.inbox)
    }

    /// Waits until the router put something in the inbox (or nudged it).
    pub async fn woken(&self) {
        self.inbox.wake.notified().await
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.router.unregister(self.id);
    }
}

/// The routing task: reads the log from the router's position and routes
/// every record, until `stop` is cancelled (or the log closes); then tells
/// every reader.
pub async fn run(router: Arc<Router>, log: Log, stop: CancellationToken) {
    run_until(&router, log, stop).await;
    router.close();
}

async fn run_until(router: &Router, log: Log, stop: CancellationToken) {
    let mut matched = Vec::new();
    let mut next_nudge: Option<Instant> = None;
    loop {
        let pos = router.routed();
        tokio::select! {
            () = stop.cancelled() => return,
            () = log.wait_beyond(pos) => {}
            () = sleep_until_opt(next_nudge) => {
                router.nudge();
                next_nudge = None;
                continue;
            }
        }
        if log.is_closed() {
            return; // `wait_beyond` returns at once on a closed log
        }
        let batch = match log.read(pos, ROUTE_BATCH).await {
            Ok(batch) => batch,
            Err(tributary_log::Error::OffsetOutOfRange { start, .. }) => {
                // Cannot happen while the router keeps up with the log's
                // end; if it does, the records before `start` are gone for
                // every reader, and sessions find the same in the log.
                tracing::error!(from = pos.0, start, "router fell behind the log start");
                let _index = router.lock();
                router.routed.store(start, Ordering::Release);
                continue;
            }
            Err(tributary_log::Error::Closed) => return,
            Err(e) => {
                tracing::error!(error = %e, "router: read the log");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        router.route(&batch, &mut matched);
        next_nudge.get_or_insert_with(|| Instant::now() + NUDGE_EVERY);
    }
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

    fn record(topic: &str) -> Arc<Record> {
        Arc::new(Record {
            topic: topic.into(),
            ..Record::default()
        })
    }

    fn drain(a: &Registration) -> Vec<u64> {
        let mut got = Vec::new();
        while let Next::Record(offset, _) = a.next() {
            got.push(offset.0);
        }
        got
    }

    #[test]
    fn records_reach_only_the_sessions_whose_filters_match() {
        let router = Arc::new(Router::new(Offset(0)));
        let a = router.register(false, ["ann/+/senml", "x/#"]);
        let b = router.register(false, ["bob/watch/senml"]);
        let c = router.register(false, ["#", "ann/watch/senml"]);
        let batch: Vec<_> = [
            "ann/watch/senml",
            "bob/watch/senml",
            "x",
            "x/y/z",
            "$SYS/x",
            "other",
        ]
        .iter()
        .enumerate()
        .map(|(i, t)| (Offset(i as u64), record(t)))
        .collect();
        router.route(&batch, &mut Vec::new());
        assert_eq!(drain(&a), [0, 2, 3]);
        assert_eq!(drain(&b), [1]);
        // Overlapping filters deliver once; `#` does not match `$SYS`.
        assert_eq!(drain(&c), [0, 1, 2, 3, 5]);
        assert!(matches!(a.next(), Next::CaughtUp(Offset(6))));
    }

    #[test]
    fn unsubscribing_and_unregistering_stop_routing_and_prune_the_trie() {
        let router = Arc::new(Router::new(Offset(0)));
        let a = router.register(false, ["a/+"]);
        assert_eq!(a.subscribe("b"), Offset(0));
        a.unsubscribe("a/+");
        router.route(
            &[(Offset(0), record("a/x")), (Offset(1), record("b"))],
            &mut Vec::new(),
        );
        assert_eq!(drain(&a), [1]);
        drop(a);
        assert!(router.lock().root.is_empty());
        assert!(router.lock().registered.is_empty());
    }

    #[test]
    fn a_live_feed_gets_its_owners_records_whatever_the_topic() {
        let router = Arc::new(Router::new(Offset(0)));
        let ann = router.follow_owner("ann");
        let session = router.register(false, ["t/#"]);
        let owned = |topic: &str, owner: &str| {
            Arc::new(Record {
                topic: topic.into(),
                owner: owner.into(),
                ..Record::default()
            })
        };
        let batch = vec![
            (Offset(0), owned("t/a", "ann")),
            (Offset(1), owned("t/b", "bob")),
            (Offset(2), owned("x", "ann")),
            (Offset(3), owned("x", "")),
        ];
        router.route(&batch, &mut Vec::new());
        assert_eq!(drain(&ann), [0, 2]);
        assert_eq!(drain(&session), [0, 1]);
        drop(ann);
        assert!(router.lock().owners.is_empty());
    }

    #[test]
    fn readers_are_told_when_routing_stops() {
        let router = Arc::new(Router::new(Offset(0)));
        let a = router.register(false, ["a"]);
        router.route(&[(Offset(0), record("a"))], &mut Vec::new());
        router.close();
        assert!(
            matches!(a.next(), Next::Record(Offset(0), _)),
            "what was routed first"
        );
        assert!(matches!(a.next(), Next::Closed));
    }

    #[test]
    fn registration_starts_at_the_routers_position() {
        let router = Arc::new(Router::new(Offset(0)));
        router.route(
            &[(Offset(0), record("a")), (Offset(1), record("a"))],
            &mut Vec::new(),
        );
        let a = router.register(false, ["a"]);
        assert_eq!(a.scan_until, Offset(2));
        assert!(drain(&a).is_empty());
    }

    #[test]
    fn a_full_inbox_overflows_and_rearms_at_the_routers_position() {
        let router = Arc::new(Router::new(Offset(0)));
        let mut a = router.register(false, ["a"]);
        let batch: Vec<_> = (0..INBOX_MAX as u64 + 5)
            .map(|i| (Offset(i), record("a")))
            .collect();
        router.route(&batch, &mut Vec::new());
        assert!(matches!(a.next(), Next::Overflowed));
        let from = a.rearm();
        assert_eq!(from, Offset(INBOX_MAX as u64 + 5));
        router.route(&[(from, record("a"))], &mut Vec::new());
        assert_eq!(drain(&a), [from.0]);
    }
}
