//! Decodes arbitrary bytes as both protocol versions. Decoding must never
//! panic, and whatever decodes must encode and decode back to itself.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tributary_mqtt::{decode, encode, Packet, ProtocolVersion};

/// Small, so that the size check is hit often and inputs stay fast.
const MAX_PACKET_SIZE: usize = 4096;

fuzz_target!(|data: &[u8]| {
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let Ok((packet, used)) = decode(data, version, MAX_PACKET_SIZE) else {
            continue;
        };
        assert!(used <= data.len(), "used {used} of {} bytes", data.len());
        // A CONNECT is encoded for the version it names.
        let version = match &packet {
            Packet::Connect(connect) => connect.protocol,
            _ => version,
        };
        let mut out = BytesMut::new();
        if let Err(e) = encode(&packet, version, &mut out) {
            panic!("decoded {packet:?} but cannot encode it: {e}");
        }
        match decode(&out, version, usize::MAX) {
            Ok((again, again_used)) => {
                assert_eq!(again, packet, "re-decoded packet differs");
                assert_eq!(again_used, out.len(), "re-decode used a different length");
            }
            Err(e) => panic!("decoded {packet:?}, re-encoded as {out:02X?}, which fails: {e}"),
        }
    }
});
