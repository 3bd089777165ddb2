//! A node joins and leaves an HAProxy backend by itself, through HAProxy's
//! runtime API, with no service registry in between (docs/cluster.md).
//!
//! - [`ClusterFileConfig`] is the `[cluster]` table; [`ClusterFileConfig::build`]
//!   checks it into a [`ClusterConfig`] (`None` when no runtime API is set).
//! - [`RuntimeApi`] sends one command per connection to HAProxy's `stats
//!   socket` (unix or TCP) and treats any answer but success as an error.
//! - [`Membership`] is this node in its backends: [`Membership::join`]
//!   (`add server`, `enable health`, `enable server`, retried with backoff,
//!   replacing an entry a killed run left), [`Membership::drain`] (`state
//!   drain`) and [`Membership::leave`] (`state maint`, `del server`).
//!
//! What the node does between drain and leave (disconnecting its clients
//! gradually) is the broker's `Broker::drain`; `tributary serve` puts the
//! two together on SIGTERM.
//!
//! ```no_run
//! # async fn demo() -> tributary_membership::Result<()> {
//! use tributary_membership::{ClusterFileConfig, Membership};
//!
//! let table = ClusterFileConfig {
//!     haproxy_api: Some("/run/haproxy/admin.sock".into()),
//!     advertise: Some("10.0.0.5:1883".into()),
//!     ..ClusterFileConfig::default()
//! };
//! let config = table.build(false)?.expect("haproxy_api is set");
//! let node = Membership::new(&config, "4f2a9c0e1b7d3a55");
//! let stop = tokio_util::sync::CancellationToken::new();
//! if node.join(&stop).await {
//!     // ... serve; on SIGTERM:
//!     node.drain().await?;
//!     node.leave().await?;
//! }
//! # Ok(()) }
//! ```

mod config;
mod error;
mod membership;
mod runtime_api;

pub use config::{
    default_server_options, ClusterConfig, ClusterFileConfig, ServerSpec, CHECK_OPTIONS,
    MAX_DRAIN_SECS,
};
pub use error::{Error, Result};
pub use membership::Membership;
pub use runtime_api::{ApiAddress, RuntimeApi, SUCCESS};

#[cfg(test)]
mod tests;
