//! Routing by subscription index: one task per node reads the log once and
//! hands each record to the connected sessions whose subscriptions match
//! it, found through a topic trie. A record therefore costs work in
//! proportion to the sessions it is for, and a session whose topics are
//! quiet costs nothing per message (architecture principle 7).
//!
//! The log stays the source of truth. A session's [`Inbox`] is only a
//! short queue of records the router already matched; the session still
//! keeps its cursor (`read_pos`) and checks each record against its own
//! subscriptions (`SessionState::route`) before sending it. Where the
//! inbox cannot help, the session reads the log itself, as every session
//! did before the router:
//!
//! - **From where it resumes**: a session registers at the router's
//!   position `P` (the next offset the router will route); records from
//!   `P` on reach its inbox, and it reads `[read_pos, P)` from the log
//!   itself (a persistent session coming back after a disconnect or a
//!   restart catches up this way).
//! - **When it falls behind**: an inbox holds at most [`INBOX_MAX`] records.
//!   Past that the router stops filling it and marks it overflowed; once the
//!   session has sent what its inbox held, it re-registers at the router's
//!   position and reads the records in between from the log.
//!
//! Records before `P` are never in the inbox, and records from `P` on always
//! are (or the inbox says it overflowed), because registering and routing a
//! batch both take the index's lock and the router's position moves only
//! under it.
//!
//! Shared subscriptions are not in the index: their groups read the log
//! once per group (`shared`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tributary_log::{Log, Offset, Record};

/// Records one inbox holds before its session must read the log itself.
pub(crate) const INBOX_MAX: usize = 1024;

/// Records the router reads from the log at once.
const ROUTE_BATCH: usize = 1024;

/// How often the router wakes persistent sessions whose topics were quiet
/// while the log moved on, so that they commit a cursor that follows the
/// log and do not hold its retention back.
const NUDGE_EVERY: Duration = Duration::from_secs(10);

/// The node's subscription index and its position in the log.
pub(crate) struct Router {
    index: Mutex<Index>,
    /// The next log offset the router will route. Moved only under the
    /// index's lock, after the records before it are in their inboxes.
    routed: AtomicU64,
}

#[derive(Default)]
struct Index {
    root: Node,
    /// Every registered inbox by connection, with its filters.
    registered: HashMap<u64, (Arc<Inbox>, Vec<String>)>,
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

