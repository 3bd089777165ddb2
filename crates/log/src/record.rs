//! The on-disk encoding of one record: a CRC-protected frame. No I/O here;
//! the decoder reports "need more bytes" as [`FrameError::Incomplete`] so
//! the same code serves recovery scans and reads.
//!
//! # Frame layout (format version 1, all integers little-endian)
//!
//! ```text
//! offset  size  field
//! 0       4     len          bytes that follow the 8-byte header (= 8 + body length)
//! 4       4     crc          CRC32C (Castagnoli) of those `len` bytes
//! 8       8     offset       the record's log offset
//! 16      1     version      format version, 1
//! 17      1     flags        bit 0: retain; bits 1-2: qos (0..=2); bits 3-7: zero
//! 18      8     receive_time_ms
//! 26      16    message_id   u128
//! 42      4+n   topic        u32 length + UTF-8
//! ..      4+n   client_id    u32 length + UTF-8
//! ..      4+n   owner        u32 length + UTF-8
//! ..      4+n   device       u32 length + UTF-8
//! ..      4+n   properties   u32 length + MQTT 5 property bytes (no length prefix of their own)
//! ..      4+n   payload      u32 length + bytes
//! ```
//!
//! A frame is therefore `8 + len` bytes long; the smallest (all fields
//! empty) is [`MIN_FRAME`] bytes. `len` is checked against
//! [`MAX_FRAME_LEN`] before anything else so a torn or garbage length never
//! makes a reader allocate or wait for gigabytes.
//!
//! Invariants:
//! - the CRC covers the offset and every body byte, so a frame whose CRC
//!   matches was written whole by this code (torn writes and garbage fail);
//! - every field of [`Record`] is stored, so later backends and readers need
//!   no format change; a new layout gets a new `version` byte.

use bytes::Bytes;

use crate::{MessageId, Record};

/// Size of the `len` + `crc` header that precedes the checksummed bytes.
pub(crate) const HEADER: usize = 8;
/// The current (and only) format version.
pub(crate) const VERSION: u8 = 1;
/// Bytes of the fixed-size part covered by the CRC: offset, version, flags,
/// receive time, message id, and six u32 length prefixes.
const FIXED: usize = 8 + 1 + 1 + 8 + 16 + 6 * 4;
/// The smallest possible frame (a record with every field empty).
pub(crate) const MIN_FRAME: usize = HEADER + FIXED;
/// Upper bound for `len`: larger than any MQTT packet (256 MiB) plus our
/// metadata, small enough that a garbage length is recognised at once.
pub(crate) const MAX_FRAME_LEN: usize = 512 * 1024 * 1024;

/// Why bytes could not be decoded as a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// The buffer holds only part of a frame; `needed` is the total frame
    /// size when known (header complete), otherwise the header size.
    Incomplete { needed: usize },
    /// The length field is out of range: never written by this code.
    BadLength(u32),
    /// The checksum does not match the bytes.
    BadCrc,
    /// Checksummed bytes that do not parse (unknown version, bad UTF-8, ...).
    BadBody(&'static str),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Incomplete { needed } => write!(f, "partial frame ({needed} bytes needed)"),
            FrameError::BadLength(len) => write!(f, "bad frame length {len}"),
            FrameError::BadCrc => write!(f, "crc mismatch"),
            FrameError::BadBody(why) => write!(f, "bad record: {why}"),
        }
    }
}

/// A decoded frame whose fields borrow from the input buffer, so recovery
/// can validate a whole segment without allocating per record.
#[derive(Debug)]
pub(crate) struct FrameRef<'a> {
    pub offset: u64,
    /// Total size of the frame in bytes, header included.
    pub frame_len: usize,
    pub receive_time_ms: u64,
    qos: u8,
    retain: bool,
    message_id: u128,
    topic: &'a str,
    client_id: &'a str,
    owner: &'a str,
    device: &'a str,
    properties: &'a [u8],
    payload: &'a [u8],
}

impl FrameRef<'_> {
    pub fn to_record(&self) -> Record {
        Record {
            receive_time_ms: self.receive_time_ms,
            topic: self.topic.to_owned(),
            qos: self.qos,
            retain: self.retain,
            properties: Bytes::copy_from_slice(self.properties),
            payload: Bytes::copy_from_slice(self.payload),
            client_id: self.client_id.to_owned(),
            message_id: MessageId(self.message_id),
            owner: self.owner.to_owned(),
            device: self.device.to_owned(),
        }
    }
}

