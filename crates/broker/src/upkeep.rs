//! The broker's background tasks, each given only what it works on: the
//! retained consumer (keeps `retained.snapshot`), session expiry, and the
//! watch on the account store. `server` starts them and stops them with
//! one token at shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use tokio_util::sync::CancellationToken;
use tributary_accounts::Accounts;
use tributary_log::{Log, Offset};

use crate::cluster::Cluster;
use crate::persist::SessionFile;
use crate::retained::{Retained, RetainedSnapshot};
use crate::session::Registry;
use crate::shared::SharedGroups;

/// The log consumer that keeps the retained snapshot.
const RETAINED_CONSUMER: &str = "retained";
/// How often the retained snapshot is rewritten when it changed.
const RETAINED_SNAPSHOT_EVERY: Duration = Duration::from_secs(5);
/// How often offline sessions are checked for expiry.
const EXPIRY_CHECK_EVERY: Duration = Duration::from_secs(1);
/// How often the account store is checked for changes by admin commands.
const ACCOUNTS_CHECK_EVERY: Duration = Duration::from_secs(1);
/// Records read from the log per batch by the retained consumer.
const READ_BATCH: usize = 1024;

/// Follows the log from `applied` (where the retained map stands), applying
/// retained records, and snapshots the map so a restart replays only what
/// came after. On Kafka it tells the cluster how far it has applied.
pub(crate) async fn retained_consumer(
    log: Log,
    retained: Arc<Retained>,
    snapshot: Arc<RetainedSnapshot>,
    applied: Offset,
    cluster: Option<Arc<Cluster>>,
    stop: CancellationToken,
) {
    let mut pos = applied.max(log.end_offset());
    let report = |pos: Offset| {
        if let Some(cluster) = &cluster {
            cluster.retained_at.send_replace(pos);
        }
    };
    report(pos);
    let mut saved = applied;
    let mut last_save = Instant::now();
    loop {
        let stopping = tokio::select! {
            () = stop.cancelled() => true,
            () = log.wait_beyond(pos) => false,
            () = tokio::time::sleep(RETAINED_SNAPSHOT_EVERY) => false,
        };
        match log.read(pos, READ_BATCH).await {
            Ok(batch) => {
                for (offset, record) in &batch {
                    if record.retain {
                        retained.apply(*offset, record);
                    }
                    pos = Offset(offset.0 + 1);
                }
                report(pos);
            }
            Err(e) => tracing::error!(error = %e, "read the log for retained messages"),
        }
        if pos != saved && (stopping || last_save.elapsed() >= RETAINED_SNAPSHOT_EVERY) {
            let (map, file, at) = (retained.clone(), snapshot.clone(), pos);
            match tokio::task::spawn_blocking(move || file.save(&map, at))
                .await
                .map_err(std::io::Error::other)
            {
                Ok(Ok(())) => {
                    saved = at;
                    last_save = Instant::now();
                    if let Err(e) = log.commit_offset(RETAINED_CONSUMER, at) {
                        tracing::error!(error = %e, "commit the retained consumer offset");
                    }
                }
                Ok(Err(e)) | Err(e) => tracing::error!(error = %e, "save retained.snapshot"),
            }
        }
        if stopping {
            return;
        }
    }
}

/// Follows changes the admin commands make to the account store (they
/// run as separate processes) and disconnects revoked devices and services, and devices whose token
/// was rotated.
pub(crate) async fn watch_accounts(
    accounts: Arc<Accounts>,
    sessions: Arc<Registry>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(ACCOUNTS_CHECK_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let reloading = accounts.clone();
        match tokio::task::spawn_blocking(move || reloading.reload_if_changed()).await {
            Ok(Ok(true)) => {
                tracing::info!("accounts reloaded");
                let rotated = accounts.take_rotated();
                sessions.kick_where(|key| {
                    key.device()
                        .is_some_and(|d| !accounts.device_active(d) || rotated.contains(d))
                        || key.service().is_some_and(|s| !accounts.service_active(s))
                });
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "reload accounts.json"),
            Err(e) => tracing::error!(error = %e, "reload accounts.json"),
        }
    }
}

/// What session expiry works on.
pub(crate) struct ExpiryScope {
    pub(crate) sessions: Arc<Registry>,
    pub(crate) shared: Arc<SharedGroups>,
    pub(crate) session_file: Arc<SessionFile>,
    pub(crate) log: Log,
}

/// Drops offline sessions whose expiry interval has passed: their shared
/// subscriptions, their entry in `sessions.json` and their log cursor.
pub(crate) async fn expire_sessions(scope: ExpiryScope, stop: CancellationToken) {
    let mut tick = tokio::time::interval(EXPIRY_CHECK_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        for (client_id, shared) in scope.sessions.expire(Instant::now()) {
            for key in shared {
                scope.shared.release(&key);
            }
            tracing::info!(client_id = %client_id, "session expired");
            let file = scope.session_file.clone();
            let id = client_id.clone();
            let saved = tokio::task::spawn_blocking(move || file.update(&id, None)).await;
            if !matches!(saved, Ok(Ok(()))) {
                tracing::error!(client_id = %client_id, "remove an expired session from sessions.json");
            }
            if let Err(e) = scope.log.remove_consumer(&client_id.consumer_name()) {
                tracing::error!(client_id = %client_id, error = %e, "remove an expired session's cursor");
            }
        }
    }
}
