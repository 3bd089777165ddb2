//! Codec tests: annotated byte literals for every packet of both versions
//! (`packets`), one test per decoding and encoding error (`errors`), and
//! property tests over generated spec-valid packets (`roundtrip`).

mod errors;
mod packets;
mod roundtrip;

use bytes::BytesMut;

use crate::{decode, encode, Error, Packet, ProtocolVersion, Result};

/// Large enough for every test packet; the size limit has its own tests.
const MAX: usize = 1 << 20;

const V311: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn encoded(packet: &Packet, version: ProtocolVersion) -> Result<Vec<u8>> {
    let mut out = BytesMut::new();
    encode(packet, version, &mut out)?;
    Ok(out.to_vec())
}

/// `bytes` decode to exactly `packet`, using every byte, and `packet`
/// encodes to exactly `bytes`.
fn check(version: ProtocolVersion, bytes: &[u8], packet: Packet) -> Result<()> {
    assert_eq!(
        decode(bytes, version, MAX)?,
        (packet.clone(), bytes.len()),
        "decode"
    );
    assert_eq!(encoded(&packet, version)?, bytes, "encode");
    Ok(())
}

/// `bytes` decode to `packet`, which encodes to other (canonical) bytes.
fn check_decode(version: ProtocolVersion, bytes: &[u8], packet: Packet) -> Result<()> {
    assert_eq!(decode(bytes, version, MAX)?, (packet, bytes.len()));
    Ok(())
}

fn decode_err(version: ProtocolVersion, bytes: &[u8]) -> Error {
    match decode(bytes, version, MAX) {
        Ok((packet, _)) => panic!("decoded {packet:?} from bytes that should fail"),
        Err(e) => e,
    }
}
