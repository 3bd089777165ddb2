//! MQTT 5.0 properties (5.0 §2.2.2) as one struct shared by every packet.
//!
//! The decoder rejects a property that the packet type does not allow, and a
//! property that may appear once but appears twice, as a protocol error.

use bytes::Bytes;

/// Every 5.0 property; each packet type uses the subset the spec allows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Properties {
    /// 0x01, PUBLISH and will: 0 = unspecified bytes, 1 = UTF-8.
    pub payload_format_indicator: Option<u8>,
    /// 0x02, PUBLISH and will: seconds.
    pub message_expiry_interval: Option<u32>,
    /// 0x03, PUBLISH and will.
    pub content_type: Option<String>,
    /// 0x08, PUBLISH and will.
    pub response_topic: Option<String>,
    /// 0x09, PUBLISH and will.
    pub correlation_data: Option<Bytes>,
    /// 0x0B, PUBLISH (several) and SUBSCRIBE (one); 1..=268,435,455.
    pub subscription_identifiers: Vec<u32>,
    /// 0x11, CONNECT, CONNACK, DISCONNECT: seconds.
    pub session_expiry_interval: Option<u32>,
    /// 0x12, CONNACK.
    pub assigned_client_identifier: Option<String>,
    /// 0x13, CONNACK: seconds.
    pub server_keep_alive: Option<u16>,
    /// 0x15, CONNECT, CONNACK, AUTH.
    pub authentication_method: Option<String>,
    /// 0x16, CONNECT, CONNACK, AUTH.
    pub authentication_data: Option<Bytes>,
    /// 0x17, CONNECT: 0 or 1.
    pub request_problem_information: Option<u8>,
    /// 0x18, will: seconds.
    pub will_delay_interval: Option<u32>,
    /// 0x19, CONNECT: 0 or 1.
    pub request_response_information: Option<u8>,
    /// 0x1A, CONNACK.
    pub response_information: Option<String>,
    /// 0x1C, CONNACK and DISCONNECT.
    pub server_reference: Option<String>,
    /// 0x1F, every acknowledgement, DISCONNECT and AUTH.
    pub reason_string: Option<String>,
    /// 0x21, CONNECT and CONNACK: never 0.
    pub receive_maximum: Option<u16>,
    /// 0x22, CONNECT and CONNACK.
    pub topic_alias_maximum: Option<u16>,
    /// 0x23, PUBLISH: never 0.
    pub topic_alias: Option<u16>,
    /// 0x24, CONNACK: 0 or 1.
    pub maximum_qos: Option<u8>,
    /// 0x25, CONNACK: 0 or 1.
    pub retain_available: Option<u8>,
    /// 0x26, every packet with properties; order is kept and names may repeat.
    pub user_properties: Vec<(String, String)>,
    /// 0x27, CONNECT and CONNACK: never 0.
    pub maximum_packet_size: Option<u32>,
    /// 0x28, CONNACK: 0 or 1.
    pub wildcard_subscription_available: Option<u8>,
    /// 0x29, CONNACK: 0 or 1.
    pub subscription_identifier_available: Option<u8>,
    /// 0x2A, CONNACK: 0 or 1.
    pub shared_subscription_available: Option<u8>,
}

impl Properties {
    /// True when no property is set (encoders may then omit optional parts).
    pub fn is_empty(&self) -> bool {
        *self == Properties::default()
    }
}
