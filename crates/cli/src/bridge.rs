//! `tributary bridge`: maps the flags onto a `tributary_bridge::BridgeConfig`,
//! runs it until SIGINT/SIGTERM, prints the summary.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tributary_bridge::{BridgeConfig, SourceUrl, DEFAULT_CLIENT_ID};
use tributary_kafka::{KafkaConfig, TopicRule};
use tributary_mqtt::ProtocolVersion;

/// Read when --password-env names no other variable.
const PASSWORD_ENV: &str = "TRIBUTARY_BRIDGE_PASSWORD";

#[derive(Debug, Args)]
#[command(after_help = "\
At least once: the bridge holds a persistent session on the source (clean \
session off; in 5.0 clean start off and a one-week session expiry) with a QoS 1 \
subscription to every --topic, so the source queues messages while the bridge \
is away. A message is acknowledged (PUBACK) to the source only after Kafka \
acknowledged it (idempotent producer, acks=all), and acknowledgements go out \
in the order the messages arrived. When Kafka does not acknowledge a message \
within --ack-timeout-ms, the bridge does not acknowledge it: it drops the \
connection and reconnects, and the source sends every unacknowledged message \
again. Nothing is lost, but a redelivered message can reach Kafka twice (each \
copy with its own tributary.message-id header): consumers must tolerate \
duplicates. The summary counts the source's redeliveries. QoS 0 messages are \
forwarded without any of this: they can be lost.

The password comes from the environment, never from a flag: \
$TRIBUTARY_BRIDGE_PASSWORD, or the variable named by --password-env.

Examples:
  tributary bridge --from mqtt://broker.lan:1883 --topic 'sensors/#' --to kafka://127.0.0.1:9092
  TRIBUTARY_BRIDGE_PASSWORD=... tributary bridge --from mqtts://broker.example --cafile ca.pem \\
      --username bridge --topic 'a/#' --topic 'b/+/c' --to kafka://k1:9092,k2:9092 \\
      --kafka-topic 'b/+/c -> iot.b'")]
pub struct BridgeArgs {
    /// Source broker: mqtt://HOST[:PORT] (default port 1883) or
    /// mqtts://HOST[:PORT] (TLS, default port 8883).
    #[arg(long, value_name = "URL")]
    from: String,
    /// Topic filter to subscribe to on the source, at QoS 1; repeatable.
    #[arg(long = "topic", value_name = "FILTER", required = true)]
    topics: Vec<String>,
    /// Kafka bootstrap servers: kafka://HOST:PORT[,HOST:PORT].
    #[arg(long, value_name = "URL")]
    to: String,
    /// "FILTER -> TOPIC": messages whose MQTT topic matches FILTER go to the
    /// Kafka topic TOPIC; repeatable, the first match wins.
    #[arg(long = "kafka-topic", value_name = "RULE")]
    kafka_topics: Vec<String>,
    /// Kafka topic of messages no --kafka-topic rule matches.
    #[arg(long, value_name = "TOPIC", default_value = tributary_kafka::DEFAULT_TOPIC)]
    default_kafka_topic: String,
    /// MQTT version spoken to the source: 3.1.1 (also v311, 4) or 5 (also v5, 5.0).
    #[arg(long, value_name = "VERSION", default_value = "3.1.1", value_parser = crate::bench::parse_protocol)]
    mqtt_version: ProtocolVersion,
    /// Client id of the bridge's persistent session on the source. Two
    /// bridges must not share one (they would take the session from each other).
    #[arg(long, default_value = DEFAULT_CLIENT_ID)]
    client_id: String,
    /// User name for CONNECT.
    #[arg(long)]
    username: Option<String>,
    /// Name of the environment variable holding the password
    /// [default: TRIBUTARY_BRIDGE_PASSWORD, if set].
    #[arg(long, value_name = "VAR")]
    password_env: Option<String>,
    /// PEM file of CA certificates to trust for an mqtts:// source
    /// [default: the system's].
    #[arg(long, value_name = "PATH")]
    cafile: Option<PathBuf>,
    /// Most messages received and not yet acknowledged by Kafka; the source
    /// is not read while this many are in flight (5.0: also sent as Receive Maximum).
    #[arg(long, value_name = "N", default_value_t = tributary_bridge::DEFAULT_INFLIGHT)]
    inflight: usize,
    /// How long a message may wait for Kafka's acknowledgement before the
    /// bridge reconnects to the source instead of acknowledging it.
    #[arg(long, value_name = "MS",
          default_value_t = tributary_kafka::DEFAULT_ACK_TIMEOUT.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    ack_timeout_ms: u64,
    /// Keep-alive in seconds announced to the source.
    #[arg(long, value_name = "SECS", default_value_t = tributary_bridge::DEFAULT_KEEP_ALIVE_SECS)]
    keep_alive: u16,
}

