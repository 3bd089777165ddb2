//! Shared subscriptions (`$share/{group}/{filter}`, 5.0 §4.8.2): each
//! matching message goes to one member of the group.
//!
//! A group is a log consumer of its own (`share/{group}/{filter}`): one
//! dispatcher task reads the log from the group's cursor, picks a connected
//! member round-robin (skipping members whose queue is full), and hands the
//! record to that member's connection through a bounded channel. The group
//! remembers what each member has not acknowledged; when a member leaves,
//! those messages go to the other members (QoS 1 may thus arrive twice). The
//! cursor committed to the log is the oldest message not yet acknowledged, so
//! a broker restart redelivers rather than loses. A group lives as long as
//! some session, connected or not, holds the subscription; with no member
//! connected, messages wait in the log.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tributary_log::{Log, Offset, Record};

/// Start of the log consumer name of every group's cursor.
pub const CONSUMER_PREFIX: &str = "share/";

/// Records read from the log per dispatch round.
const DISPATCH_BATCH: usize = 256;
/// Messages queued towards one member connection before the group moves on.
pub const MEMBER_QUEUE: usize = 64;
/// Dispatch is retried this often while every member is busy.
const BUSY_RETRY: Duration = Duration::from_millis(50);

/// One message handed to a member connection.
#[derive(Debug)]
pub struct SharedDelivery {
    /// The shared filter as subscribed (`$share/group/filter`).
    pub key: Arc<str>,
    pub offset: Offset,
    pub record: Arc<Record>,
}

struct Member {
    conn: u64,
    tx: mpsc::Sender<SharedDelivery>,
}

#[derive(Default)]
struct GroupState {
    members: Vec<Member>,
    next: usize,
    read_pos: Offset,
    /// What each member connection was handed and has not acknowledged.
    unacked: HashMap<u64, BTreeMap<Offset, Arc<Record>>>,
    /// Messages of members that left, to hand to another member first.
    redeliver: VecDeque<(Offset, Arc<Record>)>,
    /// Sessions (connected or not) holding the subscription.
    refs: usize,
    committed: Option<Offset>,
}

struct Group {
    key: Arc<str>,
    filter: String,
    state: Mutex<GroupState>,
    wake: Notify,
    stop: CancellationToken,
}

