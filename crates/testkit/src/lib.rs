//! `tributary-testkit`: the broker in a test's own process, and a client
//! to talk to it, for tests that check MQTT behaviour without a release
//! build or an external client.
//!
//! - [`TestBroker`] opens the embedded log and the broker on a temporary
//!   data dir and serves plain MQTT on a free loopback port
//!   (`Broker::run`, so the session-expiry and retained tasks run as in
//!   production). [`TestBroker::restart`] stops it and starts a new one on
//!   the same data dir; [`TestBroker::connect_in_memory`] serves a
//!   connection over an in-memory pipe (`Broker::serve_io`) for tests on
//!   paused time.
//! - [`TestClient`] speaks MQTT 3.1.1 or 5.0 through the `tributary-mqtt`
//!   codec: [`clean`] and [`persistent`] build the CONNECT, [`will`] a
//!   will; it publishes at any QoS, subscribes, and waits for the next
//!   packet of an expected type within [`RECV_TIMEOUT`].
//!
//! - [`settle`] helps tests on paused time (`tokio::time::pause`), which
//!   drive keep-alive and will delays with `tokio::time::advance`.
//!
//! Only for tests: the crate is not published.
//!
//! ```no_run
//! # async fn example() -> tributary_testkit::Result<()> {
//! use tributary_mqtt::{ProtocolVersion, QoS};
//! use tributary_testkit::{clean, TestBroker};
//!
//! let broker = TestBroker::start().await?;
//! let (mut sub, _) = broker.connect(clean(ProtocolVersion::V5, "sub")).await?;
//! sub.subscribe("sensors/#", QoS::AtLeastOnce).await?;
//! let (mut publisher, _) = broker.connect(clean(ProtocolVersion::V311, "pub")).await?;
//! publisher.publish_stored("sensors/1", b"21.5", QoS::AtLeastOnce).await?;
//! let delivered = sub.expect_publish().await?;
//! assert_eq!(&delivered.payload[..], b"21.5");
//! broker.shutdown().await?;
//! # Ok(())
//! # }
//! ```

mod broker;
mod client;
mod error;

pub use broker::TestBroker;
pub use client::{clean, persistent, will, Io, TestClient, RECV_TIMEOUT};
pub use error::{Error, Result};

/// On paused time, lets every task that can make progress do so before
/// the test moves the clock: tokio moves a paused clock by itself only when
/// the runtime has nothing else to do, so this 1 ms sleep returns once the
/// broker's tasks have run (a closed connection reached its will, for
/// instance). On a running clock it is a 1 ms sleep.
pub async fn settle() {
    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
}
