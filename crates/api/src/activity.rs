//! `/api/v1/activity`: what the behaviour model concluded the caller's
//! devices were doing (its segments, as a timeline or as minutes per day),
//! and the caller's switch for the model. As in `data.rs`, the owner of
//! every store call is the authenticated caller; no request parameter can
//! name another.

use std::collections::{BTreeMap, HashMap};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use tributary_store::{ActivitySegment, MAX_ABS_TIME_MS};

use crate::auth::Owner;
use crate::data::Params;
use crate::error::store_error;
use crate::error::{ApiError, Result};
use crate::ApiState;

/// Segments per timeline request unless `limit` says otherwise.
pub const DEFAULT_SEGMENTS: usize = 1_000;
/// The most segments one timeline request may ask for.
pub const MAX_SEGMENTS: usize = 10_000;
/// The longest range a daily summary may cover, in days.
pub const MAX_DAILY_DAYS: i64 = 366;
/// The most segments one daily summary adds up: they are all in memory at
/// once (a few hundred bytes each). Beyond it the answer says `truncated`.
pub const MAX_DAILY_SEGMENTS: usize = 100_000;
/// UTC offsets in use run from −14:00 to +14:00.
const MAX_OFFSET_MINUTES: i64 = 14 * 60;
const DAY_MS: i64 = 86_400_000;
const MINUTE_MS: f64 = 60_000.0;

/// A segment as sent: its times both as Unix milliseconds (like every
/// other endpoint) and as RFC 3339 in UTC, for people reading the JSON.
#[derive(Serialize)]
pub(crate) struct SegmentView {
    device: String,
    activity: String,
    start: String,
    end: String,
    start_ms: i64,
    end_ms: i64,
    confidence: f64,
    windows: u32,
    model_version: String,
}

#[derive(Serialize)]
pub(crate) struct Timeline {
    segments: Vec<SegmentView>,
    /// More segments overlap the range than were sent.
    truncated: bool,
}

/// `GET /api/v1/activity?from=&to=&limit=`.
pub(crate) async fn timeline(
    State(state): State<ApiState>,
    Owner(owner): Owner,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<Json<Timeline>> {
    let params = Params::new(raw, &["from", "to", "limit"])?;
    let (from_ms, to_ms) = params.range()?;
    let limit = params.limit(DEFAULT_SEGMENTS, MAX_SEGMENTS)?;
    // One more than asked tells whether there is more.
    let mut segments = state
        .inner
        .store
        .activity_timeline(&owner, from_ms, to_ms, limit + 1)
        .await
        .map_err(store_error)?;
    let truncated = segments.len() > limit;
    segments.truncate(limit);
    Ok(Json(Timeline {
        segments: segments.into_iter().map(view).collect(),
        truncated,
    }))
}

pub(crate) fn view(s: ActivitySegment) -> SegmentView {
    SegmentView {
        start: rfc3339(s.start_ms),
        end: rfc3339(s.end_ms),
        device: s.device,
        activity: s.activity,
        start_ms: s.start_ms,
        end_ms: s.end_ms,
        confidence: s.confidence,
        windows: s.windows,
        model_version: s.model_version,
    }
}

/// RFC 3339 in UTC with milliseconds, e.g. `2026-12-05T07:30:00.000Z`.
pub(crate) fn rfc3339(time_ms: i64) -> String {
    let of_day = time_ms.rem_euclid(DAY_MS);
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}Z",
        tributary_archive::day(time_ms),
        of_day / 3_600_000,
        of_day / 60_000 % 60,
        of_day / 1_000 % 60,
        of_day % 1_000
    )
}

#[derive(Serialize)]
pub(crate) struct Day {
    /// The calendar day in the requested UTC offset, `YYYY-MM-DD`.
    date: String,
    /// Minutes per activity; activities without any are left out.
    minutes: BTreeMap<String, f64>,
}

#[derive(Serialize)]
pub(crate) struct Daily {
    days: Vec<Day>,
    /// The range holds more than [`MAX_DAILY_SEGMENTS`] segments: only the
    /// first ones (by start) were counted.
    truncated: bool,
}

