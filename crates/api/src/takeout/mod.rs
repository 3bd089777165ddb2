//! `GET /api/v1/takeout`: everything an owner has, as one zip written while
//! it is sent (docs/takeout.md).
//!
//! The zip is a list of [`Part`]s, each written by one function that
//! starts one or more entries. A new kind of data is one more `Part`: its
//! path and description (for README.txt) and its writer in
//! [`Takeout::write_part`]. Memory stays bounded whatever the owner has:
//! measurements and segments are read from the store a page at a time and
//! each page is written before the next is read ([`stream`] says the rest).

mod fhir;
mod kinds;
mod omh;
mod pages;
mod rights;
mod running;
mod stream;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tributary_archive::parquet_file::ParquetWriter;
use tributary_store::Store;

pub(crate) use running::Running;

use self::pages::{RowPages, SegmentPages};
use self::stream::{Packing, ZipStream};
use crate::auth::{blocking, Owner};
use crate::data::{csv_row, senml, Params, CSV_HEADER};
use crate::devices::{with_last_seen, DeviceView};
use crate::error::{store_error, Result};
use crate::{unix_ms, ApiState};

/// The zip's parts, in the order written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Readme,
    Profile,
    Devices,
    MeasurementsSenml,
    MeasurementsCsv,
    MeasurementsParquet,
    OmhHeartRate,
    OmhStepCount,
    OmhPhysicalActivity,
    FhirBundle,
    ActivitySegments,
    Consents,
    Receipts,
    Audit,
    Packs,
}

const PARTS: [Part; 15] = [
    Part::Readme,
    Part::Profile,
    Part::Devices,
    Part::MeasurementsSenml,
    Part::MeasurementsCsv,
    Part::MeasurementsParquet,
    Part::OmhHeartRate,
    Part::OmhStepCount,
    Part::OmhPhysicalActivity,
    Part::FhirBundle,
    Part::ActivitySegments,
    Part::Consents,
    Part::Receipts,
    Part::Audit,
    Part::Packs,
];

impl Part {
    /// The entry's name in the zip (a pattern for a part of several files).
    fn path(self) -> &'static str {
        match self {
            Part::Readme => "README.txt",
            Part::Profile => "profile.json",
            Part::Devices => "devices.json",
            Part::MeasurementsSenml => "measurements/measurements.senml.json",
            Part::MeasurementsCsv => "measurements/measurements.csv",
            Part::MeasurementsParquet => "measurements/measurements.parquet",
            Part::OmhHeartRate => "omh/heart-rate.json",
            Part::OmhStepCount => "omh/step-count.json",
            Part::OmhPhysicalActivity => "omh/physical-activity.json",
            Part::FhirBundle => "fhir/observations.json",
            Part::ActivitySegments => "activity/segments.json",
            Part::Consents => "consents.json",
            Part::Receipts => "receipts/*.jws",
            Part::Audit => "audit.json",
            Part::Packs => "packs.json",
        }
    }

    /// What README.txt says of it.
    fn about(self) -> &'static str {
        match self {
            Part::Readme => "this file: what each file holds and its format",
            Part::Profile => {
                "JSON object: your account (name, when it was made) and your settings; \
                 no password or hash"
            }
            Part::Devices => {
                "JSON array: your devices (id, name, created, revoked, last seen); \
                 no tokens or hashes"
            }
            Part::MeasurementsSenml => {
                "SenML JSON (RFC 8428): one array of every measurement, absolute names and \
                 times (seconds), ordered by time"
            }
            Part::MeasurementsCsv => {
                "CSV (RFC 4180, UTF-8, CRLF): the same measurements, one per line; columns \
                 device,message_id,seq,name,unit,time_ms,value,text,bool,data,sum \
                 (data in base64url)"
            }
            Part::MeasurementsParquet => {
                "Apache Parquet: the same measurements in the archive's schema (device, \
                 message_id, seq, name, unit, time (UTC ms), value, text, bool, data, sum)"
            }
            Part::OmhHeartRate => {
                "JSON array of Open mHealth data points (IEEE 1752.1 header), body schema \
                 omh:heart-rate:2.0: every measurement in beat/min"
            }
            Part::OmhStepCount => {
                "JSON array of Open mHealth data points, body schema omh:step-count:3.0: \
                 every measurement named .../steps (unit count or none)"
            }
            Part::OmhPhysicalActivity => {
                "JSON array of IEEE 1752.1 data points, body schema \
                 ieee:physical-activity:1.0: the activity segments below"
            }
            Part::FhirBundle => {
                "FHIR R4 Bundle (type collection) of Observations: heart rate (LOINC 8867-4, \
                 UCUM /min) and steps (LOINC 55423-8, UCUM {steps})"
            }
            Part::ActivitySegments => {
                "JSON array: the behaviour model's activity segments (device, activity, \
                 start, end, confidence, windows, model version)"
            }
            Part::Consents => {
                "JSON array: every consent a service asked of you and your decisions, \
                 newest first, each with its signed receipts (docs/consent.md)"
            }
            Part::Receipts => {
                "one compact JWS per receipt (Kantara Consent Receipt v1.1, EdDSA), named by \
                 its id; pack receipts as pack-<pack>-<joined|withdrawn>.jws; verify with \
                 /api/v1/consent/jwks.json"
            }
            Part::Audit => {
                "JSON array: your audit log, every read of your data by anyone but you, \
                 newest first (docs/consent.md)"
            }
            Part::Packs => {
                "JSON object: the pooled packs you joined (with their receipts), your \
                 privacy budget and the ledger of releases you were in (docs/packs.md)"
            }
        }
    }
}

