//! Where Kafka is and which Kafka topic each MQTT topic goes to.

use std::time::Duration;

use serde::Deserialize;

use crate::{Error, Result};

/// The Kafka topic of every message no rule claims.
pub const DEFAULT_TOPIC: &str = "tributary.ingest";

/// How to reach Kafka and how to map MQTT topics onto Kafka topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port]`.
    pub brokers: String,
    /// Rules tried in order; the first whose filter matches names the topic.
    pub rules: Vec<TopicRule>,
    /// Topic of messages no rule matches.
    pub default_topic: String,
    /// Longest a publish waits for Kafka's acknowledgement before the
    /// publisher is told it was not stored (5.0: 0x97; 3.1.1: disconnect
    /// without acknowledgement, so the device resends).
    pub ack_timeout: Duration,
    /// Partitions of the topics Tributary creates when they do not exist.
    pub partitions: i32,
    /// Start of every consumer group Tributary joins
    /// (`{prefix}-pipeline`, `{prefix}-archive`, `{prefix}-router-{node}`):
    /// installations sharing one Kafka cluster keep apart by it.
    pub group_prefix: String,
}

/// The default of [`KafkaConfig::group_prefix`].
pub const DEFAULT_GROUP_PREFIX: &str = "tributary";

/// The default of [`KafkaConfig::ack_timeout`].
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// The default of [`KafkaConfig::partitions`].
pub const DEFAULT_PARTITIONS: i32 = 3;

impl KafkaConfig {
    /// The consumer group `{group_prefix}-{role}`.
    pub fn group(&self, role: &str) -> String {
        format!("{}-{role}", self.group_prefix)
    }
}

impl KafkaConfig {
    /// Parses `kafka://HOST:PORT[,HOST:PORT]` with the defaults for the rest.
    pub fn from_url(url: &str) -> Result<KafkaConfig> {
        let brokers = url
            .strip_prefix("kafka://")
            .ok_or_else(|| {
                Error::Config(format!(
                    "{url:?} is not a kafka://HOST:PORT[,HOST:PORT] URL"
                ))
            })?
            .trim_end_matches('/');
        if brokers.is_empty()
            || brokers.split(',').any(|b| {
                b.rsplit_once(':')
                    .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            })
        {
            return Err(Error::Config(format!(
                "{url:?}: every broker must be HOST:PORT (kafka://HOST:PORT[,HOST:PORT])"
            )));
        }
        Ok(KafkaConfig {
            brokers: brokers.to_owned(),
            rules: Vec::new(),
            default_topic: DEFAULT_TOPIC.to_owned(),
            ack_timeout: DEFAULT_ACK_TIMEOUT,
            partitions: DEFAULT_PARTITIONS,
            group_prefix: DEFAULT_GROUP_PREFIX.to_owned(),
        })
    }

    /// The Kafka topic of an MQTT topic.
    pub fn topic_for(&self, mqtt_topic: &str) -> &str {
        self.rules
            .iter()
            .find(|rule| tributary_mqtt::topic::matches(&rule.filter, mqtt_topic))
            .map_or(self.default_topic.as_str(), |rule| rule.topic.as_str())
    }

    /// Every Kafka topic the rules can produce to, the default first.
    pub fn topics(&self) -> Vec<String> {
        let mut topics = vec![self.default_topic.clone()];
        for rule in &self.rules {
            if !topics.contains(&rule.topic) {
                topics.push(rule.topic.clone());
            }
        }
        topics
    }
}

/// `FILTER -> TOPIC`: MQTT topics matching the filter go to the Kafka topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRule {
    pub filter: String,
    pub topic: String,
}

impl std::str::FromStr for TopicRule {
    type Err = Error;

    fn from_str(text: &str) -> Result<TopicRule> {
        let (filter, topic) = text
            .split_once("->")
            .map(|(f, t)| (f.trim(), t.trim()))
            .ok_or_else(|| Error::Config(format!("topic rule {text:?} is not FILTER -> TOPIC")))?;
        if !tributary_mqtt::topic::valid_topic_filter(filter) {
            return Err(Error::Config(format!(
                "topic rule {text:?}: {filter:?} is not a valid MQTT topic filter"
            )));
        }
        if !valid_kafka_topic(topic) {
            return Err(Error::Config(format!(
                "topic rule {text:?}: {topic:?} is not a valid Kafka topic \
                 (1–249 of a-z A-Z 0-9 . _ -)"
            )));
        }
        Ok(TopicRule {
            filter: filter.to_owned(),
            topic: topic.to_owned(),
        })
    }
}

/// Whether `prefix` makes valid consumer group names (the characters of a
/// topic name, at most 200, so that `-router-NODE` still fits).
pub fn valid_group_prefix(prefix: &str) -> bool {
    prefix.len() <= 200 && valid_kafka_topic(prefix)
}