    /// Removes `conn` from the filter's place; prunes levels left empty.
    fn remove(&mut self, mut levels: std::str::Split<'_, char>, conn: u64) {
        match levels.next() {
            None => self.exact.retain(|i| i.conn != conn),
            Some("#") => self.hash.retain(|i| i.conn != conn),
            Some("+") => {
                if let Some(plus) = self.plus.as_mut() {
                    plus.remove(levels, conn);
                    if plus.is_empty() {
                        self.plus = None;
                    }
                }
            }
            Some(level) => {
                if let Some(child) = self.children.get_mut(level) {
                    child.remove(levels, conn);
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

/// The records the router matched for one connected session, waiting to be sent.
pub(crate) struct Inbox {
    conn: u64,
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

/// What a session's connection finds in its inbox.
pub(crate) enum Next {
    /// A record the router matched.
    Record(Offset, Arc<Record>),
    /// Nothing waiting, and every record before this offset was routed:
    /// the session's cursor may move up to it.
    CaughtUp(Offset),
    /// Records were dropped: read the log from the cursor, then go on
    /// from the inbox.
    Overflowed,
}

impl Router {
    /// A router that starts routing at `start` (the log's end when the node opens).
    pub(crate) fn new(start: Offset) -> Router {
        Router {
            index: Mutex::new(Index::default()),
            routed: AtomicU64::new(start.0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        self.index.lock().expect("router index lock poisoned")
    }

    /// The next offset the router will route.
    pub(crate) fn routed(&self) -> Offset {
        Offset(self.routed.load(Ordering::Acquire))
    }

    /// Registers connection `conn` with `filters`; records from the
    /// registration's `scan_until` on reach its inbox.
    pub(crate) fn register<'a>(
        self: &Arc<Self>,
        conn: u64,
        persistent: bool,
        filters: impl IntoIterator<Item = &'a str>,
    ) -> Registration {
        let inbox = Arc::new(Inbox {
            conn,
            persistent,
            state: Mutex::new(InboxState::default()),
            wake: Notify::new(),
        });
        let mut index = self.lock();
        let mut kept = Vec::new();
        for filter in filters {
            index.root.insert(filter.split('/'), &inbox);
            kept.push(filter.to_owned());
        }
        index.registered.insert(conn, (inbox.clone(), kept));
        Registration {
            router: self.clone(),
            conn,
            inbox,
            scan_until: self.routed(),
        }
    }

    /// Adds a filter to a registered connection; records from the returned
    /// offset on that match it reach the connection's inbox.
    fn subscribe(&self, conn: u64, filter: &str) -> Offset {
        let mut index = self.lock();
        let index = &mut *index;
        if let Some((inbox, filters)) = index.registered.get_mut(&conn) {
            if !filters.iter().any(|f| f == filter) {
                index.root.insert(filter.split('/'), inbox);
                filters.push(filter.to_owned());
            }
        }
        self.routed()
    }

    /// Removes a filter of a registered connection.
    fn unsubscribe(&self, conn: u64, filter: &str) {
        let mut index = self.lock();
        let index = &mut *index;
        if let Some((_, filters)) = index.registered.get_mut(&conn) {
            if let Some(at) = filters.iter().position(|f| f == filter) {
                filters.swap_remove(at);
                index.root.remove(filter.split('/'), conn);
            }
        }
    }

    /// Removes a connection and all its filters.
    fn unregister(&self, conn: u64) {
        let mut index = self.lock();
        if let Some((_, filters)) = index.registered.remove(&conn) {
            for filter in filters {
                index.root.remove(filter.split('/'), conn);
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
            if matched.len() > 1 {
                // Overlapping filters of one session: deliver once.
                matched.sort_unstable_by_key(|i| i.conn);
                matched.dedup_by_key(|i| i.conn);
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
        for (inbox, _) in index.registered.values() {
            if inbox.persistent {
                inbox.wake.notify_one();
            }
        }
    }
}

/// A connection's place in the router; unregisters when dropped.
pub(crate) struct Registration {
    router: Arc<Router>,
    conn: u64,
    inbox: Arc<Inbox>,
    /// The session reads the log itself up to here (see the module's doc).
    pub(crate) scan_until: Offset,
}

impl Registration {
    /// Adds a filter; returns the offset from which its records reach the inbox.
    pub(crate) fn subscribe(&self, filter: &str) -> Offset {
        self.router.subscribe(self.conn, filter)
    }

    pub(crate) fn unsubscribe(&self, filter: &str) {
        self.router.unsubscribe(self.conn, filter)
    }

    /// The next thing waiting in the inbox, taken from it.
    pub(crate) fn next(&self) -> Next {
        self.router.next(&self.inbox)
    }

    /// After [`Next::Overflowed`]: routing resumes at the returned offset,
    /// and the session reads the log up to it.
    pub(crate) fn rearm(&mut self) -> Offset {
        self.scan_until = self.router.rearm(&self.inbox);
        self.scan_until
    }

    /// Where the session's cursor may move when it read the log up to
    /// `scan_until` and its inbox is empty: the router's position.
    pub(crate) fn caught_up(&self, read_pos: Offset) -> Option<Offset> {
        if read_pos < self.scan_until {
            return None;
        }
        self.router.caught_up(&self.inbox)
    }

    /// True when the session has something to deliver: records of the log
    /// before `scan_until` past its cursor `read_pos`, or its inbox.
    pub(crate) fn has_pending(&self, read_pos: Offset) -> bool {
        read_pos < self.scan_until || self.router.has_pending(&self.inbox)
    }

    /// Waits until the router put something in the inbox (or nudged it).
    pub(crate) async fn woken(&self) {
        self.inbox.wake.notified().await
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.router.unregister(self.conn);
    }
}

/// The routing task: reads the log from the router's position and routes
/// every record, until `stop` is cancelled.
pub(crate) async fn run(router: Arc<Router>, log: Log, stop: CancellationToken) {
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
        let a = router.register(1, false, ["ann/+/senml", "x/#"]);
        let b = router.register(2, false, ["bob/watch/senml"]);
        let c = router.register(3, false, ["#", "ann/watch/senml"]);
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
        let a = router.register(1, false, ["a/+"]);
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
    fn registration_starts_at_the_routers_position() {
        let router = Arc::new(Router::new(Offset(0)));
        router.route(
            &[(Offset(0), record("a")), (Offset(1), record("a"))],
            &mut Vec::new(),
        );
        let a = router.register(1, false, ["a"]);
        assert_eq!(a.scan_until, Offset(2));
        assert!(drain(&a).is_empty());
    }

    #[test]
    fn a_full_inbox_overflows_and_rearms_at_the_routers_position() {
        let router = Arc::new(Router::new(Offset(0)));
        let mut a = router.register(1, false, ["a"]);
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
