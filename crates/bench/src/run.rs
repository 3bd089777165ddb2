//! The coordinator: starts the clients of a mode, watches the shared
//! counters (printing the progress line), decides when the run is over,
//! stops everything and adds up the outcome.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tributary_mqtt::ProtocolVersion;

use crate::config::{BenchConfig, Mode};
use crate::report::{BenchReport, Stop};
use crate::shared::Shared;
use crate::stats::{Latency, LatencySummary};
use crate::sub_mode::{SubscriberOutcome, SUBACK_TIMEOUT};
use crate::{conn_mode, pub_mode, sub_mode, Result};
use tributary_client::{Connector, CONNECT_TIMEOUT};

/// How often the coordinator looks at the counters.
const TICK: Duration = Duration::from_millis(50);
/// How often the progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Sequence numbers a `sub` run tracks per publisher: 2^28, a 32 MiB bitmap
/// at most, whatever a stray payload claims.
const SUB_MODE_SEQ_LIMIT: u64 = 1 << 28;

/// Runs the load `config` describes until it is done or the time limit, and
/// reports what happened. Errors only for a config that cannot run; failed
/// connections are counted in the report.
pub async fn run(config: BenchConfig) -> Result<BenchReport> {
    run_with_ready(config, None).await
}

/// [`run`], telling `ready` when the load begins: publishers start
/// (pub), every subscriber holds its subscription (sub), every connection
/// was attempted (conn). For a second run, or a test, that must not start
/// before.
pub async fn run_with_ready(
    config: BenchConfig,
    ready: Option<oneshot::Sender<()>>,
) -> Result<BenchReport> {
    config.validate()?;
    let connector = Arc::new(Connector::new(&config.connect_options())?);
    let config = Arc::new(config);
    let ready = Ready(ready);
    match config.mode {
        Mode::Pub => run_pub(config, connector, ready).await,
        Mode::Sub => run_sub(config, connector, ready).await,
        Mode::Conn => run_conn(config, connector, ready).await,
    }
}

/// The optional readiness signal; sent at most once.
struct Ready(Option<oneshot::Sender<()>>);

impl Ready {
    fn send(&mut self) {
        if let Some(tx) = self.0.take() {
            // The caller may have stopped listening; that is its choice.
            let _ = tx.send(());
        }
    }
}

/// Starts `count` subscriber tasks; `seq_limit` bounds the sequence numbers
/// each tracks per publisher.
fn spawn_subscribers(
    count: usize,
    config: &Arc<BenchConfig>,
    connector: &Arc<Connector>,
    shared: &Arc<Shared>,
    seq_limit: u64,
) -> Vec<JoinHandle<SubscriberOutcome>> {
    (0..count)
        .map(|i| {
            tokio::spawn(sub_mode::subscriber(
                i,
                config.clone(),
                connector.clone(),
                shared.clone(),
                seq_limit,
            ))
        })
        .collect()
}