/// `GET /api/v1/activity/daily?from=&to=&utc_offset_minutes=`.
pub(crate) async fn daily(
    State(state): State<ApiState>,
    Owner(owner): Owner,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<Json<Daily>> {
    let params = Params::new(raw, &["from", "to", "utc_offset_minutes"])?;
    let (from_ms, to_ms) = params.range()?;
    let offset_minutes = params.int_in(
        "utc_offset_minutes",
        -MAX_OFFSET_MINUTES..=MAX_OFFSET_MINUTES,
        0,
    )?;
    // Keeps the day arithmetic below inside i64; nothing is stored beyond.
    for (name, time_ms) in [("from", from_ms), ("to", to_ms)] {
        if time_ms.unsigned_abs() > MAX_ABS_TIME_MS.unsigned_abs() {
            return Err(ApiError::bad_param(
                name,
                format!("must be within ±{MAX_ABS_TIME_MS} (Unix milliseconds)"),
            ));
        }
    }
    if to_ms - from_ms > MAX_DAILY_DAYS * DAY_MS {
        return Err(ApiError::bad_param(
            "to",
            format!("must be at most {MAX_DAILY_DAYS} days after 'from'"),
        ));
    }
    let mut segments = state
        .inner
        .store
        .activity_timeline(&owner, from_ms, to_ms, MAX_DAILY_SEGMENTS + 1)
        .await
        .map_err(store_error)?;
    let truncated = segments.len() > MAX_DAILY_SEGMENTS;
    segments.truncate(MAX_DAILY_SEGMENTS);
    Ok(Json(Daily {
        days: minutes_per_day(&segments, from_ms, to_ms, offset_minutes * 60_000),
        truncated,
    }))
}

/// Every calendar day (in UTC + `offset_ms`) that `[from_ms, to_ms)` touches,
/// with the minutes of each activity in it: each segment clipped to the
/// range and cut at the local midnights. Segments that overlap (two
/// devices worn at once) each count in full.
fn minutes_per_day(
    segments: &[ActivitySegment],
    from_ms: i64,
    to_ms: i64,
    offset_ms: i64,
) -> Vec<Day> {
    if from_ms >= to_ms {
        return Vec::new();
    }
    // Days since 1970-01-01 in the local calendar.
    let day_of = |time_ms: i64| (time_ms + offset_ms).div_euclid(DAY_MS);
    let first = day_of(from_ms);
    // Whole milliseconds, turned into minutes once at the end: no rounding
    // builds up over many short segments.
    let mut days: Vec<BTreeMap<&str, i64>> =
        vec![BTreeMap::new(); (day_of(to_ms - 1) - first + 1) as usize];
    for s in segments {
        let (mut start, end) = (s.start_ms.max(from_ms), s.end_ms.min(to_ms));
        while start < end {
            let day = day_of(start);
            let cut = end.min((day + 1) * DAY_MS - offset_ms);
            *days[(day - first) as usize]
                .entry(s.activity.as_str())
                .or_default() += cut - start;
            start = cut;
        }
    }
    days.into_iter()
        .zip(first..)
        .map(|(ms, day)| Day {
            // Midnight UTC of day number `day` has that day's date.
            date: tributary_archive::day(day * DAY_MS),
            minutes: ms
                .into_iter()
                .map(|(activity, ms)| (activity.to_owned(), ms as f64 / MINUTE_MS))
                .collect(),
        })
        .collect()
}

/// The caller's switch for the behaviour model.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Settings {
    enabled: bool,
}

/// `GET /api/v1/activity/settings`.
pub(crate) async fn settings(
    State(state): State<ApiState>,
    Owner(owner): Owner,
) -> Result<Json<Settings>> {
    let enabled = state
        .inner
        .store
        .activity_enabled(&owner)
        .await
        .map_err(store_error)?;
    Ok(Json(Settings { enabled }))
}

/// `PUT /api/v1/activity/settings`: off stops new segments from being
/// written for the caller (the pipeline reads the switch about once a
/// second); the segments already stored stay.
pub(crate) async fn set_settings(
    State(state): State<ApiState>,
    Owner(owner): Owner,
    body: Result<Json<Settings>, JsonRejection>,
) -> Result<Json<Settings>> {
    let Json(settings) = body?;
    state
        .inner
        .store
        .set_activity_enabled(&owner, settings.enabled)
        .await
        .map_err(store_error)?;
    tracing::info!(%owner, enabled = settings.enabled, "behaviour model switched");
    Ok(Json(settings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(device: &str, start_ms: i64, end_ms: i64, activity: &str) -> ActivitySegment {
        ActivitySegment {
            owner: "ann".into(),
            device: device.into(),
            start_ms,
            end_ms,
            activity: activity.into(),
            confidence: 0.9,
            windows: 1,
            model_version: "v1".into(),
        }
    }

    fn summary(days: &[Day]) -> Vec<(&str, Vec<(&str, f64)>)> {
        days.iter()
            .map(|d| {
                let minutes = d.minutes.iter().map(|(a, m)| (a.as_str(), *m)).collect();
                (d.date.as_str(), minutes)
            })
            .collect()
    }

    #[test]
    fn times_are_rfc3339_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_796_549_430_123), "2026-12-06T09:30:30.123Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn days_are_cut_at_local_midnight_and_clipped_to_the_range() {
        // 2026-12-05T00:00Z
        let d0 = 20_792 * DAY_MS;
        let hour = 3_600_000;
        let segments = [
            // 22:00Z to 02:00Z the next day
            segment("watch", d0 + 22 * hour, d0 + 26 * hour, "sitting"),
            // overlaps the first, another device: counts too
            segment("phone", d0 + 23 * hour, d0 + 23 * hour + 90_000, "walking"),
        ];
        // UTC: 2 h and 1.5 min on the 5th, 2 h on the 6th.
        assert_eq!(
            summary(&minutes_per_day(&segments, d0, d0 + 2 * DAY_MS, 0)),
            [
                ("2026-12-05", vec![("sitting", 120.0), ("walking", 1.5)]),
                ("2026-12-06", vec![("sitting", 120.0)]),
            ]
        );
        // UTC+01:00: local midnight is 23:00Z, so 1 h on the 5th, 3 h and the walk on the 6th;
        // the range [00:00Z, 48:00Z) touches the 5th, 6th and 7th locally.
        assert_eq!(
            summary(&minutes_per_day(&segments, d0, d0 + 2 * DAY_MS, 3_600_000)),
            [
                ("2026-12-05", vec![("sitting", 60.0)]),
                ("2026-12-06", vec![("sitting", 180.0), ("walking", 1.5)]),
                ("2026-12-07", vec![]),
            ]
        );
        // UTC−05:00, range from 23:30Z: what lies before it (the walk) is not counted.
        let from = d0 + 23 * hour + 30 * 60_000;
        assert_eq!(
            summary(&minutes_per_day(
                &segments,
                from,
                d0 + DAY_MS + hour,
                -5 * 3_600_000
            )),
            [("2026-12-05", vec![("sitting", 90.0)])]
        );
        assert!(minutes_per_day(&segments, d0, d0, 0).is_empty());
    }
}
