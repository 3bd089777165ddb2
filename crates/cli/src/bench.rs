//! `tributary bench`: the MQTT load tool. Maps the flags onto a
//! `tributary_bench::BenchConfig`, runs it, prints the summary.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use tributary_bench::{BenchConfig, Mode, TlsConfig};
use tributary_mqtt::{ProtocolVersion, QoS};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BenchMode {
    /// Publishers send --messages each (with --subscribers, also receive them).
    Pub,
    /// Subscribers receive what bench publishers in another process send.
    Sub,
    /// Idle connections, opened at --connect-rate and held for --hold.
    Conn,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Stops by itself: when every message is sent, acknowledged and received (or \
nothing arrives for 2 s after the publishers finished), after --hold in conn \
mode, or at --time-limit. Exit status 1 when clients failed to connect or lost \
their connection (the reasons are printed), and with --fail-on-loss when \
messages were lost.

Examples:
  tributary bench pub --clients 4 --messages 100000 --qos 1 --subscribers 1
  tributary bench sub --filter 'bench/#' --json
  tributary bench pub --clients 5000 --subscribers 5000 --topic 'o/{client}' \
      --filter 'o/{client}' --rate 10000 --messages 20
  tributary bench conn --clients 10000 --connect-rate 1000 --hold 30")]
pub struct BenchArgs {
    /// What to load the broker with.
    #[arg(value_enum)]
    mode: BenchMode,
    /// Broker host name or address.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Broker port.
    #[arg(long, default_value_t = 1883)]
    port: u16,
    /// Publishers (pub), subscribers (sub) or connections (conn).
    #[arg(long, value_name = "N", default_value_t = 10)]
    clients: usize,
    /// Messages each publisher sends.
    #[arg(long, value_name = "M", default_value_t = 1000)]
    messages: u64,
    /// Payload size in bytes, at least 21 (the payload header: publisher,
    /// sequence number, send time).
    #[arg(long, value_name = "BYTES", default_value_t = 100)]
    size: usize,
    /// QoS of the published messages.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// Target publish rate summed over all publishers; 0 = as fast as possible.
    #[arg(long, value_name = "MSG_PER_S", default_value_t = 0)]
    rate: u64,
    /// MQTT protocol version: 3.1.1 (also v311, 4) or 5 (also v5, 5.0).
    #[arg(long, value_name = "VERSION", default_value = "3.1.1", value_parser = parse_protocol)]
    protocol: ProtocolVersion,
    /// Topic each publisher sends to; {client} becomes the publisher's index.
    #[arg(long, value_name = "TEMPLATE", default_value = "bench/{client}")]
    topic: String,
    /// Most unacknowledged QoS 1/2 messages per publisher (a 5.0 broker's
    /// Receive Maximum caps it further).
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u16).range(1..))]
    inflight: u16,
    /// User name for CONNECT.
    #[arg(long, env = "TRIBUTARY_BENCH_USERNAME")]
    username: Option<String>,
    /// Password for CONNECT (prefer the environment variable to keep it out
    /// of the process list).
    #[arg(long, env = "TRIBUTARY_BENCH_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Connect over TLS (the port is still --port: set it, e.g. to 8883).
    #[arg(long)]
    tls: bool,
    /// PEM file of CA certificates to trust with --tls [default: the system's].
    #[arg(long, value_name = "PATH", requires = "tls")]
    cafile: Option<PathBuf>,
    /// With --tls, accept any server certificate: for self-signed test
    /// setups only.
    #[arg(long, requires = "tls")]
    insecure: bool,
    /// Stop after this many seconds and report whatever happened.
    #[arg(long, value_name = "SECS", default_value_t = 300.0, value_parser = parse_seconds)]
    time_limit: f64,
    /// Print one JSON line instead of the human summary (progress lines
    /// then only when stderr is a terminal).
    #[arg(long)]
    json: bool,
    /// Print the progress line every second on stderr, also with --json
    /// when stderr is not a terminal (for scripts that watch a run).
    #[arg(long)]
    progress: bool,
    /// pub mode: also run K subscribers on --filter; each must receive every
    /// message. They subscribe before the publishers start.
    #[arg(long, value_name = "K", default_value_t = 0)]
    subscribers: usize,
    /// Topic filter of the subscribers (sub mode and --subscribers);
    /// `{client}` is replaced by the subscriber's index. In pub mode,
    /// `--topic 'o/{client}' --filter 'o/{client}' --subscribers N` (N =
    /// --clients) pairs subscriber i with publisher i: many owners, each
    /// reading only their own data.
    #[arg(long, default_value = "bench/#")]
    filter: String,
    /// QoS the subscribers ask for.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=2))]
    sub_qos: u8,
    /// Subscribers start with a clean session (the default).
    #[arg(long, overrides_with = "persistent")]
    clean_start: bool,
    /// Subscribers keep their session (5.0: expiry 1 h), so a later run with
    /// the same --client-id-prefix resumes it.
    #[arg(long, overrides_with = "clean_start")]
    persistent: bool,
    /// Client ids are PREFIX + pub-N / sub-N / conn-N (default `tb<pid>-`).
    #[arg(long, value_name = "PREFIX")]
    client_id_prefix: Option<String>,
    /// conn mode: new connections per second.
    #[arg(long, value_name = "PER_S", default_value_t = 500,
          value_parser = clap::value_parser!(u32).range(1..))]
    connect_rate: u32,
    /// conn mode: keep the connections open this long once all are made.
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = parse_seconds)]
    hold: f64,
    /// Keep-alive in seconds announced in CONNECT; idle clients ping at half
    /// of it (0 turns it off).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    keep_alive: u16,
    /// Exit with status 1 when any message was lost.
    #[arg(long)]
    fail_on_loss: bool,
}

