//! MQTT 3.1.1 and 5.0 control packets: types, encoding and decoding over
//! `bytes`, and topic name / topic filter validation. No I/O.
//!
//! - [`Packet`] and its payload structs model every control packet of both
//!   versions; [`Properties`] holds the 5.0 properties and [`ReasonCode`] the
//!   5.0 reason codes (mapped to 3.1.1 return codes where the wire needs it).
//! - [`decode`] reads one packet from the front of a buffer, or reports
//!   [`Error::Incomplete`] when more bytes are needed; [`encode`] appends one.
//! - [`topic`] validates topic names and filters and matches them.
//!
//! ```
//! use bytes::BytesMut;
//! use tributary_mqtt::{decode, encode, Packet, ProtocolVersion};
//!
//! let mut buf = BytesMut::new();
//! encode(&Packet::PingReq, ProtocolVersion::V5, &mut buf).unwrap();
//! let (packet, used) = decode(&buf, ProtocolVersion::V5, 1024).unwrap();
//! assert_eq!(packet, Packet::PingReq);
//! assert_eq!(used, 2);
//! ```

mod codec;
mod error;
mod packet;
mod properties;
mod reason;
pub mod stored;
pub mod topic;

pub use codec::{decode, encode, encode_publish_head, encode_publish_parts, PublishHeader};
pub use error::{Error, Result};
pub use packet::*;
pub use properties::Properties;
pub use reason::ReasonCode;
