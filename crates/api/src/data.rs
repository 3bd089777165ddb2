//! The caller's data from the store: measurements, dead letters, export.
//! The owner of every store call is the authenticated caller; no request
//! parameter can name another.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::Serialize;
use tributary_archive::parquet_file::ParquetWriter;
use tributary_store::{Row, Store};

use crate::auth::Owner;
use crate::error::{store_error, ApiError, Result};
use crate::ApiState;

/// Points per measurements request unless `limit` says otherwise.
pub const DEFAULT_POINTS: usize = 1_000;
/// The most points one measurements request may ask for.
pub const MAX_POINTS: usize = 10_000;
/// Dead letters per request unless `limit` says otherwise.
pub const DEFAULT_DEAD_LETTERS: usize = 100;
/// The most dead letters one request may ask for.
pub const MAX_DEAD_LETTERS: usize = 1_000;
/// Payload bytes of one dead letter shown in a list: a payload can be as
/// large as an MQTT packet (1 MiB by default), and a list of 1,000 of them
/// must not make a gigabyte answer. The rest is cut (`truncated`, with the
/// whole size in `payload_bytes`).
pub const MAX_DEAD_LETTER_PAYLOAD: usize = 4 * 1024;
/// Rows per store call while exporting.
pub(crate) const EXPORT_PAGE: usize = 1_000;
/// The CSV export's first line: the columns of [`csv_row`].
pub(crate) const CSV_HEADER: &str =
    "device,message_id,seq,name,unit,time_ms,value,text,bool,data,sum\r\n";

/// The query string, checked: each endpoint names the parameters it knows,
/// and any other is refused (a typo should not silently do nothing).
pub(crate) struct Params(HashMap<String, String>);

impl Params {
    pub(crate) fn new(raw: HashMap<String, String>, known: &[&str]) -> Result<Params> {
        if let Some(unknown) = raw.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(ApiError::UnknownParam(unknown.chars().take(64).collect()));
        }
        Ok(Params(raw))
    }

    /// An optional integer parameter (a cursor such as `before`).
    pub(crate) fn opt_i64(&self, name: &'static str) -> Result<Option<i64>> {
        self.0
            .get(name)
            .map(|v| {
                v.parse()
                    .map_err(|_| ApiError::bad_param(name, "must be an integer"))
            })
            .transpose()
    }

    /// A parameter as given.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub(crate) fn i64(&self, name: &'static str) -> Result<Option<i64>> {
        self.0
            .get(name)
            .map(|v| {
                v.parse().map_err(|_| {
                    ApiError::bad_param(name, "must be an integer (Unix milliseconds)")
                })
            })
            .transpose()
    }

    /// The required `from` (inclusive) and `to` (exclusive), Unix milliseconds, `to` not
    /// before `from`.
    pub(crate) fn range(&self) -> Result<(i64, i64)> {
        let from_ms = self
            .i64("from")?
            .ok_or_else(|| ApiError::bad_param("from", "is required (Unix milliseconds)"))?;
        let to_ms = self
            .i64("to")?
            .ok_or_else(|| ApiError::bad_param("to", "is required (Unix milliseconds)"))?;
        if to_ms < from_ms {
            return Err(ApiError::bad_param("to", "must not be before 'from'"));
        }
        Ok((from_ms, to_ms))
    }

    /// An optional integer in `range`, `default` when absent.
    pub(crate) fn int_in(
        &self,
        name: &'static str,
        range: std::ops::RangeInclusive<i64>,
        default: i64,
    ) -> Result<i64> {
        let Some(value) = self.0.get(name) else {
            return Ok(default);
        };
        match value.parse::<i64>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(ApiError::bad_param(
                name,
                format!(
                    "must be an integer from {} to {}",
                    range.start(),
                    range.end()
                ),
            )),
        }
    }

    pub(crate) fn limit(&self, default: usize, max: usize) -> Result<usize> {
        let Some(value) = self.0.get("limit") else {
            return Ok(default);
        };
        match value.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_param(
                "limit",
                format!("must be an integer from 1 to {max}"),
            )),
        }
    }
}

