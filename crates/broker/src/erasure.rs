//! An owner's erasure reaching the retained messages (docs/erasure.md):
//! each retained message it covers is cleared the way MQTT clears one, by
//! a retained PUBLISH with an empty payload on its topic. Appended like any
//! publish, the clearing reaches every node's retained map, their
//! snapshots and, on Kafka, the cluster's retained table; a node that
//! replays the log later clears it again.

use std::sync::Arc;

use tributary_log::Record;

use crate::broker::Broker;
use crate::durable::Durable;
use crate::retained::RetainedScope;
use crate::{Error, Result};

/// Who the clearing records say sent them (their `client_id`).
const ERASER: &str = "$tributary/erasure";

impl Broker {
    /// Whether an erasure covers `record` (its device, at its receive
    /// time), so that delivery does not send it again: the log still holds
    /// it, sealed under the owner's live key.
    pub(crate) fn erased(&self, record: &Record) -> bool {
        self.erasures.get().is_some_and(|erasures| {
            erasures.covers_record(&record.owner, &record.device, record.receive_time_ms)
        })
    }

    /// Clears the retained messages `scope` covers; returns how many. Each
    /// is durable (in the log, or in Kafka) when this returns. Also wipes
    /// the plaintexts this node keeps of what it sealed lately
    /// (plaintexts.rs), so none of the erased owner's stays in memory.
    pub async fn clear_retained(&self, scope: &RetainedScope) -> Result<u64> {
        if let Some(recent) = &self.recent_plaintexts {
            recent.wipe();
        }
        let topics = self.retained.topics_of(scope);
        if topics.is_empty() {
            return Ok(0);
        }
        let records: Vec<Record> = topics
            .into_iter()
            .map(|topic| Record {
                receive_time_ms: crate::persist::unix_ms(),
                topic,
                qos: 1,
                retain: true,
                properties: Default::default(),
                // Empty, so never sealed: the clearing must read as one on
                // every path (retained map, Kafka's retained table, sinks).
                payload: Default::default(),
                client_id: ERASER.to_owned(),
                message_id: self.next_message_id(),
                owner: scope.owner.clone(),
                device: scope.device.clone().unwrap_or_default(),
            })
            .collect();
        let cleared = records.len() as u64;
        let durable = self
            .durability
            .store(records.clone())
            .await
            .map_err(|e| Error::Erase(e.to_string()))?;
        match durable {
            Durable::InLog(offsets) => {
                for (offset, record) in offsets.into_iter().zip(records) {
                    self.retained.apply(offset, &Arc::new(record));
                }
            }
            // The retained map learns them from the local log, which Kafka feeds.
            Durable::InKafka => {}
        }
        tracing::info!(owner = %scope.owner, device = ?scope.device, cleared, "erasure cleared retained messages");
        Ok(cleared)
    }
}
