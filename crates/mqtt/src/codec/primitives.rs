//! The data representations every packet is built from (3.1.1 §1.5, 5.0 §1.5).
//!
//! ```text
//! Two Byte Integer      big-endian u16                          (5.0 §1.5.2)
//! Four Byte Integer     big-endian u32                          (5.0 §1.5.3)
//! UTF-8 Encoded String  u16 length, then that many UTF-8 bytes  (5.0 §1.5.4, 3.1.1 §1.5.3)
//! Variable Byte Integer 1..=4 bytes, 7 bits each, low first;    (5.0 §1.5.5, 3.1.1 §2.2.3)
//!                       bit 7 set means "another byte follows"
//! Binary Data           u16 length, then that many bytes        (5.0 §1.5.6)
//! UTF-8 String Pair     two UTF-8 Encoded Strings               (5.0 §1.5.7)
//! ```
//!
//! Invariants: a [`Reader`] only ever sees the body of one complete packet, so
//! running out of bytes inside it means the packet's own fields disagree with
//! its remaining length — that is [`Error::Malformed`], never `Incomplete`.

use bytes::{BufMut, Bytes};

use crate::{Error, Result};

/// The largest value a Variable Byte Integer can hold: 4 bytes of 7 bits.
pub(crate) const MAX_VARINT: u32 = 268_435_455;

const TRUNCATED: Error = Error::Malformed("field runs past the end of the packet");

/// A cursor over the body of one complete packet.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Fails unless every byte was used: a packet's fields must add up to its
    /// remaining length exactly.
    pub(crate) fn finish(&self) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Error::Malformed("trailing bytes after the last field"))
        }
    }

    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        if len > self.buf.len() {
            return Err(TRUNCATED);
        }
        let (head, tail) = self.buf.split_at(len);
        self.buf = tail;
        Ok(head)
    }

    /// Everything left (the PUBLISH payload, the SUBACK reason codes, …).
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn varint(&mut self) -> Result<u32> {
        match parse_varint(self.buf) {
            Varint::Done { value, len } => {
                self.buf = &self.buf[len..];
                Ok(value)
            }
            Varint::Partial => Err(TRUNCATED),
            Varint::TooLong => Err(Error::Malformed(
                "variable byte integer longer than 4 bytes",
            )),
        }
    }

    /// Binary Data: the bytes are copied out of the read buffer so that the
    /// packet outlives it.
    pub(crate) fn binary(&mut self) -> Result<Bytes> {
        let len = self.u16()?;
        Ok(Bytes::copy_from_slice(self.take(usize::from(len))?))
    }

    /// A UTF-8 Encoded String: well-formed UTF-8 (which already excludes the
    /// surrogates U+D800..U+DFFF) and no U+0000 (5.0 §1.5.4 [MQTT-1.5.4-1],
    /// [MQTT-1.5.4-2]; 3.1.1 §1.5.3 [MQTT-1.5.3-1], [MQTT-1.5.3-2]).
    pub(crate) fn string(&mut self) -> Result<String> {
        let len = self.u16()?;
        let bytes = self.take(usize::from(len))?;
        let s = std::str::from_utf8(bytes)
            .map_err(|_| Error::Malformed("string is not valid UTF-8"))?;
        if s.contains('\0') {
            return Err(Error::Malformed("string contains U+0000"));
        }
        Ok(s.to_owned())
    }
}

/// The outcome of reading a Variable Byte Integer from the front of a slice.
pub(crate) enum Varint {
    Done {
        value: u32,
        len: usize,
    },
    /// The slice ends before the last byte (the one without bit 7).
    Partial,
    /// A fourth byte with its continuation bit set.
    TooLong,
}

pub(crate) fn parse_varint(buf: &[u8]) -> Varint {
    let mut value = 0u32;
    for i in 0..4 {
        let Some(&byte) = buf.get(i) else {
            return Varint::Partial;
        };
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Varint::Done { value, len: i + 1 };
        }
    }
    Varint::TooLong
}

/// The number of bytes `value` takes as a Variable Byte Integer.
pub(crate) fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Appends a Variable Byte Integer; fails above [`MAX_VARINT`].
pub(crate) fn put_varint(out: &mut impl BufMut, value: usize) -> Result<()> {
    if value > MAX_VARINT as usize {
        return Err(Error::Encode(
            "packet or property section longer than 268,435,455 bytes",
        ));
    }
    let mut value = value;
    loop {
        // Truncation is the point: the low 7 bits go into this byte.
        let mut byte = (value & 0x7F) as u8;
        value >>= 7;
        if value > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if value == 0 {
            return Ok(());
        }
    }
}

/// Appends a UTF-8 Encoded String; refuses what the decoder would refuse.
pub(crate) fn put_string(out: &mut impl BufMut, s: &str) -> Result<()> {
    if s.contains('\0') {
        return Err(Error::Encode("string contains U+0000"));
    }
    put_binary(out, s.as_bytes()).map_err(|_| Error::Encode("string longer than 65,535 bytes"))
}

/// Appends Binary Data.
pub(crate) fn put_binary(out: &mut impl BufMut, data: &[u8]) -> Result<()> {
    let len = u16::try_from(data.len())
        .map_err(|_| Error::Encode("binary data longer than 65,535 bytes"))?;
    out.put_u16(len);
    out.put_slice(data);
    Ok(())
}
