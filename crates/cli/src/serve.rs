//! `tributary serve`: the broker on the embedded log.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use tributary_broker::Broker;
use tributary_log::Log;

use crate::config::FileConfig;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML config file (see docs/configuration.md); flags override it.
    #[arg(long, env = "TRIBUTARY_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address of the MQTT listener [default: 127.0.0.1:1883].
    #[arg(long, env = "TRIBUTARY_MQTT", value_name = "ADDR")]
    mqtt: Option<SocketAddr>,
    /// Directory for the log, sessions and retained messages [default: ./data].
    #[arg(long, env = "TRIBUTARY_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Let clients connect without credentials; only on a loopback listener.
    #[arg(long, env = "TRIBUTARY_ALLOW_ANONYMOUS")]
    allow_anonymous: bool,
    /// Expect a PROXY protocol v2 header (HAProxy send-proxy-v2) on every connection.
    #[arg(long, env = "TRIBUTARY_PROXY_PROTOCOL")]
    proxy_protocol: bool,
}

impl ServeArgs {
    fn compose(&self) -> anyhow::Result<FileConfig> {
        let mut config = match &self.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        if let Some(addr) = self.mqtt {
            config.mqtt.listen = addr;
        }
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        if self.allow_anonymous {
            config.mqtt.allow_anonymous = true;
        }
        if self.proxy_protocol {
            config.mqtt.proxy_protocol = true;
        }
        config.broker().validate().map_err(anyhow::Error::msg)?;
        Ok(config)
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.compose()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: FileConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("create data dir {}", config.data_dir.display()))?;
    let log = Log::open(config.log_config())
        .with_context(|| format!("open the log in {}", config.data_dir.display()))?;
    let broker = Broker::open(config.broker(), log, &config.data_dir).await?;
    let listener = tokio::net::TcpListener::bind(config.mqtt.listen)
        .await
        .with_context(|| format!("listen for MQTT on {}", config.mqtt.listen))?;
    let local = listener.local_addr().context("read the listener address")?;
    tracing::info!(data_dir = %config.data_dir.display(), "mqtt listening on {local}");
    if broker.accounts().is_empty() {
        let dir = config.data_dir.display();
        tracing::warn!(
            "no accounts yet{}; create the first owner and device (while this runs) with: \
             tributary owner add NAME --data-dir {dir} && tributary device add --owner NAME DEVICE --data-dir {dir}",
            if config.mqtt.allow_anonymous { "" } else { " and anonymous access is off, so every client is refused" }
        );
    }
    broker.run(listener, shutdown_signal()).await?;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(e) => {
                    tracing::error!(error = %e, "install the SIGTERM handler");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutdown signal received");
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
