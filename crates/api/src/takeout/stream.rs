//! The zip as a response body, written while it is sent.
//!
//! The zip crate writes in streaming mode (`ZipWriter::new_stream`: no
//! seeking back, so each entry's sizes and CRC follow its data in a data
//! descriptor, and the central directory comes last). It writes into a
//! [`Pending`] buffer; [`ZipStream::pass_on`] hands what piled up there to
//! the response through a channel of [`CHANNEL_CHUNKS`] chunks, waiting
//! while the client is slow. So memory is bounded by the channel, the
//! buffer, the compressor's window and what one section holds at a time
//! (a page of rows), however much the owner has.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use tokio::sync::mpsc;
use zip::write::{SimpleFileOptions, StreamWriter};
use zip::{CompressionMethod, ZipWriter};

/// Chunks between the writer and the socket.
pub(crate) const CHANNEL_CHUNKS: usize = 4;
/// The writer hands its buffer on once it holds this much.
const CHUNK_BYTES: usize = 256 * 1024;

/// What the zip crate wrote and the response has not yet been handed.
#[derive(Clone, Default)]
struct Pending(Arc<Mutex<Vec<u8>>>);

impl Pending {
    fn take_if_at_least(&self, bytes: usize) -> Option<Vec<u8>> {
        let mut buffer = self.0.lock().unwrap_or_else(|e| e.into_inner());
        (buffer.len() >= bytes.max(1)).then(|| std::mem::take(&mut *buffer))
    }
}

impl Write for Pending {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut buffer = self.0.lock().unwrap_or_else(|e| e.into_inner());
        buffer.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How an entry is stored.
#[derive(Clone, Copy)]
pub(crate) enum Packing {
    /// Text: deflated.
    Deflate,
    /// Already compressed (Parquet's zstd pages): stored as it is.
    Store,
}

/// A zip being written into a response.
pub(crate) struct ZipStream {
    zip: ZipWriter<StreamWriter<Pending>>,
    pending: Pending,
    to_client: mpsc::Sender<Bytes>,
}

impl ZipStream {
    pub(crate) fn new(to_client: mpsc::Sender<Bytes>) -> ZipStream {
        let pending = Pending::default();
        ZipStream {
            zip: ZipWriter::new_stream(pending.clone()),
            pending,
            to_client,
        }
    }

    /// Starts the entry `path`; what [`ZipStream::write`] writes next goes
    /// in it.
    pub(crate) fn start(&mut self, path: &str, packing: Packing) -> std::io::Result<()> {
        let method = match packing {
            Packing::Deflate => CompressionMethod::Deflated,
            Packing::Store => CompressionMethod::Stored,
        };
        // ZIP64 sizes always: an entry's size is unknown when it starts, and
        // years of measurements as CSV can pass 4 GiB.
        let options = SimpleFileOptions::default()
            .compression_method(method)
            .large_file(true)
            .unix_permissions(0o644);
        self.zip.start_file(path, options).map_err(zip_error)
    }

    pub(crate) async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.zip.write_all(bytes)?;
        pass_on(&self.pending, &self.to_client, CHUNK_BYTES).await
    }

    /// Writes the central directory and hands on the rest.
    pub(crate) async fn finish(self) -> std::io::Result<()> {
        let ZipStream {
            zip,
            pending,
            to_client,
        } = self;
        zip.finish().map_err(zip_error)?;
        pass_on(&pending, &to_client, 0).await
    }
}

/// Sends the buffer to the client once it holds `at_least` bytes (all of
/// it for 0), waiting for room in the channel; an error once the client
/// is gone.
async fn pass_on(
    pending: &Pending,
    to_client: &mpsc::Sender<Bytes>,
    at_least: usize,
) -> std::io::Result<()> {
    let Some(chunk) = pending.take_if_at_least(at_least) else {
        return Ok(());
    };
    to_client
        .send(Bytes::from(chunk))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
}

fn zip_error(error: zip::result::ZipError) -> std::io::Error {
    std::io::Error::other(format!("zip: {error}"))
}