async fn run_pub(
    config: Arc<BenchConfig>,
    connector: Arc<Connector>,
    mut ready: Ready,
) -> Result<BenchReport> {
    let shared = Arc::new(Shared::new(config.subscribers));
    let deadline = shared.clock.start() + config.time_limit;
    let mut progress = Progress::new(&config, &shared);

    // Subscribers first: they must hold their subscription before the
    // first message is published.
    let subscribers = spawn_subscribers(
        config.subscribers,
        &config,
        &connector,
        &shared,
        config.messages,
    );
    wait_ready(
        &shared,
        config.subscribers as u64,
        0,
        deadline,
        &mut progress,
    )
    .await;
    let ready_before = Shared::get(&shared.ready);
    let failed_before = Shared::get(&shared.failed);

    // Publishers connect, then all start together.
    let (start_tx, start_rx) = watch::channel(None);
    let publishers: Vec<JoinHandle<pub_mode::PublisherOutcome>> = (0..config.clients)
        .map(|i| {
            tokio::spawn(pub_mode::publisher(
                i,
                config.clone(),
                connector.clone(),
                shared.clone(),
                start_rx.clone(),
            ))
        })
        .collect();
    let target = ready_before + config.clients as u64;
    wait_ready(&shared, target, failed_before, deadline, &mut progress).await;
    let started = Instant::now();
    // Nobody listening just means every publisher already failed.
    let _ = start_tx.send(Some(started));
    progress.restart(started);
    ready.send();

    let mut publishers_over: Option<Instant> = None;
    let stop = loop {
        tokio::time::sleep(TICK).await;
        let now = Instant::now();
        progress.maybe_print(now);
        if now >= deadline {
            break Stop::TimeLimit;
        }
        if publishers_over.is_none() && publishers.iter().all(JoinHandle::is_finished) {
            publishers_over = Some(now);
        }
        let Some(over_at) = publishers_over else {
            continue;
        };
        let expected = match config.qos {
            tributary_mqtt::QoS::AtMostOnce => Shared::get(&shared.sent),
            _ => Shared::get(&shared.acked),
        };
        let all_received = if config.pairs() {
            // Each subscriber expects its own publisher's messages only.
            let distinct: u64 = shared.distinct.iter().map(Shared::get).sum();
            distinct >= expected
        } else {
            subscribers
                .iter()
                .zip(&shared.distinct)
                .all(|(handle, distinct)| handle.is_finished() || Shared::get(distinct) >= expected)
        };
        if all_received {
            break Stop::Completed;
        }
        let last_receive = shared.instant_at(Shared::get(&shared.last_receive));
        if now.saturating_duration_since(last_receive.max(over_at)) >= config.quiet {
            break Stop::Quiet;
        }
    };
    shared.cancel.cancel();
    let stopped_at = Instant::now();

    let mut ledgers = Vec::with_capacity(publishers.len());
    let mut ack_latency = Latency::new();
    for handle in publishers {
        let outcome = handle.await.unwrap_or_default();
        ack_latency.merge(&outcome.ack_latency);
        ledgers.push(outcome.ledger);
    }
    let mut receive_latency = Latency::new();
    let (mut lost, mut duplicated) = (0, 0);
    for (index, handle) in subscribers.into_iter().enumerate() {
        let Ok(outcome) = handle.await else { continue };
        receive_latency.merge(&outcome.tracker.latency);
        duplicated += outcome.tracker.duplicated;
        if outcome.healthy {
            lost += if config.pairs() {
                outcome.tracker.lost_from(index, &ledgers[index])
            } else {
                outcome.tracker.lost_against(&ledgers)
            };
        }
    }
    progress.finish();

    let end = match stop {
        Stop::TimeLimit => stopped_at,
        _ => {
            let last = Shared::get(&shared.last_finish).max(Shared::get(&shared.last_receive));
            shared.instant_at(last).max(started)
        }
    };
    let elapsed = end.saturating_duration_since(started).as_secs_f64();
    let sent = Shared::get(&shared.sent);
    let acknowledged = Shared::get(&shared.acked);
    let done = match config.qos {
        tributary_mqtt::QoS::AtMostOnce => sent,
        _ => acknowledged,
    };
    Ok(BenchReport {
        sent,
        acknowledged,
        rejected: Shared::get(&shared.rejected),
        received: Shared::get(&shared.received),
        lost,
        duplicated,
        elapsed_s: round3(elapsed),
        msg_per_s: rate(done, elapsed),
        ack_latency_ms: ack_latency.summary(),
        receive_latency_ms: receive_latency.summary(),
        ..base_report(&config, &shared, stop)
    })
}