impl BridgeArgs {
    fn config(&self) -> anyhow::Result<BridgeConfig> {
        let source: SourceUrl = self.from.parse()?;
        let mut kafka = KafkaConfig::from_url(&self.to).context("--to")?;
        kafka.rules = self
            .kafka_topics
            .iter()
            .map(|rule| rule.parse::<TopicRule>())
            .collect::<Result<_, _>>()
            .context("--kafka-topic")?;
        if !tributary_kafka::valid_kafka_topic(&self.default_kafka_topic) {
            anyhow::bail!(
                "--default-kafka-topic {:?} is not a valid Kafka topic",
                self.default_kafka_topic
            );
        }
        kafka.default_topic = self.default_kafka_topic.clone();
        kafka.ack_timeout = Duration::from_millis(self.ack_timeout_ms);
        let mut config = BridgeConfig::new(source, self.topics.clone(), kafka);
        config.protocol = self.mqtt_version;
        config.client_id = self.client_id.clone();
        config.username = self.username.clone();
        config.password = self.password()?.map(bytes::Bytes::from);
        config.cafile = self.cafile.clone();
        config.inflight = self.inflight;
        config.keep_alive = self.keep_alive;
        config.validate()?;
        Ok(config)
    }

    /// From the named variable (which must then be set), else from
    /// TRIBUTARY_BRIDGE_PASSWORD when set.
    fn password(&self) -> anyhow::Result<Option<String>> {
        match &self.password_env {
            Some(var) => std::env::var(var).map(Some).with_context(|| {
                format!("--password-env {var}: the variable is not set (or not UTF-8)")
            }),
            None => Ok(std::env::var(PASSWORD_ENV).ok()),
        }
    }
}

pub fn run(args: BridgeArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let runtime = crate::runtime()?;
    let summary = runtime.block_on(tributary_bridge::run(
        config,
        crate::serve::shutdown_signal(),
    ))?;
    print!("{summary}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: BridgeArgs,
    }

    fn parse(args: &[&str]) -> anyhow::Result<BridgeConfig> {
        let cli = Cli::try_parse_from(std::iter::once("bridge").chain(args.iter().copied()))?;
        cli.args.config()
    }

    #[test]
    fn flags_make_the_config() -> anyhow::Result<()> {
        let config = parse(&[
            "--from",
            "mqtts://broker.example",
            "--topic",
            "a/#",
            "--topic",
            "b/+/c",
            "--to",
            "kafka://k1:9092,k2:9092",
            "--kafka-topic",
            "b/+/c -> iot.b",
            "--mqtt-version",
            "5",
            "--ack-timeout-ms",
            "5000",
            "--inflight",
            "64",
        ])?;
        assert_eq!(config.source.to_string(), "mqtts://broker.example:8883");
        assert_eq!(config.filters, ["a/#", "b/+/c"]);
        assert_eq!(config.kafka.brokers, "k1:9092,k2:9092");
        assert_eq!(config.kafka.topic_for("b/x/c"), "iot.b");
        assert_eq!(
            config.kafka.topic_for("a/x"),
            tributary_kafka::DEFAULT_TOPIC
        );
        assert_eq!(config.kafka.ack_timeout, Duration::from_secs(5));
        assert_eq!(config.protocol, ProtocolVersion::V5);
        assert_eq!(config.client_id, DEFAULT_CLIENT_ID);
        assert_eq!(config.inflight, 64);
        Ok(())
    }

    /// The three flags every bridge needs.
    const BASE: [&str; 6] = [
        "--from",
        "mqtt://h",
        "--topic",
        "a",
        "--to",
        "kafka://k:9092",
    ];

    /// `BASE` plus `extra`.
    fn base_and(extra: &[&'static str]) -> Vec<&'static str> {
        BASE.iter().chain(extra).copied().collect()
    }

    #[test]
    fn bad_flags_are_named() {
        let base = BASE;
        let with = |flag: &str, value: &str| {
            let mut args: Vec<String> = base.iter().map(|a| a.to_string()).collect();
            match args.iter().position(|a| a == flag) {
                Some(i) => args[i + 1] = value.to_owned(),
                None => args.extend([flag.to_owned(), value.to_owned()]),
            }
            args
        };
        for (args, named) in [
            (with("--from", "tcp://h"), "--from"),
            (with("--topic", "a/#/b"), "--topic"),
            (with("--to", "k:9092"), "--to"),
            (with("--kafka-topic", "a"), "--kafka-topic"),
            (with("--cafile", "x.pem"), "--cafile"),
            (
                base[..2]
                    .iter()
                    .chain(&base[4..])
                    .map(|a| a.to_string())
                    .collect(),
                "--topic",
            ),
        ] {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let err = parse(&args).expect_err(named);
            assert!(format!("{err:#}").contains(named), "{named}: {err:#}");
        }
    }

    #[test]
    fn the_password_never_comes_from_a_flag() {
        let with_flag = Cli::try_parse_from(
            std::iter::once("bridge").chain(base_and(&["--password", "secret"])),
        );
        assert!(with_flag.is_err());
        let missing = parse(&base_and(&[
            "--username",
            "u",
            "--password-env",
            "TRIBUTARY_TEST_SURELY_UNSET",
        ]))
        .expect_err("unset variable");
        assert!(
            format!("{missing:#}").contains("TRIBUTARY_TEST_SURELY_UNSET"),
            "{missing:#}"
        );
    }
}
