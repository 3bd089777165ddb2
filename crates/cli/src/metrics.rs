//! What `serve` shows on the HTTP API's `/metrics` besides the API's own
//! request counter: the broker's and the pipeline's figures, copied once a
//! second from their atomics (docs/api.md lists them).
//!
//! The `*_per_second` gauges are the change of a counter over the last
//! tick, for people and the dashboard; Prometheus should compute rates
//! itself with `rate()` over the `*_total` counters, which survive missed
//! scrapes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tributary_broker::Broker;

/// How often the figures are copied (and the per-second gauges' window).
const EVERY: Duration = Duration::from_secs(1);

pub const MQTT_CONNECTIONS: &str = "tributary_mqtt_connections";
pub const PASSWORD_CHECKS_TOTAL: &str = "tributary_password_checks_total";
pub const PASSWORD_CHECKS_WAITED_TOTAL: &str = "tributary_password_checks_waited_total";
pub const PASSWORD_CHECKS_PEAK: &str = "tributary_password_checks_peak";
pub const MQTT_RECEIVED_TOTAL: &str = "tributary_mqtt_messages_received_total";
pub const MQTT_SENT_TOTAL: &str = "tributary_mqtt_messages_sent_total";
pub const MQTT_SESSION_RECORDS_SKIPPED_TOTAL: &str = "tributary_mqtt_session_records_skipped_total";
pub const MQTT_WILLS_REFUSED_TOTAL: &str = "tributary_mqtt_wills_refused_total";
pub const MQTT_RECEIVED_PER_SECOND: &str = "tributary_mqtt_messages_received_per_second";
pub const MQTT_SENT_PER_SECOND: &str = "tributary_mqtt_messages_sent_per_second";
pub const LOG_END_OFFSET: &str = "tributary_log_end_offset";
pub const LOG_APPEND_SECONDS: &str = "tributary_log_append_seconds";
pub const KAFKA_REACHABLE: &str = "tributary_kafka_reachable";
pub const PIPELINE_LAG: &str = "tributary_pipeline_consumer_lag";
pub const PIPELINE_RECORDS_TOTAL: &str = "tributary_pipeline_records_total";
pub const PIPELINE_DEAD_LETTERS_TOTAL: &str = "tributary_pipeline_dead_letters_total";
pub const PIPELINE_SKIPPED_TOTAL: &str = "tributary_pipeline_records_skipped_total";
pub const PIPELINE_ALREADY_STORED_TOTAL: &str = "tributary_pipeline_rows_already_stored_total";
pub const STORE_ROWS_TOTAL: &str = "tributary_store_rows_written_total";
pub const STORE_ROWS_PER_SECOND: &str = "tributary_store_rows_written_per_second";
pub const ARCHIVE_ROWS_TOTAL: &str = "tributary_archive_rows_written_total";
pub const ARCHIVE_FILES_TOTAL: &str = "tributary_archive_files_written_total";
pub const ARCHIVE_BYTES_TOTAL: &str = "tributary_archive_bytes_written_total";
pub const ARCHIVE_FAILURES_TOTAL: &str = "tributary_archive_write_failures_total";
pub const ACTIVITY_WINDOWS_TOTAL: &str = "tributary_activity_windows_total";
pub const ACTIVITY_SEGMENT_WRITES_TOTAL: &str = "tributary_activity_segment_writes_total";
pub const ACTIVITY_DEAD_LETTERS_TOTAL: &str = "tributary_activity_dead_letters_total";
pub const MOTION_ROWS_NOT_STORED_TOTAL: &str = "tributary_pipeline_motion_rows_not_stored_total";

/// The counters behind the per-second gauges, read at one tick.
#[derive(Debug, Clone, Copy)]
struct Totals {
    at: Instant,
    received: u64,
    sent: u64,
    rows: u64,
}

