//! Idle connections: open `clients` connections at `connect_rate` per
//! second, keep each alive with PINGREQ, and close them when the run stops.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tributary_mqtt::Packet;

use crate::config::BenchConfig;
use crate::pub_mode::{ping_interval, Pacer};
use crate::shared::Shared;
use crate::{Error, Result};
use tributary_client::{Client, Connector, SessionStart};

const DISCONNECT_GRACE: Duration = Duration::from_secs(2);

/// Spawns the connections, paced, into `tasks`; each task returns its
/// CONNECT→CONNACK latency (`None` when it failed). A duration rather than a
/// histogram per connection: ten thousand histograms would cost 250 MB.
pub(crate) async fn open_all(
    config: Arc<BenchConfig>,
    connector: Arc<Connector>,
    shared: Arc<Shared>,
    tasks: &mut JoinSet<Option<Duration>>,
) {
    let pacer = Pacer::new(Instant::now(), f64::from(config.connect_rate));
    for index in 0..config.clients {
        if let Some(due) = pacer.due(index as u64) {
            tokio::select! {
                _ = shared.cancel.cancelled() => return,
                _ = tokio::time::sleep_until(due.into()) => {}
            }
        }
        tasks.spawn(idle_connection(
            index,
            config.clone(),
            connector.clone(),
            shared.clone(),
        ));
    }
}

async fn idle_connection(
    index: usize,
    config: Arc<BenchConfig>,
    connector: Arc<Connector>,
    shared: Arc<Shared>,
) -> Option<Duration> {
    let client_id = config.client_id("conn", index);
    let begin = Instant::now();
    let mut client = match connector.connect(&client_id, SessionStart::Clean).await {
        Ok(client) => client,
        Err(e) => {
            shared.fail(&format!("connection {client_id}"), &e);
            attempted(&shared);
            return None;
        }
    };
    let latency = begin.elapsed();
    attempted(&shared);
    shared.connected.fetch_add(1, Ordering::Relaxed);
    shared.ready.fetch_add(1, Ordering::Relaxed);
    let result = idle(&config, &shared, &mut client).await;
    shared.connected.fetch_sub(1, Ordering::Relaxed);
    match result {
        Ok(()) => client.disconnect(DISCONNECT_GRACE).await,
        Err(e) => shared.fail(&format!("connection {client_id} dropped"), &e),
    }
    Some(latency)
}

/// Notes when the latest connection attempt ended: the end of the connect
/// phase is the last of these.
fn attempted(shared: &Shared) {
    let now = shared.nanos_since_start(Instant::now());
    shared.last_finish.fetch_max(now, Ordering::Relaxed);
}

async fn idle(config: &BenchConfig, shared: &Shared, client: &mut Client) -> Result<()> {
    let mut ping = ping_interval(config.keep_alive);
    loop {
        let Client { reader, writer, .. } = client;
        tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return Ok(()),
            read = reader.fill() => {
                read?;
                while let Some(packet) = reader.next_packet()? {
                    match packet {
                        Packet::PingResp => {}
                        Packet::Disconnect(d) => return Err(Error::Closed(Some(d.reason))),
                        _ => return Err(Error::Unexpected("packet on an idle connection")),
                    }
                }
            }
            written = writer.write_some(), if writer.wants_write() => written?,
            _ = ping.tick() => writer.queue(&Packet::PingReq)?,
        }
    }
}