async fn run_sub(
    config: Arc<BenchConfig>,
    connector: Arc<Connector>,
    mut ready: Ready,
) -> Result<BenchReport> {
    let shared = Arc::new(Shared::new(config.clients));
    let deadline = shared.clock.start() + config.time_limit;
    let mut progress = Progress::new(&config, &shared);
    let subscribers = spawn_subscribers(
        config.clients,
        &config,
        &connector,
        &shared,
        SUB_MODE_SEQ_LIMIT,
    );
    wait_ready(&shared, config.clients as u64, 0, deadline, &mut progress).await;
    ready.send();
    let stop = loop {
        tokio::time::sleep(TICK).await;
        let now = Instant::now();
        progress.maybe_print(now);
        if now >= deadline {
            break Stop::TimeLimit;
        }
        if subscribers.iter().all(JoinHandle::is_finished) {
            break Stop::Completed;
        }
        if Shared::get(&shared.received) > 0 {
            let last = shared.instant_at(Shared::get(&shared.last_receive));
            if now.saturating_duration_since(last) >= config.quiet {
                break Stop::Quiet;
            }
        }
    };
    shared.cancel.cancel();

    let mut receive_latency = Latency::new();
    let (mut lost, mut duplicated) = (0, 0);
    for handle in subscribers {
        let Ok(outcome) = handle.await else { continue };
        receive_latency.merge(&outcome.tracker.latency);
        duplicated += outcome.tracker.duplicated;
        if outcome.healthy {
            lost += outcome.tracker.gaps();
        }
    }
    progress.finish();

    let received = Shared::get(&shared.received);
    let elapsed = if received > 0 {
        let first = Shared::get(&shared.first_receive);
        let last = Shared::get(&shared.last_receive);
        Duration::from_nanos(last.saturating_sub(first)).as_secs_f64()
    } else {
        0.0
    };
    Ok(BenchReport {
        received,
        lost,
        duplicated,
        elapsed_s: round3(elapsed),
        msg_per_s: rate(received, elapsed),
        receive_latency_ms: receive_latency.summary(),
        ..base_report(&config, &shared, stop)
    })
}

async fn run_conn(
    config: Arc<BenchConfig>,
    connector: Arc<Connector>,
    mut ready: Ready,
) -> Result<BenchReport> {
    let shared = Arc::new(Shared::new(0));
    let deadline = shared.clock.start() + config.time_limit;
    let mut progress = Progress::new(&config, &shared);
    let opener = {
        let (config, shared) = (config.clone(), shared.clone());
        tokio::spawn(async move {
            let mut tasks = JoinSet::new();
            conn_mode::open_all(config, connector, shared, &mut tasks).await;
            tasks
        })
    };

    // Every connection attempted: connected, or failed to.
    let clients = config.clients as u64;
    let mut opened_at = None;
    let mut stop = loop {
        tokio::time::sleep(TICK).await;
        let now = Instant::now();
        progress.maybe_print(now);
        if now >= deadline {
            break Stop::TimeLimit;
        }
        if Shared::get(&shared.ready) + Shared::get(&shared.failed) >= clients {
            opened_at = Some(now);
            ready.send();
            break Stop::Completed;
        }
    };
    let open_elapsed = match stop {
        Stop::TimeLimit => Instant::now().saturating_duration_since(shared.clock.start()),
        _ => Duration::from_nanos(Shared::get(&shared.last_finish)),
    };
    if let Some(opened_at) = opened_at {
        let hold_until = (opened_at + config.hold).min(deadline);
        loop {
            let now = Instant::now();
            progress.maybe_print(now);
            if now >= hold_until {
                if hold_until == deadline && opened_at + config.hold > deadline {
                    stop = Stop::TimeLimit;
                }
                break;
            }
            tokio::time::sleep(TICK.min(hold_until - now)).await;
        }
    }
    let connected = Shared::get(&shared.connected);
    shared.cancel.cancel();

    let mut connect_latency = Latency::new();
    if let Ok(mut tasks) = opener.await {
        while let Some(done) = tasks.join_next().await {
            if let Ok(Some(latency)) = done {
                connect_latency.record(latency);
            }
        }
    }
    progress.finish();

    let elapsed = open_elapsed.as_secs_f64();
    Ok(BenchReport {
        elapsed_s: round3(elapsed),
        msg_per_s: rate(Shared::get(&shared.ready), elapsed),
        connected: Some(connected),
        connect_latency_ms: Some(connect_latency.summary()),
        ..base_report(&config, &shared, stop)
    })
}

