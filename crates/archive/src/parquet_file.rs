//! Measurement rows as Parquet: one schema for the archive and for the
//! API's Parquet export, so that a reader handles both alike.
//!
//! The owner is not a column: archive files sit under `owner=NAME/`
//! (Hive-style partitioning, which pyarrow, DuckDB and Spark turn back into
//! a column), and an export holds one owner's data only.

use std::sync::{Arc, OnceLock};

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Float64Builder, StringBuilder, TimestampMillisecondBuilder,
    UInt32Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use tributary_store::Row;

use crate::{Error, Result};

/// The columns, in order. `time` is a UTC timestamp in milliseconds, so
/// readers show dates without being told the unit.
pub fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("device", DataType::Utf8, false),
                Field::new("message_id", DataType::Utf8, false),
                Field::new("seq", DataType::UInt32, false),
                Field::new("name", DataType::Utf8, false),
                Field::new("unit", DataType::Utf8, true),
                Field::new(
                    "time",
                    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                    false,
                ),
                Field::new("value", DataType::Float64, true),
                Field::new("text", DataType::Utf8, true),
                Field::new("bool", DataType::Boolean, true),
                Field::new("data", DataType::Binary, true),
                Field::new("sum", DataType::Float64, true),
            ]))
        })
        .clone()
}

/// Rows as one Arrow record batch of [`schema`].
pub fn record_batch(rows: &[Row]) -> Result<RecordBatch> {
    let n = rows.len();
    let mut device = StringBuilder::with_capacity(n, n * 8);
    let mut message_id = StringBuilder::with_capacity(n, n * 32);
    let mut seq = UInt32Builder::with_capacity(n);
    let mut name = StringBuilder::with_capacity(n, n * 12);
    let mut unit = StringBuilder::with_capacity(n, n * 4);
    let mut time = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut value = Float64Builder::with_capacity(n);
    let mut text = StringBuilder::new();
    let mut bool = BooleanBuilder::with_capacity(n);
    let mut data = BinaryBuilder::new();
    let mut sum = Float64Builder::with_capacity(n);
    for row in rows {
        device.append_value(&row.device);
        message_id.append_value(&row.message_id);
        seq.append_value(row.seq);
        name.append_value(&row.name);
        unit.append_option(row.unit.as_deref());
        time.append_value(row.time_ms);
        value.append_option(row.value);
        text.append_option(row.text.as_deref());
        bool.append_option(row.bool);
        data.append_option(row.data.as_deref());
        sum.append_option(row.sum);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(device.finish()),
        Arc::new(message_id.finish()),
        Arc::new(seq.finish()),
        Arc::new(name.finish()),
        Arc::new(unit.finish()),
        Arc::new(time.finish()),
        Arc::new(value.finish()),
        Arc::new(text.finish()),
        Arc::new(bool.finish()),
        Arc::new(data.finish()),
        Arc::new(sum.finish()),
    ];
    RecordBatch::try_new(schema(), columns).map_err(|e| Error::Encode(e.to_string()))
}

/// Writer settings: zstd (every common reader has it; much smaller than
/// snappy on repetitive names and devices), statistics per page so that
/// readers skip row groups by time.
pub(crate) fn properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_created_by(format!("tributary {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// A whole Parquet file holding `rows`.
pub fn encode(rows: &[Row]) -> Result<Vec<u8>> {
    let mut writer = ParquetWriter::new()?;
    writer.write(rows)?;
    writer.finish()
}

/// A Parquet file written piece by piece: each [`ParquetWriter::write`]
/// becomes a row group whose bytes [`ParquetWriter::take`] hands out, so
/// that a long export is streamed with one page of rows in memory.
pub struct ParquetWriter {
    writer: ArrowWriter<Vec<u8>>,
}

impl ParquetWriter {
    pub fn new() -> Result<ParquetWriter> {
        let writer = ArrowWriter::try_new(Vec::new(), schema(), Some(properties()))
            .map_err(|e| Error::Encode(e.to_string()))?;
        Ok(ParquetWriter { writer })
    }

    /// Adds `rows` as one row group (nothing for no rows).
    pub fn write(&mut self, rows: &[Row]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let batch = record_batch(rows)?;
        self.writer
            .write(&batch)
            .and_then(|()| self.writer.flush())
            .map_err(|e| Error::Encode(e.to_string()))
    }

    /// The bytes written since the last call. The writer counts offsets
    /// itself, so taking them out of its buffer is safe.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(self.writer.inner_mut())
    }

    /// Writes the footer and returns the remaining bytes.
    pub fn finish(self) -> Result<Vec<u8>> {
        self.writer
            .into_inner()
            .map_err(|e| Error::Encode(e.to_string()))
    }
}