/// Copies the broker's and the pipeline's figures into `/metrics` every
/// second until `stop`.
pub async fn publish(
    broker: Arc<Broker>,
    sinks: crate::pipeline::SinkStats,
    api: tributary_api::ApiState,
    stop: CancellationToken,
) {
    let (pipeline, archive, activity) = (&sinks.store, &sinks.archive, &sinks.activity);
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<Totals> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let metrics = api.metrics();
        let stats = broker.stats();
        let now = Totals {
            at: Instant::now(),
            received: stats.messages_received(),
            sent: stats.messages_sent(),
            rows: pipeline.measurements.load(Ordering::Relaxed),
        };
        metrics.set_gauge(
            MQTT_CONNECTIONS,
            "Open MQTT connections.",
            broker.connections() as f64,
        );
        let checks = broker.accounts().check_stats();
        metrics.set_counter(
            PASSWORD_CHECKS_TOTAL,
            "Argon2 checks of passwords and tokens run (MQTT and the HTTP login).",
            checks.checked as u64,
        );
        metrics.set_counter(
            PASSWORD_CHECKS_WAITED_TOTAL,
            "Argon2 checks that waited for one of limits.max_password_checks permits.",
            checks.waited as u64,
        );
        metrics.set_gauge(
            PASSWORD_CHECKS_PEAK,
            "The most Argon2 checks that ever ran at once (at most limits.max_password_checks).",
            checks.peak as f64,
        );
        metrics.set_counter(
            MQTT_RECEIVED_TOTAL,
            "PUBLISH packets accepted from clients and handed to the log.",
            now.received,
        );
        metrics.set_counter(
            MQTT_SENT_TOTAL,
            "PUBLISH packets sent to subscribers.",
            now.sent,
        );
        metrics.set_counter(
            MQTT_SESSION_RECORDS_SKIPPED_TOTAL,
            "Log records sessions lost to retention before reading them (away or slow past log.max_bytes or max_age).",
            stats.records_skipped_by_sessions(),
        );
        metrics.set_counter(
            MQTT_WILLS_REFUSED_TOTAL,
            "Retained wills not published: their owner's retained messages were at limits.max_retained_per_owner or max_retained_bytes_per_owner.",
            stats.wills_refused(),
        );
        let rate = |of: fn(&Totals) -> u64| {
            last.map_or(0.0, |before| {
                per_second(of(&before), of(&now), now.at - before.at)
            })
        };
        metrics.set_gauge(
            MQTT_RECEIVED_PER_SECOND,
            "PUBLISH packets accepted per second over the last second (for people; use rate() over the _total counter).",
            rate(|t| t.received),
        );
        metrics.set_gauge(
            MQTT_SENT_PER_SECOND,
            "PUBLISH packets sent per second over the last second (for people; use rate() over the _total counter).",
            rate(|t| t.sent),
        );
        metrics.set_gauge(
            LOG_END_OFFSET,
            "Offset the next record appended to the local log gets.",
            broker.log().end_offset().0 as f64,
        );
        let append = stats.append_latency();
        metrics.set_histogram(
            LOG_APPEND_SECONDS,
            "Seconds from handing a publish to the log (or Kafka) until it is durable (or acknowledged by Kafka).",
            tributary_api::Histogram {
                bounds: append.bounds_seconds,
                counts: append.counts,
                sum: append.sum_seconds,
            },
        );
        if let Some(reachable) = broker.kafka_reachable() {
            metrics.set_gauge(
                KAFKA_REACHABLE,
                "1 while Kafka answers, 0 while every Kafka broker is unreachable (acknowledgements wait).",
                if reachable { 1.0 } else { 0.0 },
            );
        }
        metrics.set_gauge(
            PIPELINE_LAG,
            "Log records the pipeline has not read yet (refreshed about once a second; 0 when caught up).",
            pipeline.lag.load(Ordering::Relaxed) as f64,
        );
        // Counters copied as they are: (name, help, atomic).
        let counters = [
            (
                PIPELINE_RECORDS_TOTAL,
                "Log records the pipeline is done with (stored, dead-lettered or skipped).",
                &pipeline.records,
            ),
            (
                PIPELINE_DEAD_LETTERS_TOTAL,
                "Invalid SenML messages the pipeline made dead letters.",
                &pipeline.dead_letters,
            ),
            (
                PIPELINE_SKIPPED_TOTAL,
                "Log records that are no measurements (not SenML, or anonymous).",
                &pipeline.skipped,
            ),
            (
                PIPELINE_ALREADY_STORED_TOTAL,
                "Measurement rows the store had already (the log read again).",
                &pipeline.already_stored,
            ),
            (
                ARCHIVE_ROWS_TOTAL,
                "Measurement rows written to the Parquet archive.",
                &archive.rows,
            ),
            (
                ARCHIVE_FILES_TOTAL,
                "Parquet files written to the archive.",
                &archive.files,
            ),
            (
                ARCHIVE_BYTES_TOTAL,
                "Bytes of Parquet written to the archive.",
                &archive.bytes,
            ),
            (
                ARCHIVE_FAILURES_TOTAL,
                "Archive writes the storage refused (each batch is retried until written).",
                &archive.failures,
            ),
            (
                ACTIVITY_WINDOWS_TOTAL,
                "Motion windows (2.56 s) the behaviour model classified.",
                &activity.windows,
            ),
            (
                ACTIVITY_SEGMENT_WRITES_TOTAL,
                "Activity segments written or extended in the store.",
                &activity.segment_writes,
            ),
            (
                ACTIVITY_DEAD_LETTERS_TOTAL,
                "Motion packs the behaviour model refused (dead letters with the reason).",
                &activity.dead_letters,
            ),
            (
                MOTION_ROWS_NOT_STORED_TOTAL,
                "Raw motion rows left to the archive ([model] store_motion = false).",
                &pipeline.motion_not_stored,
            ),
        ];
        for (name, help, value) in counters {
            metrics.set_counter(name, help, value.load(Ordering::Relaxed));
        }
        metrics.set_counter(
            STORE_ROWS_TOTAL,
            "New measurement rows the store accepted.",
            now.rows,
        );
        metrics.set_gauge(
            STORE_ROWS_PER_SECOND,
            "Measurement rows written per second over the last second (for people; use rate() over the _total counter).",
            rate(|t| t.rows),
        );
        last = Some(now);
    }
}

/// The change of a counter per second; 0 over no time.
fn per_second(before: u64, after: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds <= 0.0 {
        return 0.0;
    }
    after.saturating_sub(before) as f64 / seconds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_second_is_the_change_over_the_elapsed_time() {
        assert_eq!(per_second(100, 400, Duration::from_secs(1)), 300.0);
        assert_eq!(per_second(100, 400, Duration::from_millis(1500)), 200.0);
        assert_eq!(per_second(100, 100, Duration::from_secs(1)), 0.0);
        assert_eq!(per_second(100, 400, Duration::ZERO), 0.0);
    }
}
