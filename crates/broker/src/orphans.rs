//! Wills left behind by dead nodes. A connection's will is in the session
//! directory from its CONNECT until its node settles it at the
//! connection's end; a node killed first never does. Every
//! [`BEAT`] the lowest-named live node
//! (`Nodes::is_undertaker`) looks for such wills of nodes taken for dead,
//! and every node for those of its own earlier life (killed and restarted
//! under the same name); it settles each in the directory and publishes it
//! if its settlement is the one that counts (the first of that connection
//! in the topic): once, cluster-wide. Its delay counts from its
//! connection's end when the dead node noted that (the will was already
//! waiting out its delay there), else from the dead node's last beat. A
//! node stopping (SIGTERM) with such a will still waiting out its delay
//! gives it back, and a live node takes it up again; a node killed then
//! loses it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::Broker;
use crate::cluster::directory::ClusterWill;
use crate::cluster::nodes::BEAT;
use crate::persist::unix_ms;
use crate::session::ClientId;

/// Takes up orphaned wills until `stop`.
pub async fn take_up(broker: Arc<Broker>, stop: CancellationToken) {
    let Some(cluster) = &broker.cluster else {
        return;
    };
    // Wills being taken up by this node, by client id and epoch.
    let busy: Arc<Mutex<HashSet<(ClientId, i64)>>> = Arc::default();
    // Their tasks, waited for at the end: a will due later is given back.
    let publishing = TaskTracker::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => {
                publishing.close();
                publishing.wait().await;
                return;
            }
            () = tokio::time::sleep(BEAT) => {}
        }
        // Every node takes up its own earlier life's wills; other nodes'
        // only the undertaker.
        let undertaker = cluster.nodes.is_undertaker();
        let orphans = cluster
            .directory
            .orphaned_wills(|node| undertaker && cluster.nodes.is_dead(node));
        for (client_id, epoch, node, will) in orphans {
            let key = (client_id.clone(), epoch);
            if !busy
                .lock()
                .expect("orphans lock poisoned")
                .insert(key.clone())
            {
                continue;
            }
            let (broker, busy, stop) = (broker.clone(), busy.clone(), stop.clone());
            publishing.spawn(async move {
                publish_orphan(&broker, &client_id, epoch, &node, will, &stop).await;
                busy.lock().expect("orphans lock poisoned").remove(&key);
            });
        }
    }
}

/// Settles the will of `client_id`'s connection of `epoch` on the dead
/// `node` and, when this node's settlement counts, publishes it once its
/// delay has passed, unless (delay > 0) the client connected again within
/// it (MQTT 5.0 §3.1.3.2.2).
async fn publish_orphan(
    broker: &Broker,
    client_id: &ClientId,
    epoch: i64,
    node: &str,
    will: ClusterWill,
    stop: &CancellationToken,
) {
    let Some(cluster) = &broker.cluster else {
        return;
    };
    if !cluster.directory.take_up_will(client_id, epoch).await {
        return;
    }
    // From the connection's end when its node noted it (a will that was
    // waiting out its delay there), else from the node's last beat.
    let ended_ms = will
        .ended_ms
        .or_else(|| cluster.nodes.last_beat_ms(node))
        .unwrap_or_else(unix_ms);
    let due_ms = ended_ms + u64::from(will.delay_secs) * 1000;
    let wait = Duration::from_millis(due_ms.saturating_sub(unix_ms()));
    if !wait.is_zero() {
        tracing::info!(client_id = %client_id, node, "took up the will of a connection on a dead node, due in {wait:?}");
    }
    tokio::select! {
        () = stop.cancelled() => {
            hand_back(cluster, client_id, epoch, node, will).await;
            return;
        }
        () = tokio::time::sleep(wait) => {}
    }
    if will.delay_secs > 0 {
        let back_in_time = cluster
            .directory
            .entry(client_id)
            .is_some_and(|e| e.claim.0 > epoch && e.claim_at_ms.is_none_or(|at| at <= due_ms));
        if back_in_time {
            tracing::info!(client_id = %client_id, node, "the client connected again within its will delay: the will of its connection on a dead node is not published");
            return;
        }
    }
    let record = match will.to_record(client_id, broker.next_message_id()) {
        Ok(record) => record,
        Err(e) => {
            tracing::error!(client_id = %client_id, node, error = %e, "a will in the session directory does not decode; not published");
            return;
        }
    };
    tracing::info!(client_id = %client_id, node, topic = %record.topic, "publishing the will of a connection on a dead node");
    broker.append_will(record).await;
}

/// Longest a stopping node waits for Kafka to take a will it gives back.
const HAND_BACK_WAIT: Duration = Duration::from_secs(2);

/// Gives a will taken up here, and not yet due, back to the directory for
/// another node: this node is stopping.
async fn hand_back(
    cluster: &crate::cluster::Cluster,
    client_id: &ClientId,
    epoch: i64,
    node: &str,
    will: ClusterWill,
) {
    let given = cluster
        .directory
        .hand_back_will(client_id, epoch, node, will);
    match tokio::time::timeout(HAND_BACK_WAIT, given).await {
        Ok(Ok(())) => {
            tracing::info!(client_id = %client_id, node, "node stopping: gave back the will of a connection on a dead node, due later, for a live node to publish");
        }
        Ok(Err(e)) => {
            tracing::warn!(client_id = %client_id, node, error = %e, "node stopping: the will of a connection on a dead node, due later, could not be given back and is not published");
        }
        Err(_) => {
            tracing::warn!(client_id = %client_id, node, "node stopping: the will of a connection on a dead node, due later, was not given back within {HAND_BACK_WAIT:?} and is not published");
        }
    }
}
