//! The node's two rights tasks (docs/consent.md): following the store's
//! consents into the broker's table, and writing the broker's audit counts
//! into the store; and the broker's retained messages as the HTTP API's
//! erasures clear them (docs/erasure.md).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tributary_rights::audit::{Aggregator, Entry};
use tributary_rights::consent::{Grant, LiveConsents};
use tributary_store::{AuditRecord, Store};

/// How often a node asks the store whether consents changed: one read of one
/// row, so a revocation on any node reaches every node's deliveries within
/// this plus one reload (docs/consent.md, "the 1 s bound").
pub const CONSENT_POLL: Duration = Duration::from_millis(200);

/// How long a node goes on with its table while the store does not answer;
/// after that it empties the table (services receive nothing) rather than
/// deliver under consents that may have been revoked meanwhile.
const STALE_AFTER: Duration = Duration::from_millis(800);

/// The most granted consents a node holds.
pub const MAX_LIVE_CONSENTS: usize = 1_000_000;

/// How often the audit writer empties the broker's counts into the store.
pub const AUDIT_FLUSH: Duration = Duration::from_secs(1);

/// Follows the store's consents into `live` until `stop`.
pub async fn follow_consents(store: Arc<Store>, live: Arc<LiveConsents>, stop: CancellationToken) {
    let mut seen: Option<i64> = None;
    let mut last_ok = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(CONSENT_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match reload_if_changed(&store, &live, seen).await {
            Ok(version) => {
                seen = Some(version);
                last_ok = tokio::time::Instant::now();
            }
            Err(e) => {
                if last_ok.elapsed() >= STALE_AFTER && seen.is_some() {
                    tracing::error!(error = %e, "consents unreadable: services receive nothing until the store answers");
                    live.replace([]);
                    seen = None;
                }
            }
        }
    }
}

async fn reload_if_changed(
    store: &Store,
    live: &LiveConsents,
    seen: Option<i64>,
) -> tributary_store::Result<i64> {
    let version = store.consent_version().await?;
    if seen == Some(version) {
        return Ok(version);
    }
    let granted = store.granted_consents(MAX_LIVE_CONSENTS).await?;
    if granted.len() == MAX_LIVE_CONSENTS {
        tracing::warn!(
            max = MAX_LIVE_CONSENTS,
            "more granted consents than a node holds: the newest beyond it are not delivered under"
        );
    }
    let count = granted.len();
    live.replace(granted.into_iter().map(|c| {
        (
            c.service,
            c.owner,
            Grant {
                id: c.id,
                types: c.types.into_iter().collect(),
            },
        )
    }));
    tracing::debug!(version, granted = count, "consents reloaded");
    Ok(version)
}

/// Writes the broker's audit counts into the store about every
/// [`AUDIT_FLUSH`] until `stop`; what a write could not take goes back into
/// the aggregator for the next try. [`flush_audit`] writes the rest at
/// shutdown.
pub async fn write_audit(store: Arc<Store>, audit: Arc<Aggregator>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(AUDIT_FLUSH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = flush_audit(&store, &audit).await {
            tracing::warn!(error = %e, "audit entries not written yet; retrying (deliveries to services wait when too many are pending)");
        }
    }
}

/// Writes what `audit` counted; on failure puts it back and says why.
pub async fn flush_audit(store: &Store, audit: &Aggregator) -> tributary_store::Result<()> {
    let entries = audit.take();
    if entries.is_empty() {
        return Ok(());
    }
    let records: Vec<AuditRecord> = entries.iter().map(record).collect();
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis()),
    )
    .unwrap_or(i64::MAX);
    if let Err(e) = store.append_audit(&records, now).await {
        audit.restore(entries);
        return Err(e);
    }
    Ok(())
}

fn record(e: &Entry) -> AuditRecord {
    AuditRecord {
        id: 0,
        owner: e.owner.clone(),
        actor_kind: e.actor_kind.as_str().into(),
        actor: e.actor.clone(),
        channel: e.channel.clone(),
        detail: e.detail.clone(),
        device: e.device.clone(),
        consent_id: e.consent_id.clone(),
        count: e.count,
        first_ms: e.first_ms,
        last_ms: e.last_ms,
    }
}

/// The broker's retained messages, which the HTTP API's erasures clear.
pub struct BrokerRetained(pub Arc<tributary_broker::Broker>);

impl tributary_api::RetainedMessages for BrokerRetained {
    fn clear(
        &self,
        owner: &str,
        device: Option<&str>,
        from_ms: i64,
        to_ms: i64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, String>> + Send + '_>> {
        let scope = tributary_broker::RetainedScope {
            owner: owner.to_owned(),
            device: device.map(str::to_owned),
            from_ms,
            to_ms,
        };
        Box::pin(async move {
            self.0
                .clear_retained(&scope)
                .await
                .map_err(|e| e.to_string())
        })
    }
}
