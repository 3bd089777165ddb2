//! Joining and leaving: the runtime API commands, in order, for each
//! backend the node is in.
//!
//! ```text
//! join:  add server B/N ADDR OPTIONS   (starts in maintenance)
//!        [a stale B/N from a killed run: set … state maint, shutdown sessions, del, add again]
//!        enable health B/N             (when OPTIONS has `check`)
//!        enable server B/N
//! leave: set server B/N state drain    (no new connections; then the clients are told to go)
//!        set server B/N state maint
//!        del server B/N                (only in maintenance with no connection left)
//! ```

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{ClusterConfig, ServerSpec};
use crate::runtime_api::RuntimeApi;
use crate::Result;

/// Bounds each runtime API command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// First wait before joining again after a failure; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long `del server` is retried while HAProxy still counts connections.
const DELETE_PATIENCE: Duration = Duration::from_secs(3);

/// This node as servers of HAProxy backends.
#[derive(Debug)]
pub struct Membership {
    api: RuntimeApi,
    name: String,
    servers: Vec<ServerSpec>,
    drain: Duration,
}

impl Membership {
    /// `node_id` names the server when `node_name` is not set.
    pub fn new(config: &ClusterConfig, node_id: &str) -> Membership {
        let name = config
            .node_name
            .clone()
            .unwrap_or_else(|| format!("tributary-{node_id}"));
        Membership {
            api: RuntimeApi::new(config.api.clone(), COMMAND_TIMEOUT),
            name,
            servers: config.servers.clone(),
            drain: config.drain,
        }
    }

    /// The server's name in every backend.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long the clients' gradual disconnection takes (`drain_secs`).
    pub fn drain_period(&self) -> Duration {
        self.drain
    }

    /// Joins every backend, trying again with backoff (HAProxy not up yet,
    /// the backend not there yet) until it succeeds or `stop` is cancelled.
    /// Returns whether the node joined. The node serves either way: one log
    /// line says why it is not in rotation yet, and one when it is.
    pub async fn join(&self, stop: &CancellationToken) -> bool {
        let mut backoff = FIRST_BACKOFF;
        let mut failures = 0u32;
        loop {
            let attempt = tokio::select! {
                () = stop.cancelled() => return false,
                attempt = self.register() => attempt,
            };
            match attempt {
                Ok(()) => {
                    tracing::info!(
                        api = %self.api.address(),
                        server = %self.name,
                        backends = %self.backends(),
                        "joined the haproxy backend: in rotation"
                    );
                    return true;
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 {
                        tracing::warn!(error = %e, "could not join the haproxy backend; serving anyway, trying again with backoff");
                    } else {
                        tracing::debug!(error = %e, failures, "join the haproxy backend");
                    }
                }
            }
            tokio::select! {
                () = stop.cancelled() => return false,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One attempt at joining every backend.
    pub async fn register(&self) -> Result<()> {
        for server in &self.servers {
            self.add(server).await?;
            let target = self.target(server);
            if server.checked() {
                self.api.command(&format!("enable health {target}")).await?;
            }
            self.api.command(&format!("enable server {target}")).await?;
        }
        Ok(())
    }

    /// `add server`; a server of the same name left by an earlier run (a
    /// `kill -9`, or this node restarted with the same data dir) is
    /// removed first, since its address or options may have changed.
    async fn add(&self, server: &ServerSpec) -> Result<()> {
        let add = format!(
            "add server {} {} {}",
            self.target(server),
            server.address,
            server.options
        );
        match self.api.command(add.trim_end()).await {
            Err(e) if e.already_exists() => {
                tracing::info!(server = %self.target(server), "replacing the entry an earlier run of this node left in haproxy");
                self.remove(server).await?;
                self.api.command(add.trim_end()).await.map(drop)
            }
            other => other.map(drop),
        }
    }

    /// Stops new connections to this node (`state drain`); HAProxy keeps
    /// the established ones, which the broker then closes gradually.
    pub async fn drain(&self) -> Result<()> {
        for server in &self.servers {
            self.api
                .command(&format!("set server {} state drain", self.target(server)))
                .await?;
        }
        tracing::info!(server = %self.name, backends = %self.backends(), "haproxy: draining (no new connections)");
        Ok(())
    }

    /// Takes the node out of every backend. Each is tried even when an
    /// earlier one failed; the first error is returned.
    pub async fn leave(&self) -> Result<()> {
        let mut first = None;
        for server in &self.servers {
            if let Err(e) = self.remove(server).await {
                first.get_or_insert(e);
            }
        }
        match first {
            None => {
                tracing::info!(server = %self.name, backends = %self.backends(), "left the haproxy backend");
                Ok(())
            }
            Some(e) => Err(e),
        }
    }

    /// Maintenance, then `del server`, retried a little while HAProxy still
    /// counts connections (clients that have not closed yet: their sessions
    /// are shut after the first refusal). A server already gone is fine.
    async fn remove(&self, server: &ServerSpec) -> Result<()> {
        let target = self.target(server);
        match self
            .api
            .command(&format!("set server {target} state maint"))
            .await
        {
            Err(e) if e.no_such_server() => return Ok(()),
            other => other.map(drop)?,
        }
        let deadline = tokio::time::Instant::now() + DELETE_PATIENCE;
        let mut shut = false;
        loop {
            match self.api.command(&format!("del server {target}")).await {
                Ok(_) => return Ok(()),
                Err(e) if e.no_such_server() => return Ok(()),
                Err(e) if e.still_connected() && tokio::time::Instant::now() < deadline => {
                    if !shut {
                        self.api
                            .command(&format!("shutdown sessions server {target}"))
                            .await?;
                        shut = true;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn target(&self, server: &ServerSpec) -> String {
        format!("{}/{}", server.backend, self.name)
    }

    fn backends(&self) -> String {
        let names: Vec<&str> = self.servers.iter().map(|s| s.backend.as_str()).collect();
        names.join(",")
    }
}