pub(crate) fn parse_protocol(value: &str) -> Result<ProtocolVersion, String> {
    match value.to_ascii_lowercase().as_str() {
        "3.1.1" | "311" | "v311" | "v3.1.1" | "4" => Ok(ProtocolVersion::V311),
        "5" | "5.0" | "v5" | "v5.0" => Ok(ProtocolVersion::V5),
        other => Err(format!("unknown MQTT version {other:?}: use 3.1.1 or 5")),
    }
}

fn parse_seconds(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Ok(secs),
        _ => Err(format!("{value:?} is not a number of seconds")),
    }
}

impl BenchArgs {
    fn config(&self) -> BenchConfig {
        let defaults = BenchConfig::default();
        let qos = |q: u8| QoS::from_u8(q).expect("clap keeps QoS within 0..=2");
        BenchConfig {
            mode: match self.mode {
                BenchMode::Pub => Mode::Pub,
                BenchMode::Sub => Mode::Sub,
                BenchMode::Conn => Mode::Conn,
            },
            host: self.host.clone(),
            port: self.port,
            clients: self.clients,
            messages: self.messages,
            size: self.size,
            qos: qos(self.qos),
            rate: self.rate,
            protocol: self.protocol,
            topic: self.topic.clone(),
            inflight: self.inflight,
            username: self.username.clone(),
            password: self.password.clone(),
            tls: self.tls.then(|| TlsConfig {
                cafile: self.cafile.clone(),
                insecure: self.insecure,
            }),
            time_limit: Duration::from_secs_f64(self.time_limit),
            subscribers: self.subscribers,
            filter: self.filter.clone(),
            sub_qos: qos(self.sub_qos),
            clean_start: !self.persistent,
            client_id_prefix: self
                .client_id_prefix
                .clone()
                .unwrap_or(defaults.client_id_prefix),
            connect_rate: self.connect_rate,
            hold: Duration::from_secs_f64(self.hold),
            keep_alive: self.keep_alive,
            quiet: defaults.quiet,
            progress: self.progress || !self.json || std::io::stderr().is_terminal(),
        }
    }
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let config = args.config();
    let runtime = crate::runtime()?;
    let report = runtime.block_on(tributary_bench::run(config))?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{report}");
    }
    if report.failed > 0 {
        anyhow::bail!(
            "{} client(s) failed: {}",
            report.failed,
            report
                .errors
                .iter()
                .map(|(error, n)| format!("{error} ({n}x)"))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    if args.fail_on_loss && report.lost > 0 {
        anyhow::bail!("{} message(s) lost", report.lost);
    }
    Ok(())
}