impl Group {
    fn consumer_name(&self) -> String {
        format!("{CONSUMER_PREFIX}{}", &self.key["$share/".len()..])
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GroupState> {
        self.state.lock().expect("shared group lock poisoned")
    }
}

/// Every shared subscription group of the broker.
pub struct SharedGroups {
    log: Log,
    groups: Mutex<HashMap<Arc<str>, Arc<Group>>>,
}

impl SharedGroups {
    pub fn new(log: Log) -> Self {
        SharedGroups {
            log,
            groups: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, key: &str) -> Option<Arc<Group>> {
        self.groups
            .lock()
            .expect("shared groups lock poisoned")
            .get(key)
            .cloned()
    }

    /// A session now holds the shared subscription `key`; creates the group
    /// (resuming its committed cursor) and its dispatcher when it is new.
    pub fn hold(&self, key: &str) {
        let mut groups = self.groups.lock().expect("shared groups lock poisoned");
        if let Some(group) = groups.get(key) {
            group.lock().refs += 1;
            return;
        }
        let Some(filter) = inner_filter(key) else {
            return;
        };
        let key: Arc<str> = Arc::from(key);
        let group = Arc::new(Group {
            key: key.clone(),
            filter: filter.to_string(),
            state: Mutex::new(GroupState::default()),
            wake: Notify::new(),
            stop: CancellationToken::new(),
        });
        let start = self
            .log
            .committed_offset(&group.consumer_name())
            .unwrap_or_else(|| self.log.end_offset());
        {
            let mut state = group.lock();
            state.refs = 1;
            state.read_pos = start.max(self.log.start_offset());
        }
        if let Err(e) = self.log.commit_offset(&group.consumer_name(), start) {
            tracing::error!(group = %key, error = %e, "commit a new shared group's cursor");
        }
        groups.insert(key, group.clone());
        tokio::spawn(dispatch(self.log.clone(), group));
    }

    /// A session let go of the subscription; the last one removes the group.
    pub fn release(&self, key: &str) {
        let mut groups = self.groups.lock().expect("shared groups lock poisoned");
        let Some(group) = groups.get(key).cloned() else {
            return;
        };
        let empty = {
            let mut state = group.lock();
            state.refs = state.refs.saturating_sub(1);
            state.refs == 0
        };
        if empty {
            groups.remove(key);
            group.stop.cancel();
            if let Err(e) = self.log.remove_consumer(&group.consumer_name()) {
                tracing::error!(group = %key, error = %e, "remove a shared group's cursor");
            }
        }
    }

    /// Connection `conn` takes messages of the group from now on.
    pub fn join(&self, key: &str, conn: u64, tx: mpsc::Sender<SharedDelivery>) {
        let Some(group) = self.get(key) else { return };
        group.lock().members.push(Member { conn, tx });
        group.wake.notify_one();
    }

    /// Connection `conn` leaves; what it had not acknowledged goes to others.
    pub fn leave(&self, key: &str, conn: u64) {
        let Some(group) = self.get(key) else { return };
        {
            let mut state = group.lock();
            state.members.retain(|m| m.conn != conn);
            if let Some(unacked) = state.unacked.remove(&conn) {
                state.redeliver.extend(unacked);
            }
        }
        group.wake.notify_one();
    }

    /// The member acknowledged (or, at QoS 0, was sent) the message at `offset`.
    pub fn ack(&self, key: &str, conn: u64, offset: Offset) {
        let Some(group) = self.get(key) else { return };
        if let Some(unacked) = group.lock().unacked.get_mut(&conn) {
            unacked.remove(&offset);
        }
        group.wake.notify_one();
    }
}

/// The filter inside `$share/{group}/{filter}`.
pub fn inner_filter(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("$share/")?;
    let (_group, filter) = rest.split_once('/')?;
    Some(filter)
}

/// The dispatcher of one group: runs until the group is removed.
async fn dispatch(log: Log, group: Arc<Group>) {
    loop {
        let read_pos = group.lock().read_pos;
        let progressed = dispatch_round(&log, &group).await;
        commit(&log, &group);
        if progressed {
            continue;
        }
        tokio::select! {
            () = group.stop.cancelled() => return,
            () = group.wake.notified() => {}
            () = log.wait_beyond(read_pos) => {}
            () = tokio::time::sleep(BUSY_RETRY) => {}
        }
    }
}

/// Hands out redeliveries and new records while members have room. Returns
/// whether anything moved (so the caller loops before sleeping).
async fn dispatch_round(log: &Log, group: &Group) -> bool {
    let mut progressed = false;
    {
        let mut state = group.lock();
        while let Some((offset, record)) = state.redeliver.pop_front() {
            if !hand_out(&group.key, &mut state, offset, record.clone()) {
                state.redeliver.push_front((offset, record));
                return progressed;
            }
            progressed = true;
        }
        if state.members.is_empty() {
            return progressed;
        }
    }
    let from = group.lock().read_pos;
    let batch = match log.read(from, DISPATCH_BATCH).await {
        Ok(batch) => batch,
        Err(tributary_log::Error::OffsetOutOfRange { start, .. }) => {
            // Retention deleted what the group had not read (see `Broker::open`).
            tracing::warn!(group = %group.key, skipped = start.saturating_sub(from.0), "shared subscription fell behind the log's retention: its oldest messages are gone");
            group.lock().read_pos = Offset(start);
            return true;
        }
        Err(e) => {
            tracing::error!(group = %group.key, error = %e, "read the log for a shared subscription");
            return false;
        }
    };
    let mut state = group.lock();
    if state.read_pos != from {
        return true;
    }
    for (offset, record) in batch {
        if tributary_mqtt::topic::matches(&group.filter, &record.topic)
            && !hand_out(&group.key, &mut state, offset, record)
        {
            break;
        }
        state.read_pos = Offset(offset.0 + 1);
        progressed = true;
    }
    progressed
}

/// Gives one message to the next member with room; false when none has.
fn hand_out(key: &Arc<str>, state: &mut GroupState, offset: Offset, record: Arc<Record>) -> bool {
    let mut tries = state.members.len();
    while tries > 0 && !state.members.is_empty() {
        tries -= 1;
        let i = state.next % state.members.len();
        state.next = i + 1;
        let delivery = SharedDelivery {
            key: key.clone(),
            offset,
            record: record.clone(),
        };
        match state.members[i].tx.try_send(delivery) {
            Ok(()) => {
                let conn = state.members[i].conn;
                state
                    .unacked
                    .entry(conn)
                    .or_default()
                    .insert(offset, record);
                return true;
            }
            Err(mpsc::error::TrySendError::Full(_)) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => {
                let member = state.members.remove(i);
                if let Some(unacked) = state.unacked.remove(&member.conn) {
                    state.redeliver.extend(unacked);
                }
                tries = state.members.len();
            }
        }
    }
    false
}

/// Commits the oldest offset the group still owes a member.
fn commit(log: &Log, group: &Group) {
    let mut state = group.lock();
    let oldest_unacked = state
        .unacked
        .values()
        .filter_map(|m| m.keys().next())
        .min()
        .copied();
    let oldest_redeliver = state.redeliver.iter().map(|(o, _)| *o).min();
    let cursor = [oldest_unacked, oldest_redeliver, Some(state.read_pos)]
        .into_iter()
        .flatten()
        .min();
    if let Some(cursor) = cursor {
        if state.committed != Some(cursor) {
            if let Err(e) = log.commit_offset(&group.consumer_name(), cursor) {
                tracing::error!(group = %group.key, error = %e, "commit a shared group's cursor");
            }
            state.committed = Some(cursor);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inner_filter_of_a_share() {
        assert_eq!(inner_filter("$share/g/a/+/c"), Some("a/+/c"));
        assert_eq!(inner_filter("$share/g/#"), Some("#"));
        assert_eq!(inner_filter("a/b"), None);
    }

    #[test]
    fn hand_out_round_robins_and_skips_full_members() {
        let (tx1, mut rx1) = mpsc::channel(1);
        let (tx2, mut rx2) = mpsc::channel(8);
        let mut state = GroupState {
            members: vec![Member { conn: 1, tx: tx1 }, Member { conn: 2, tx: tx2 }],
            ..Default::default()
        };
        let key: Arc<str> = Arc::from("$share/g/t");
        let record = Arc::new(Record::default());
        for i in 0..4 {
            assert!(hand_out(&key, &mut state, Offset(i), record.clone()));
        }
        // Member 1 holds one (its queue is 1 deep), member 2 the other three.
        assert_eq!(state.unacked[&1].len(), 1);
        assert_eq!(state.unacked[&2].len(), 3);
        assert_eq!(rx1.try_recv().map(|d| d.offset).ok(), Some(Offset(0)));
        assert_eq!(rx2.try_recv().map(|d| d.offset).ok(), Some(Offset(1)));
    }

    #[test]
    fn a_departed_member_s_messages_are_redelivered() {
        let (tx1, rx1) = mpsc::channel(8);
        let (tx2, _rx2) = mpsc::channel(8);
        let mut state = GroupState {
            members: vec![Member { conn: 1, tx: tx1 }],
            ..Default::default()
        };
        let key: Arc<str> = Arc::from("$share/g/t");
        assert!(hand_out(
            &key,
            &mut state,
            Offset(7),
            Arc::new(Record::default())
        ));
        drop(rx1);
        state.members.push(Member { conn: 2, tx: tx2 });
        state.next = 0;
        // Member 1's channel is closed: it is dropped and its message queued again.
        assert!(hand_out(
            &key,
            &mut state,
            Offset(8),
            Arc::new(Record::default())
        ));
        assert_eq!(
            state.redeliver.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
            vec![Offset(7)]
        );
        assert_eq!(state.members.len(), 1);
    }
}