/// A point as sent: `data` in base64url.
#[derive(Serialize)]
pub(crate) struct PointView {
    name: String,
    unit: Option<String>,
    time_ms: i64,
    avg: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    count: u64,
    device: Option<String>,
    text: Option<String>,
    bool: Option<bool>,
    data: Option<String>,
}

/// `GET /api/v1/measurements?from=&to=&names=&bucket=&limit=`.
pub(crate) async fn measurements(
    State(state): State<ApiState>,
    Owner(owner): Owner,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<Json<Vec<PointView>>> {
    let params = Params::new(raw, &["from", "to", "names", "bucket", "limit"])?;
    let (from_ms, to_ms) = params.range()?;
    let bucket_ms = params.i64("bucket")?;
    if let Some(bucket) = bucket_ms {
        if !(1..=tributary_store::MAX_ABS_TIME_MS).contains(&bucket) {
            return Err(ApiError::bad_param(
                "bucket",
                "must be a positive number of milliseconds",
            ));
        }
    }
    let names = params
        .0
        .get("names")
        .map(|n| {
            n.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let query = tributary_store::Query {
        owner,
        from_ms,
        to_ms,
        names,
        bucket_ms,
        limit: params.limit(DEFAULT_POINTS, MAX_POINTS)?,
    };
    let points = state.inner.store.query(&query).await.map_err(store_error)?;
    Ok(Json(points.into_iter().map(PointView::from).collect()))
}

impl From<tributary_store::Point> for PointView {
    fn from(p: tributary_store::Point) -> PointView {
        PointView {
            name: p.name,
            unit: p.unit,
            time_ms: p.time_ms,
            avg: p.avg,
            min: p.min,
            max: p.max,
            count: p.count,
            device: p.device,
            text: p.text,
            bool: p.bool,
            data: p.data.map(|d| URL_SAFE_NO_PAD.encode(d)),
        }
    }
}

/// `GET /api/v1/summary`: each numeric measurement of the caller with its
/// latest value (the dashboard's overview).
pub(crate) async fn summary(
    State(state): State<ApiState>,
    Owner(owner): Owner,
) -> Result<Json<Vec<serde_json::Value>>> {
    let names = state
        .inner
        .store
        .summary(&owner)
        .await
        .map_err(store_error)?;
    Ok(Json(
        names
            .into_iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.name,
                    "unit": s.unit,
                    "latest_value": s.latest_value,
                    "latest_time_ms": s.latest_time_ms,
                    "device": s.device,
                    "count": s.count,
                })
            })
            .collect(),
    ))
}