/// Waits until `target` clients are ready, or everyone not ready has failed
/// (beyond the `failed_before` of earlier phases), or the connect and
/// subscribe timeouts have passed, or the deadline.
async fn wait_ready(
    shared: &Shared,
    target: u64,
    failed_before: u64,
    deadline: Instant,
    progress: &mut Progress,
) {
    // Clients give up on their own by then; this bound only guards against
    // a client stuck in a way we did not foresee.
    let give_up = (Instant::now() + CONNECT_TIMEOUT + SUBACK_TIMEOUT + TICK).min(deadline);
    loop {
        let ready = Shared::get(&shared.ready);
        let failed = Shared::get(&shared.failed) - failed_before;
        let now = Instant::now();
        if ready + failed >= target || now >= give_up {
            return;
        }
        progress.maybe_print(now);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The fields every mode fills the same way.
fn base_report(config: &BenchConfig, shared: &Shared, stop: Stop) -> BenchReport {
    let qos = match config.mode {
        Mode::Sub => config.sub_qos,
        _ => config.qos,
    };
    BenchReport {
        mode: config.mode.name(),
        clients: config.clients,
        messages_per_client: match config.mode {
            Mode::Pub => config.messages,
            _ => 0,
        },
        size: config.size,
        qos: qos as u8,
        protocol: match config.protocol {
            ProtocolVersion::V311 => "3.1.1",
            ProtocolVersion::V5 => "5",
        },
        subscribers: match config.mode {
            Mode::Pub => config.subscribers,
            _ => 0,
        },
        sent: 0,
        acknowledged: 0,
        rejected: 0,
        received: 0,
        lost: 0,
        duplicated: 0,
        elapsed_s: 0.0,
        msg_per_s: 0.0,
        ack_latency_ms: LatencySummary::default(),
        receive_latency_ms: LatencySummary::default(),
        connected: None,
        connect_latency_ms: None,
        failed: Shared::get(&shared.failed),
        stopped: stop,
        errors: shared.errors(),
    }
}

fn rate(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        (count as f64 / seconds).round()
    } else {
        0.0
    }
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// The once-a-second progress line on stderr.
struct Progress {
    enabled: bool,
    mode: Mode,
    /// The counter whose growth is the current rate.
    shared: Arc<Shared>,
    qos0: bool,
    since: Instant,
    next: Instant,
    last_count: u64,
    printed: bool,
}

impl Progress {
    fn new(config: &BenchConfig, shared: &Arc<Shared>) -> Progress {
        let now = Instant::now();
        Progress {
            enabled: config.progress,
            mode: config.mode,
            shared: shared.clone(),
            qos0: config.qos == tributary_mqtt::QoS::AtMostOnce,
            since: shared.clock.start(),
            next: now + PROGRESS_EVERY,
            last_count: 0,
            printed: false,
        }
    }

    /// Counts elapsed time from `at` on (the publishers' start).
    fn restart(&mut self, at: Instant) {
        self.since = at;
        self.next = at + PROGRESS_EVERY;
    }

    fn rate_count(&self) -> u64 {
        match self.mode {
            Mode::Pub if self.qos0 => Shared::get(&self.shared.sent),
            Mode::Pub => Shared::get(&self.shared.acked),
            Mode::Sub => Shared::get(&self.shared.received),
            Mode::Conn => Shared::get(&self.shared.ready),
        }
    }

    fn maybe_print(&mut self, now: Instant) {
        if !self.enabled || now < self.next {
            return;
        }
        let interval = now.saturating_duration_since(self.next - PROGRESS_EVERY);
        self.next = now + PROGRESS_EVERY;
        let count = self.rate_count();
        let per_second = (count - self.last_count.min(count)) as f64 / interval.as_secs_f64();
        self.last_count = count;
        let s = &self.shared;
        let elapsed = now.saturating_duration_since(self.since).as_secs_f64();
        let line = match self.mode {
            Mode::Pub => format!(
                "[{elapsed:6.1}s] sent {}  acked {}  received {}  {per_second:.0} msg/s",
                Shared::get(&s.sent),
                Shared::get(&s.acked),
                Shared::get(&s.received),
            ),
            Mode::Sub => format!(
                "[{elapsed:6.1}s] subscribed {}  received {}  {per_second:.0} msg/s",
                Shared::get(&s.ready),
                Shared::get(&s.received),
            ),
            Mode::Conn => format!(
                "[{elapsed:6.1}s] connected {}  failed {}  {per_second:.0} conn/s",
                Shared::get(&s.connected),
                Shared::get(&s.failed),
            ),
        };
        let failed = Shared::get(&s.failed);
        let line = if failed > 0 && self.mode != Mode::Conn {
            format!("{line}  failed {failed}")
        } else {
            line
        };
        let _ = writeln!(std::io::stderr().lock(), "{line}");
        self.printed = true;
    }

    fn finish(&mut self) {
        if self.printed {
            let _ = std::io::stderr().flush();
        }
    }
}
