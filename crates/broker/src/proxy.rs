//! The PROXY protocol version 2 header (HAProxy, "The PROXY protocol",
//! section 2.2), with which a load balancer in front of a node tells it the
//! address of the client it forwards. A listener with `proxy_protocol` on
//! requires one at the start of every connection; a listener without it
//! refuses one (the bytes are not MQTT).
//!
//! ```text
//! 0..12   signature  0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A
//! 12      version and command: 0x2_ (version 2); _0 LOCAL (health check), _1 PROXY
//! 13      address family and transport: 0x11 TCP over IPv4, 0x21 TCP over IPv6,
//!         0x00 unspecified (LOCAL)
//! 14..16  length of the rest, big-endian
//! 16..    IPv4: source address (4), destination address (4), source port (2), destination port (2)
//!         IPv6: source address (16), destination address (16), source port (2), destination port (2)
//!         then TLVs, which are skipped
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The first 12 bytes of every version 2 header.
pub const SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];
/// Largest header accepted (addresses plus TLVs); HAProxy sends far less.
const MAX_LENGTH: usize = 512;

/// What a header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// A connection of the proxy itself (a health check): use the socket's peer.
    Local,
    /// A forwarded client connection from `source`.
    Proxied { source: SocketAddr },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("need more bytes")]
    Incomplete,
    #[error("not a PROXY protocol v2 header")]
    NotProxy,
    #[error("invalid PROXY header: {0}")]
    Invalid(&'static str),
}

/// True when `buf` starts like a PROXY v2 header (as far as it goes).
pub fn looks_like_proxy(buf: &[u8]) -> bool {
    !buf.is_empty() && SIGNATURE.starts_with(&buf[..buf.len().min(SIGNATURE.len())])
}

/// Parses a header at the start of `buf`, returning it and its length.
pub fn parse(buf: &[u8]) -> Result<(Header, usize), Error> {
    if buf.is_empty() {
        return Err(Error::Incomplete);
    }
    if !looks_like_proxy(buf) {
        return Err(Error::NotProxy);
    }
    if buf.len() < 16 {
        return Err(Error::Incomplete);
    }
    if buf[12] >> 4 != 2 {
        return Err(Error::Invalid("version is not 2"));
    }
    let length = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if length > MAX_LENGTH {
        return Err(Error::Invalid("header too long"));
    }
    let total = 16 + length;
    if buf.len() < total {
        return Err(Error::Incomplete);
    }
    let body = &buf[16..total];
    let header = match buf[12] & 0x0F {
        0x0 => Header::Local,
        0x1 => match buf[13] {
            0x11 => {
                let b = body
                    .get(..12)
                    .ok_or(Error::Invalid("IPv4 addresses cut short"))?;
                let ip = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
                Header::Proxied {
                    source: SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([b[8], b[9]])),
                }
            }
            0x21 => {
                let b = body
                    .get(..36)
                    .ok_or(Error::Invalid("IPv6 addresses cut short"))?;
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&b[..16]);
                let ip = Ipv6Addr::from(octets);
                Header::Proxied {
                    source: SocketAddr::new(IpAddr::V6(ip), u16::from_be_bytes([b[32], b[33]])),
                }
            }
            // UDP or unix sockets cannot carry MQTT over TCP: say so.
            _ => {
                return Err(Error::Invalid(
                    "address family is not TCP over IPv4 or IPv6",
                ))
            }
        },
        _ => return Err(Error::Invalid("command is neither LOCAL nor PROXY")),
    };
    Ok((header, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_header() -> Vec<u8> {
        let mut h = SIGNATURE.to_vec();
        h.extend_from_slice(&[0x21, 0x11, 0x00, 0x0C]); // v2 PROXY, TCP/IPv4, 12 bytes follow
        h.extend_from_slice(&[192, 0, 2, 7]); // source 192.0.2.7
        h.extend_from_slice(&[10, 0, 0, 1]); // destination 10.0.0.1
        h.extend_from_slice(&[0xC3, 0x50]); // source port 50000
        h.extend_from_slice(&[0x07, 0x5B]); // destination port 1883
        h
    }

    #[test]
    fn ipv4_header_gives_the_client_address() {
        let mut bytes = v4_header();
        bytes.extend_from_slice(&[0x10, 0x00]); // the MQTT bytes that follow stay unread
        let (header, used) = parse(&bytes).expect("header");
        assert_eq!(
            header,
            Header::Proxied {
                source: "192.0.2.7:50000".parse().expect("addr")
            }
        );
        assert_eq!(used, 28);
    }

    #[test]
    fn ipv6_header_with_tlvs_gives_the_client_address() {
        let mut h = SIGNATURE.to_vec();
        h.extend_from_slice(&[0x21, 0x21, 0x00, 36 + 4]);
        let mut src = [0u8; 16];
        src[0] = 0x20;
        src[1] = 0x01;
        src[2] = 0x0d;
        src[3] = 0xb8;
        src[15] = 1;
        h.extend_from_slice(&src);
        h.extend_from_slice(&[0u8; 16]);
        h.extend_from_slice(&[0x04, 0xD2, 0x07, 0x5B]); // ports 1234, 1883
        h.extend_from_slice(&[0x04, 0x00, 0x01, 0x00]); // a NOOP TLV, skipped
        let (header, used) = parse(&h).expect("header");
        assert_eq!(
            header,
            Header::Proxied {
                source: "[2001:db8::1]:1234".parse().expect("addr")
            }
        );
        assert_eq!(used, h.len());
    }

    #[test]
    fn local_command_is_a_health_check() {
        let mut h = SIGNATURE.to_vec();
        h.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        assert_eq!(parse(&h), Ok((Header::Local, 16)));
    }

    #[test]
    fn every_prefix_is_incomplete_and_mqtt_is_not_proxy() {
        let h = v4_header();
        for cut in 1..h.len() {
            assert_eq!(parse(&h[..cut]), Err(Error::Incomplete), "cut at {cut}");
        }
        assert_eq!(parse(&[0x10, 0x0C, 0x00, 0x04]), Err(Error::NotProxy));
        assert!(!looks_like_proxy(&[0x10]));
        assert!(looks_like_proxy(&[0x0D, 0x0A]));
    }

    #[test]
    fn bad_headers_are_refused_with_a_reason() {
        let mut h = v4_header();
        h[12] = 0x11; // version 1 in the binary form
        assert_eq!(parse(&h), Err(Error::Invalid("version is not 2")));
        let mut h = v4_header();
        h[13] = 0x12; // UDP over IPv4
        assert_eq!(
            parse(&h),
            Err(Error::Invalid(
                "address family is not TCP over IPv4 or IPv6"
            ))
        );
        let mut h = v4_header();
        h[15] = 4; // claims 4 bytes of addresses
        h.truncate(20);
        assert_eq!(parse(&h), Err(Error::Invalid("IPv4 addresses cut short")));
    }
}