/// `GET /api/v1/dead-letters?limit=`.
pub(crate) async fn dead_letters(
    State(state): State<ApiState>,
    Owner(owner): Owner,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<Json<Vec<serde_json::Value>>> {
    let params = Params::new(raw, &["limit"])?;
    let limit = params.limit(DEFAULT_DEAD_LETTERS, MAX_DEAD_LETTERS)?;
    let letters = state
        .inner
        .store
        .dead_letters(&owner, limit, MAX_DEAD_LETTER_PAYLOAD)
        .await
        .map_err(store_error)?;
    Ok(Json(
        letters
            .into_iter()
            .map(|listed| {
                let l = listed.letter;
                let mut v = serde_json::json!({
                    "device": l.device,
                    "message_id": l.message_id,
                    "topic": l.topic,
                    "received_ms": l.received_ms,
                    "reason": l.reason,
                    "payload_bytes": listed.payload_bytes,
                    "truncated": listed.payload_bytes > MAX_DEAD_LETTER_PAYLOAD as u64,
                });
                // The store cut it to MAX_DEAD_LETTER_PAYLOAD bytes already.
                let payload = l.payload;
                let text = match String::from_utf8(payload) {
                    // Cut inside a character: that character goes.
                    Err(e) if e.utf8_error().error_len().is_none() => {
                        let valid = e.utf8_error().valid_up_to();
                        let mut bytes = e.into_bytes();
                        bytes.truncate(valid);
                        String::from_utf8(bytes)
                    }
                    other => other,
                };
                match text {
                    Ok(text) => v["payload"] = text.into(),
                    Err(e) => {
                        v["payload"] = STANDARD.encode(e.as_bytes()).into();
                        v["encoding"] = "base64".into();
                    }
                }
                v
            })
            .collect(),
    ))
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Senml,
    Csv,
    Parquet,
}

/// `GET /api/v1/export?format=senml|csv|parquet`: every measurement of the
/// caller, streamed page by page. A store failure after the first page
/// can only cut the response short (the status is already sent); it is
/// logged.
pub(crate) async fn export(
    State(state): State<ApiState>,
    Owner(owner): Owner,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<Response> {
    let params = Params::new(raw, &["format"])?;
    let format = match params.0.get("format").map(String::as_str) {
        None | Some("senml") => Format::Senml,
        Some("csv") => Format::Csv,
        Some("parquet") => Format::Parquet,
        Some(_) => {
            return Err(ApiError::bad_param(
                "format",
                "must be senml, csv or parquet",
            ))
        }
    };
    // The first page before the status, so that a failing store is a 503.
    let store = state.inner.store.clone();
    let first = store
        .export(&owner, None, EXPORT_PAGE)
        .await
        .map_err(store_error)?;
    let parquet = match format {
        Format::Parquet => Some(ParquetWriter::new().map_err(|e| {
            tracing::error!(error = %e, "export: start a Parquet file");
            ApiError::Unavailable("the export failed; the server log has the cause".into())
        })?),
        _ => None,
    };
    let pages = futures_util::stream::unfold(
        Some(Pager {
            store,
            owner,
            page: Some(first),
            written: 0,
            started: false,
            format,
            parquet,
        }),
        |pager| async move {
            let mut pager = pager?;
            let chunk = pager.next_chunk().await;
            match chunk {
                Some(Ok(bytes)) => Some((Ok::<_, std::io::Error>(bytes), Some(pager))),
                Some(Err(e)) => Some((Err(e), None)),
                None => None,
            }
        },
    );
    let content_type = match format {
        Format::Senml => "application/senml+json",
        Format::Csv => "text/csv; charset=utf-8",
        Format::Parquet => "application/vnd.apache.parquet",
    };
    let filename = match format {
        Format::Senml => "attachment; filename=\"tributary-export.json\"",
        Format::Csv => "attachment; filename=\"tributary-export.csv\"",
        Format::Parquet => "attachment; filename=\"tributary-export.parquet\"",
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_DISPOSITION, filename),
        ],
        // Fused: a layer (gzip) may poll again after the end, which `unfold` forbids.
        Body::from_stream(futures_util::StreamExt::fuse(pages)),
    )
        .into_response())
}

struct Pager {
    store: Arc<Store>,
    owner: String,
    /// The page to write next; `None` once the last was written.
    page: Option<Vec<Row>>,
    /// Rows written so far (for the SenML commas).
    written: u64,
    /// Whether the header (`[` or the CSV header) was written.
    started: bool,
    format: Format,
    /// Parquet: the file being written, one row group per page.
    parquet: Option<ParquetWriter>,
}