/// The encoded size of `record`'s frame, header included.
pub(crate) fn frame_len(record: &Record) -> usize {
    MIN_FRAME
        + record.topic.len()
        + record.client_id.len()
        + record.owner.len()
        + record.device.len()
        + record.properties.len()
        + record.payload.len()
}

/// Whether `record` can be encoded at all (its frame fits [`MAX_FRAME_LEN`]
/// and its qos is valid).
pub(crate) fn check_encodable(record: &Record) -> Result<(), &'static str> {
    if record.qos > 2 {
        return Err("qos above 2");
    }
    if frame_len(record) - HEADER > MAX_FRAME_LEN {
        return Err("record too large");
    }
    Ok(())
}

/// Appends the frame of `record` at `offset` to `out`. The caller has
/// checked [`check_encodable`].
pub(crate) fn encode(offset: u64, record: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    let len = frame_len(record) - HEADER;
    out.reserve(HEADER + len);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]); // crc, filled in below
    out.extend_from_slice(&offset.to_le_bytes());
    out.push(VERSION);
    out.push(u8::from(record.retain) | ((record.qos & 0b11) << 1));
    out.extend_from_slice(&record.receive_time_ms.to_le_bytes());
    out.extend_from_slice(&record.message_id.0.to_le_bytes());
    for field in [
        record.topic.as_bytes(),
        record.client_id.as_bytes(),
        record.owner.as_bytes(),
        record.device.as_bytes(),
        &record.properties[..],
        &record.payload[..],
    ] {
        out.extend_from_slice(&(field.len() as u32).to_le_bytes());
        out.extend_from_slice(field);
    }
    debug_assert_eq!(out.len() - start, HEADER + len);
    let crc = crc32c::crc32c(&out[start + HEADER..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Reads the header at the start of `buf`: the total frame size, once the
/// length is known to be plausible.
pub(crate) fn peek_frame_len(buf: &[u8]) -> Result<usize, FrameError> {
    if buf.len() < HEADER {
        return Err(FrameError::Incomplete { needed: HEADER });
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("slice of 4"));
    if (len as usize) < FIXED || len as usize > MAX_FRAME_LEN {
        return Err(FrameError::BadLength(len));
    }
    Ok(HEADER + len as usize)
}

/// Decodes and verifies the frame at the start of `buf`.
pub(crate) fn decode(buf: &[u8]) -> Result<FrameRef<'_>, FrameError> {
    let frame_len = peek_frame_len(buf)?;
    if buf.len() < frame_len {
        return Err(FrameError::Incomplete { needed: frame_len });
    }
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("slice of 4"));
    let body = &buf[HEADER..frame_len];
    if crc32c::crc32c(body) != crc {
        return Err(FrameError::BadCrc);
    }
    let mut r = Cursor { buf: body };
    let offset = r.u64()?;
    if r.u8()? != VERSION {
        return Err(FrameError::BadBody("unknown format version"));
    }
    let flags = r.u8()?;
    if flags & !0b111 != 0 {
        return Err(FrameError::BadBody("unknown flags"));
    }
    let qos = flags >> 1;
    if qos > 2 {
        return Err(FrameError::BadBody("qos above 2"));
    }
    let receive_time_ms = r.u64()?;
    let message_id = u128::from_le_bytes(r.take(16)?.try_into().expect("slice of 16"));
    let topic = r.str()?;
    let client_id = r.str()?;
    let owner = r.str()?;
    let device = r.str()?;
    let properties = r.bytes()?;
    let payload = r.bytes()?;
    if !r.buf.is_empty() {
        return Err(FrameError::BadBody("trailing bytes"));
    }
    Ok(FrameRef {
        offset,
        frame_len,
        receive_time_ms,
        qos,
        retain: flags & 1 != 0,
        message_id,
        topic,
        client_id,
        owner,
        device,
        properties,
        payload,
    })
}

/// A forward-only reader over checksummed bytes; running short means the
/// length prefixes lie, which is a bad body (the CRC already matched).
struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.buf.len() < n {
            return Err(FrameError::BadBody("field runs past the frame"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("slice of 4"),
        ))
    }
    fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("slice of 8"),
        ))
    }
    fn bytes(&mut self) -> Result<&'a [u8], FrameError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn str(&mut self) -> Result<&'a str, FrameError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| FrameError::BadBody("string is not utf-8"))
    }
}
