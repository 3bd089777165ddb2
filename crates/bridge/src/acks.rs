//! Acknowledgements to the source in the order its PUBLISHes arrived.
//!
//! MQTT 4.6 asks a client to send PUBACKs in the order the PUBLISHes
//! arrived, and the bridge may only acknowledge what Kafka acknowledged. So
//! every message goes into an [`AckQueue`] in arrival order together with
//! its Kafka delivery, and leaves it only from the front, once its own
//! delivery resolved: a later message that Kafka acknowledged first (another
//! topic, another partition) waits behind the earlier one.
//!
//! Invariants:
//! - entries leave in exactly the order they were pushed;
//! - an entry leaves only with its own delivery's outcome;
//! - at most `capacity` entries are held: the caller stops reading its
//!   socket while [`AckQueue::is_full`].

use std::collections::VecDeque;
use std::future::Future;

use futures_util::FutureExt;
use tributary_mqtt::PacketId;

/// Messages whose Kafka delivery is awaited, in arrival order.
pub struct AckQueue<F> {
    entries: VecDeque<Entry<F>>,
    capacity: usize,
}

struct Entry<F> {
    /// `None` for QoS 0: nothing to acknowledge, but it still holds its
    /// place so the in-flight bound counts it.
    packet_id: Option<PacketId>,
    delivery: F,
}

/// A message whose delivery resolved, in arrival order.
#[derive(Debug, PartialEq, Eq)]
pub struct Settled<T> {
    pub packet_id: Option<PacketId>,
    pub outcome: T,
}

impl<F: Future + Unpin> AckQueue<F> {
    /// A queue that is full at `capacity` (at least 1) messages.
    pub fn new(capacity: usize) -> Self {
        AckQueue {
            entries: VecDeque::with_capacity(capacity.min(4096)),
            capacity: capacity.max(1),
        }
    }

    /// Queues a message behind every message pushed before it.
    pub fn push(&mut self, packet_id: Option<PacketId>, delivery: F) {
        self.entries.push_back(Entry {
            packet_id,
            delivery,
        });
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// No room for another message: stop taking PUBLISHes.
    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.capacity
    }

    /// Waits for the oldest message's delivery and removes it; pending
    /// forever when the queue is empty. Cancel-safe: the delivery is polled
    /// in place and the entry removed only once it resolved.
    pub async fn next(&mut self) -> Settled<F::Output> {
        let Some(front) = self.entries.front_mut() else {
            return std::future::pending().await;
        };
        let outcome = (&mut front.delivery).await;
        let entry = self
            .entries
            .pop_front()
            .expect("the front entry was just polled");
        Settled {
            packet_id: entry.packet_id,
            outcome,
        }
    }

    /// The oldest message if its delivery already resolved, without waiting.
    pub fn pop_ready(&mut self) -> Option<Settled<F::Output>> {
        let front = self.entries.front_mut()?;
        let outcome = (&mut front.delivery).now_or_never()?;
        let entry = self
            .entries
            .pop_front()
            .expect("the front entry was just polled");
        Some(Settled {
            packet_id: entry.packet_id,
            outcome,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    type Outcome = Result<(), &'static str>;
    type Delivery = oneshot::Receiver<Outcome>;
    type Kafka = oneshot::Sender<Outcome>;

    /// A queue of `n` messages (packet ids 1..=n) and the ends Kafka's
    /// outcomes are sent through, in the same order.
    fn queue_of(n: u16) -> (AckQueue<Delivery>, Vec<Kafka>) {
        let mut queue = AckQueue::new(usize::from(n));
        let mut senders = Vec::new();
        for id in 1..=n {
            let (tx, rx) = oneshot::channel();
            queue.push(Some(id), rx);
            senders.push(tx);
        }
        (queue, senders)
    }

    fn settled(
        packet_id: u16,
    ) -> Settled<Result<Result<(), &'static str>, oneshot::error::RecvError>> {
        Settled {
            packet_id: Some(packet_id),
            outcome: Ok(Ok(())),
        }
    }

    #[tokio::test]
    async fn later_acknowledgements_wait_for_earlier_ones() {
        let (mut queue, mut senders) = queue_of(3);
        // Kafka acknowledges 3 and 2 before 1.
        let s1 = senders.remove(0);
        for tx in senders {
            tx.send(Ok(())).unwrap();
        }
        assert_eq!(queue.pop_ready(), None, "2 and 3 must wait for 1");
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(20), queue.next()).await;
        assert!(
            waiting.is_err(),
            "next() resolved before the oldest delivery"
        );
        assert_eq!(queue.len(), 3, "a cancelled next() keeps every entry");

        s1.send(Ok(())).unwrap();
        assert_eq!(queue.next().await, settled(1));
        assert_eq!(queue.pop_ready(), Some(settled(2)));
        assert_eq!(queue.pop_ready(), Some(settled(3)));
        assert!(queue.is_empty());
    }

    #[tokio::test]
    async fn a_failed_delivery_comes_out_in_its_place() {
        let (mut queue, senders) = queue_of(3);
        let mut senders = senders.into_iter();
        senders.next().unwrap().send(Ok(())).unwrap();
        senders.next().unwrap().send(Err("timed out")).unwrap();
        senders.next().unwrap().send(Ok(())).unwrap();
        assert_eq!(queue.next().await, settled(1));
        let failed = queue.next().await;
        assert_eq!(failed.packet_id, Some(2));
        assert_eq!(failed.outcome, Ok(Err("timed out")));
        // The caller stops here and reconnects; 3 is never acknowledged.
        assert_eq!(queue.len(), 1);
    }

    #[tokio::test]
    async fn qos0_messages_hold_a_place_without_a_packet_id() {
        let mut queue = AckQueue::new(2);
        let (tx0, rx0) = oneshot::channel::<()>();
        let (tx1, rx1) = oneshot::channel::<()>();
        queue.push(None, rx0);
        queue.push(Some(7), rx1);
        assert!(queue.is_full());
        tx1.send(()).unwrap();
        assert_eq!(queue.pop_ready(), None);
        tx0.send(()).unwrap();
        assert_eq!(queue.next().await.packet_id, None);
        assert!(!queue.is_full());
        assert_eq!(queue.next().await.packet_id, Some(7));
    }

    #[test]
    fn capacity_is_at_least_one() {
        let mut queue: AckQueue<std::future::Ready<()>> = AckQueue::new(0);
        assert!(!queue.is_full());
        queue.push(Some(1), std::future::ready(()));
        assert!(queue.is_full());
        assert_eq!(queue.pop_ready().map(|s| s.packet_id), Some(Some(1)));
    }
}