/// Kafka's own rule for topic names.
pub fn valid_kafka_topic(topic: &str) -> bool {
    (1..=249).contains(&topic.len())
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The `[kafka]` table of the config file; [`KafkaFileConfig::build`]
/// checks it and makes the [`KafkaConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaFileConfig {
    /// `kafka://HOST:PORT[,HOST:PORT]`.
    pub url: String,
    /// `"FILTER -> TOPIC"` rules, first match wins.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Kafka topic of messages no rule matches.
    #[serde(default = "default_topic")]
    pub default_topic: String,
    /// Longest a publish waits for Kafka before its publisher is told it
    /// was not stored.
    #[serde(default = "default_ack_timeout_ms")]
    pub ack_timeout_ms: u64,
    /// Partitions of topics Tributary creates.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Start of the consumer groups' names.
    #[serde(default = "default_group_prefix")]
    pub group_prefix: String,
}

fn default_group_prefix() -> String {
    DEFAULT_GROUP_PREFIX.to_owned()
}
fn default_topic() -> String {
    DEFAULT_TOPIC.to_owned()
}
fn default_ack_timeout_ms() -> u64 {
    DEFAULT_ACK_TIMEOUT.as_millis() as u64
}
fn default_partitions() -> i32 {
    DEFAULT_PARTITIONS
}

impl KafkaFileConfig {
    /// The table as `--log URL` makes it: the URL and every default.
    pub fn from_url(url: &str) -> Self {
        KafkaFileConfig {
            url: url.to_owned(),
            topics: Vec::new(),
            default_topic: default_topic(),
            ack_timeout_ms: default_ack_timeout_ms(),
            partitions: default_partitions(),
            group_prefix: default_group_prefix(),
        }
    }

    /// The Kafka client's config, every value checked with a message naming its key.
    pub fn build(&self) -> Result<KafkaConfig> {
        let invalid = |key: &str, e: Error| Error::Config(format!("{key}: {e}"));
        let mut config = KafkaConfig::from_url(&self.url).map_err(|e| invalid("kafka.url", e))?;
        config.rules = self
            .topics
            .iter()
            .map(|rule| rule.parse())
            .collect::<Result<_>>()
            .map_err(|e| invalid("kafka.topics", e))?;
        let check = |ok: bool, message: String| {
            if ok {
                Ok(())
            } else {
                Err(Error::Config(message))
            }
        };
        check(
            valid_kafka_topic(&self.default_topic),
            format!(
                "kafka.default_topic {:?} is not a valid Kafka topic name",
                self.default_topic
            ),
        )?;
        check(
            self.ack_timeout_ms >= 1000,
            "kafka.ack_timeout_ms must be at least 1000".into(),
        )?;
        check(
            self.partitions >= 1,
            "kafka.partitions must be at least 1".into(),
        )?;
        check(
            valid_group_prefix(&self.group_prefix),
            format!(
                "kafka.group_prefix {:?} must be 1–200 of a-z A-Z 0-9 . _ -",
                self.group_prefix
            ),
        )?;
        config.group_prefix = self.group_prefix.clone();
        config.default_topic = self.default_topic.clone();
        config.ack_timeout = Duration::from_millis(self.ack_timeout_ms);
        config.partitions = self.partitions;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_brokers() -> Result<()> {
        let config = KafkaConfig::from_url("kafka://127.0.0.1:19092,kafka2:9092")?;
        assert_eq!(config.brokers, "127.0.0.1:19092,kafka2:9092");
        for bad in [
            "127.0.0.1:9092",
            "kafka://",
            "kafka://host",
            "kafka://host:port",
            "kafka://:9092",
        ] {
            assert!(KafkaConfig::from_url(bad).is_err(), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn first_matching_rule_names_the_topic() -> Result<()> {
        let mut config = KafkaConfig::from_url("kafka://k:9092")?;
        config.rules = vec![
            "tributary/v1/+/senml -> tributary.senml".parse()?,
            "tributary/v1/# -> tributary.other".parse()?,
        ];
        assert_eq!(config.topic_for("tributary/v1/d1/senml"), "tributary.senml");
        assert_eq!(config.topic_for("tributary/v1/d1/raw"), "tributary.other");
        assert_eq!(config.topic_for("demo/x"), DEFAULT_TOPIC);
        assert_eq!(
            config.topics(),
            [DEFAULT_TOPIC, "tributary.senml", "tributary.other"]
        );
        Ok(())
    }

    #[test]
    fn bad_rules_are_refused_with_the_reason() {
        for bad in ["a/b tributary.x", "a/#/b -> x", "a -> bad topic", "a -> "] {
            let err = bad.parse::<TopicRule>().expect_err(bad);
            assert!(err.to_string().contains(bad.trim()), "{err}");
        }
    }
}
