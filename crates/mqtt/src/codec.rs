//! Encoding and decoding of control packets.

use bytes::BytesMut;

use crate::{Packet, ProtocolVersion, Result};

/// Decodes one packet from the front of `buf`, returning it and the number of
/// bytes it used. `version` is the version negotiated by CONNECT (a CONNECT
/// itself is decoded whatever `version` says). A packet whose remaining length
/// would make it larger than `max_packet_size` is refused as soon as the fixed
/// header is complete.
pub fn decode(buf: &[u8], version: ProtocolVersion, max_packet_size: usize) -> Result<(Packet, usize)> {
    let _ = (buf, version, max_packet_size);
    todo!("decoder")
}

/// Appends the encoding of `packet` for `version` to `out`.
pub fn encode(packet: &Packet, version: ProtocolVersion, out: &mut BytesMut) -> Result<()> {
    let _ = (packet, version, out);
    todo!("encoder")
}
