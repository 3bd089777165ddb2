//! The MQTT broker.