/// `GET /api/v1/takeout`: no parameters.
pub(crate) async fn takeout(
    State(state): State<ApiState>,
    Owner(owner): Owner,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<Response> {
    Params::new(raw, &[])?;
    let running = state.inner.takeouts.start(&owner)?;
    // The small parts before the status: a failing store or accounts file
    // is an error answer, not a zip cut short.
    let profile = profile(&state, &owner).await?;
    let devices = with_last_seen(&state, &owner).await?;
    let now_ms = unix_ms(std::time::SystemTime::now());
    let (to_client, from_writer) = mpsc::channel(stream::CHANNEL_CHUNKS);
    let takeout = Takeout {
        zip: ZipStream::new(to_client),
        store: state.inner.store.clone(),
        owner,
        now_ms,
        profile,
        devices,
    };
    // Shutdown waits for responses in flight: a long takeout is cut short
    // then, as live feeds end, rather than holding the node up.
    let closing = state.inner.closing.clone();
    // Set when writing fails: the body then fails at once, ahead of any
    // chunks still queued (a client that stopped reading would otherwise
    // keep an error chunk waiting behind them).
    let failed = CancellationToken::new();
    let fail = failed.clone();
    tokio::spawn(async move {
        let _running = running;
        let owner = takeout.owner.clone();
        let written = tokio::select! {
            written = takeout.write() => written,
            () = closing.cancelled() => Err(std::io::Error::other("the server is shutting down")),
        };
        match written {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {
                tracing::info!(%owner, "takeout: the client went away");
            }
            Err(error) => {
                tracing::error!(%error, %owner, "takeout failed; response cut short");
                fail.cancel();
            }
        }
    });
    let body = futures_util::stream::unfold(Some((from_writer, failed)), |state| async move {
        let (mut rx, failed) = state?;
        tokio::select! {
            biased;
            () = failed.cancelled() => Some((Err(std::io::Error::other("takeout failed")), None)),
            chunk = rx.recv() => chunk.map(|chunk| (Ok(chunk), Some((rx, failed)))),
        }
    });
    let filename = format!(
        "attachment; filename=\"tributary-takeout-{}.zip\"",
        tributary_archive::day(now_ms)
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (header::CONTENT_DISPOSITION, filename),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// The owner's account without secrets, and their settings.
async fn profile(state: &ApiState, owner: &str) -> Result<serde_json::Value> {
    let data_dir = state.inner.data_dir.clone();
    let listing = blocking(move || tributary_accounts::list(&data_dir)).await??;
    let created_ms = listing
        .owners
        .iter()
        .find(|o| o.name == owner)
        .map(|o| unix_ms(o.created));
    let activity = state
        .inner
        .store
        .activity_enabled(owner)
        .await
        .map_err(store_error)?;
    Ok(json!({
        "name": owner,
        "created_ms": created_ms,
        "created": created_ms.map(crate::activity::rfc3339),
        "activity_recognition": activity,
    }))
}

/// One takeout being written.
struct Takeout {
    zip: ZipStream,
    store: Arc<Store>,
    owner: String,
    now_ms: i64,
    profile: serde_json::Value,
    devices: Vec<DeviceView>,
}

impl Takeout {
    async fn write(mut self) -> std::io::Result<()> {
        for part in PARTS {
            self.write_part(part).await?;
        }
        self.zip.finish().await
    }

    async fn write_part(&mut self, part: Part) -> std::io::Result<()> {
        match part {
            Part::Readme => self.readme().await,
            Part::Profile => {
                let profile = pretty(&self.profile);
                self.whole(part, &profile).await
            }
            Part::Devices => {
                let devices = pretty(&self.devices);
                self.whole(part, &devices).await
            }
            Part::MeasurementsSenml => self.measurements_senml().await,
            Part::MeasurementsCsv => self.measurements_csv().await,
            Part::MeasurementsParquet => self.measurements_parquet().await,
            Part::OmhHeartRate => self.omh_measurements(part).await,
            Part::OmhStepCount => self.omh_measurements(part).await,
            Part::OmhPhysicalActivity => self.omh_physical_activity().await,
            Part::FhirBundle => self.fhir_bundle().await,
            Part::ActivitySegments => self.activity_segments().await,
            Part::Consents => self.consents().await,
            Part::Receipts => self.receipts().await,
            Part::Audit => self.audit().await,
            Part::Packs => self.packs().await,
        }
    }

    /// A small entry written at once.
    async fn whole(&mut self, part: Part, text: &str) -> std::io::Result<()> {
        self.zip.start(part.path(), Packing::Deflate)?;
        self.zip.write(text.as_bytes()).await
    }

    async fn readme(&mut self) -> std::io::Result<()> {
        let mut text = format!(
            "Tributary takeout of {}, made {} (UTC).\r\n\r\n\
             Every file in this zip, and its format (docs/takeout.md has the details):\r\n\r\n",
            self.owner,
            crate::activity::rfc3339(self.now_ms)
        );
        for part in PARTS {
            text.push_str(&format!("{}\r\n    {}\r\n\r\n", part.path(), part.about()));
        }
        self.whole(Part::Readme, &text).await
    }

    fn rows(&self) -> RowPages {
        RowPages::new(self.store.clone(), self.owner.clone())
    }

    async fn measurements_senml(&mut self) -> std::io::Result<()> {
        self.zip
            .start(Part::MeasurementsSenml.path(), Packing::Deflate)?;
        let mut array = JsonArray::default();
        let mut rows = self.rows();
        while let Some(page) = rows.next().await? {
            let text = array.items(page.iter().map(senml));
            self.zip.write(text.as_bytes()).await?;
        }
        self.zip.write(array.end().as_bytes()).await
    }

    async fn measurements_csv(&mut self) -> std::io::Result<()> {
        self.zip
            .start(Part::MeasurementsCsv.path(), Packing::Deflate)?;
        self.zip.write(CSV_HEADER.as_bytes()).await?;
        let mut rows = self.rows();
        while let Some(page) = rows.next().await? {
            let mut text = String::new();
            for row in &page {
                csv_row(&mut text, row);
            }
            self.zip.write(text.as_bytes()).await?;
        }
        Ok(())
    }

    /// One row group per page: the archive's schema and writer.
    async fn measurements_parquet(&mut self) -> std::io::Result<()> {
        self.zip
            .start(Part::MeasurementsParquet.path(), Packing::Store)?;
        let mut parquet = ParquetWriter::new().map_err(parquet_error)?;
        let mut rows = self.rows();
        while let Some(page) = rows.next().await? {
            parquet.write(&page).map_err(parquet_error)?;
            let bytes = parquet.take();
            self.zip.write(&bytes).await?;
        }
        let rest = parquet.finish().map_err(parquet_error)?;
        self.zip.write(&rest).await
    }

    /// Heart rate or step count: one data point per mapped measurement.
    async fn omh_measurements(&mut self, part: Part) -> std::io::Result<()> {
        self.zip.start(part.path(), Packing::Deflate)?;
        let mut array = JsonArray::default();
        let mut rows = self.rows();
        while let Some(page) = rows.next().await? {
            let points = page
                .iter()
                .filter_map(|row| match (part, kinds::kind_of(row)?) {
                    (Part::OmhHeartRate, kinds::Kind::HeartRate(bpm)) => {
                        Some(omh::heart_rate(row, bpm))
                    }
                    (Part::OmhStepCount, kinds::Kind::Steps(n)) => Some(omh::step_count(row, n)),
                    _ => None,
                });
            let text = array.items(points);
            self.zip.write(text.as_bytes()).await?;
        }
        self.zip.write(array.end().as_bytes()).await
    }

    async fn omh_physical_activity(&mut self) -> std::io::Result<()> {
        self.zip
            .start(Part::OmhPhysicalActivity.path(), Packing::Deflate)?;
        let mut array = JsonArray::default();
        let mut segments = SegmentPages::new(self.store.clone(), self.owner.clone());
        while let Some(page) = segments.next().await? {
            let text = array.items(page.iter().map(omh::physical_activity));
            self.zip.write(text.as_bytes()).await?;
        }
        self.zip.write(array.end().as_bytes()).await
    }

    /// The Bundle, its entries written page by page. FHIR allows no empty
    /// arrays, so `entry` is only there with at least one Observation.
    async fn fhir_bundle(&mut self) -> std::io::Result<()> {
        self.zip.start(Part::FhirBundle.path(), Packing::Deflate)?;
        self.zip
            .write(fhir::bundle_start(self.now_ms).as_bytes())
            .await?;
        let mut entries = 0u64;
        let mut rows = self.rows();
        while let Some(page) = rows.next().await? {
            let mut text = String::new();
            for row in &page {
                let Some(kind) = kinds::kind_of(row) else {
                    continue;
                };
                text.push_str(if entries == 0 {
                    ",\"entry\":[\n"
                } else {
                    ",\n"
                });
                text.push_str(&fhir::entry(row, kind).to_string());
                entries += 1;
            }
            self.zip.write(text.as_bytes()).await?;
        }
        let end = if entries == 0 { "}\n" } else { "\n]}\n" };
        self.zip.write(end.as_bytes()).await
    }

    async fn activity_segments(&mut self) -> std::io::Result<()> {
        self.zip
            .start(Part::ActivitySegments.path(), Packing::Deflate)?;
        let mut array = JsonArray::default();
        let mut segments = SegmentPages::new(self.store.clone(), self.owner.clone());
        while let Some(page) = segments.next().await? {
            let views = page
                .into_iter()
                .map(|s| serde_json::to_value(crate::activity::view(s)).unwrap_or_default());
            let text = array.items(views);
            self.zip.write(text.as_bytes()).await?;
        }
        self.zip.write(array.end().as_bytes()).await
    }
}

/// A JSON array written in pieces, one item a line.
#[derive(Default)]
pub(super) struct JsonArray {
    written: u64,
}

impl JsonArray {
    /// The text of `items`, with the opening bracket before the first.
    pub(super) fn items(&mut self, items: impl Iterator<Item = serde_json::Value>) -> String {
        let mut text = String::new();
        for item in items {
            text.push_str(if self.written == 0 { "[\n" } else { ",\n" });
            text.push_str(&item.to_string());
            self.written += 1;
        }
        text
    }

    /// The end (the whole array when there were no items).
    pub(super) fn end(&self) -> &'static str {
        if self.written == 0 {
            "[]\n"
        } else {
            "\n]\n"
        }
    }
}

pub(super) fn pretty(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default() + "\n"
}

fn parquet_error(error: tributary_archive::Error) -> std::io::Error {
    std::io::Error::other(format!("parquet: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_has_its_own_path() {
        let mut paths: Vec<_> = PARTS.iter().map(|p| p.path()).collect();
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), PARTS.len());
        assert_eq!(PARTS[0], Part::Readme);
    }

    #[test]
    fn json_array_is_valid_with_none_one_and_many() {
        for n in [0, 1, 3] {
            let mut array = JsonArray::default();
            let mut text = array.items((0..n).map(|i| json!({ "i": i })));
            text.push_str(array.end());
            let parsed: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
            assert_eq!(parsed.len(), n);
        }
    }
}