impl Pager {
    /// The next piece of the body, `None` after the end.
    async fn next_chunk(&mut self) -> Option<std::io::Result<Bytes>> {
        if self.format == Format::Parquet {
            return self.next_parquet_chunk().await;
        }
        let page = self.page.take()?;
        let mut out = String::new();
        if !self.started {
            self.started = true;
            match self.format {
                Format::Senml => out.push('['),
                Format::Csv => out.push_str(CSV_HEADER),
                Format::Parquet => {} // next_parquet_chunk
            }
        }
        for row in &page {
            match self.format {
                Format::Senml => {
                    if self.written > 0 {
                        out.push(',');
                    }
                    out.push_str(&senml(row).to_string());
                }
                Format::Csv => csv_row(&mut out, row),
                Format::Parquet => {} // next_parquet_chunk
            }
            self.written += 1;
        }
        if let Err(e) = self.fetch_after(&page).await {
            return Some(Err(e));
        }
        if self.page.is_none() && self.format == Format::Senml {
            out.push(']');
        }
        Some(Ok(Bytes::from(out)))
    }
}

impl Pager {
    /// Reads the page after `page` into `self.page` (none after a short page).
    async fn fetch_after(&mut self, page: &[Row]) -> std::io::Result<()> {
        if page.len() < EXPORT_PAGE {
            return Ok(());
        }
        let last = page
            .last()
            .map(|r| (r.time_ms, r.message_id.clone(), r.seq));
        match self.store.export(&self.owner, last, EXPORT_PAGE).await {
            Ok(next) if next.is_empty() => Ok(()),
            Ok(next) => {
                self.page = Some(next);
                Ok(())
            }
            Err(error) => {
                tracing::error!(%error, owner = %self.owner, "export: read store; response cut short");
                Err(std::io::Error::other("export failed"))
            }
        }
    }

    /// Parquet: a page becomes a row group; after the last, the footer.
    async fn next_parquet_chunk(&mut self) -> Option<std::io::Result<Bytes>> {
        let writer = self.parquet.as_mut()?;
        let Some(page) = self.page.take() else {
            let writer = self.parquet.take()?;
            return Some(writer.finish().map(Bytes::from).map_err(parquet_error));
        };
        if let Err(e) = writer.write(&page) {
            return Some(Err(parquet_error(e)));
        }
        let bytes = writer.take();
        if let Err(e) = self.fetch_after(&page).await {
            return Some(Err(e));
        }
        Some(Ok(Bytes::from(bytes)))
    }
}

fn parquet_error(error: tributary_archive::Error) -> std::io::Error {
    tracing::error!(%error, "export: write Parquet; response cut short");
    std::io::Error::other("export failed")
}

/// One row as a SenML record (RFC 8428): absolute name and time (seconds).
pub(crate) fn senml(row: &Row) -> serde_json::Value {
    let mut record = serde_json::json!({ "n": row.name, "t": row.time_ms as f64 / 1000.0 });
    if let Some(unit) = &row.unit {
        record["u"] = unit.as_str().into();
    }
    if let Some(value) = row.value {
        record["v"] = value.into();
    }
    if let Some(text) = &row.text {
        record["vs"] = text.as_str().into();
    }
    if let Some(b) = row.bool {
        record["vb"] = b.into();
    }
    if let Some(data) = &row.data {
        record["vd"] = URL_SAFE_NO_PAD.encode(data).into();
    }
    if let Some(sum) = row.sum {
        record["s"] = sum.into();
    }
    record
}

/// One CSV line (RFC 4180: fields with a comma, quote or line break are
/// quoted, quotes doubled).
pub(crate) fn csv_row(out: &mut String, row: &Row) {
    let opt = |v: Option<String>| v.unwrap_or_default();
    let fields = [
        row.device.clone(),
        row.message_id.clone(),
        row.seq.to_string(),
        row.name.clone(),
        opt(row.unit.clone()),
        row.time_ms.to_string(),
        opt(row.value.map(|v| v.to_string())),
        opt(row.text.clone()),
        opt(row.bool.map(|b| b.to_string())),
        opt(row.data.as_ref().map(|d| URL_SAFE_NO_PAD.encode(d))),
        opt(row.sum.map(|v| v.to_string())),
    ];
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if field.contains([',', '"', '\r', '\n']) {
            out.push('"');
            out.push_str(&field.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(field);
        }
    }
    out.push_str("\r\n");
}
