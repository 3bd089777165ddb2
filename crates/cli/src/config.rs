//! The config file (TOML) and how flags and environment variables override it.
//! Every key is documented in docs/configuration.md.
//!
//! Each table is its crate's own type, with its defaults and checks there:
//! `[mqtt]`, `[limits]`, `[tls]` the broker's, `[log]` the log's
//! (`LogFileConfig`), `[kafka]` Kafka's (`KafkaFileConfig`), `[archive]` the
//! pipeline's (`ArchiveFileConfig`), `[http]` the API's (`HttpFileConfig`),
//! `[cluster]` the cluster crate's (`ClusterFileConfig`).
//! [`FileConfig::resolve`] is the one place that checks them all and turns
//! them into a [`NodeConfig`].

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use serde::Deserialize;
use tributary_api::HttpFileConfig;
use tributary_broker::{BrokerConfig, LimitsConfig, MqttConfig, TlsConfig};
use tributary_kafka::KafkaFileConfig;
use tributary_log::{LogConfig, LogFileConfig};
use tributary_membership::{ClusterConfig, ClusterFileConfig};
use tributary_pipeline::{ArchiveFileConfig, ModelFileConfig};

/// The flags of every command that works on a node's data: `serve` and
/// `reprocess` read the same config file, data dir, log and store.
#[derive(Debug, Args)]
pub struct DataArgs {
    /// TOML config file (see docs/configuration.md); flags override it.
    #[arg(long, env = "TRIBUTARY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for the log, sessions and retained messages [default: ./data].
    #[arg(long, env = "TRIBUTARY_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The log: `embedded` (default, DATA_DIR/log) or
    /// `kafka://HOST:PORT[,HOST:PORT]` (see `[kafka]`; `serve` then acknowledges
    /// publishes once Kafka has them).
    #[arg(long, env = "TRIBUTARY_LOG", value_name = "URL")]
    pub log: Option<String>,
    /// Where measurements are kept: `sqlite` (DATA_DIR/store.sqlite, default),
    /// `sqlite:///PATH` or `postgres://USER@HOST:PORT/DB`.
    #[arg(long, env = "TRIBUTARY_STORE", value_name = "URL")]
    pub store: Option<String>,
}

impl DataArgs {
    /// The config file (or the defaults) with these flags applied.
    pub fn compose(&self) -> anyhow::Result<FileConfig> {
        let mut config = match &self.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(url) = &self.store {
            config.store.url = Some(url.clone());
        }
        match self.log.as_deref() {
            None => {}
            Some("embedded") => config.kafka = None,
            Some(url) if url.starts_with("kafka://") => {
                let kafka = config
                    .kafka
                    .get_or_insert_with(|| KafkaFileConfig::from_url(url));
                kafka.url = url.to_owned();
            }
            Some(other) => {
                anyhow::bail!("--log {other:?}: expected embedded or kafka://HOST:PORT[,HOST:PORT]")
            }
        }
        Ok(config)
    }
}

/// The whole config file; every table and key is optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// Directory for the log, sessions and retained messages.
    pub data_dir: PathBuf,
    pub mqtt: MqttConfig,
    pub limits: LimitsConfig,
    pub log: LogFileConfig,
    /// Certificates of the TLS and secure WebSocket listeners.
    pub tls: Option<TlsConfig>,
    /// Kafka as the log (`--log kafka://...`); absent: the embedded log.
    pub kafka: Option<KafkaFileConfig>,
    pub store: StoreFileConfig,
    pub archive: ArchiveFileConfig,
    pub http: HttpFileConfig,
    pub model: ModelFileConfig,
    /// This node in an HAProxy backend (docs/cluster.md).
    pub cluster: ClusterFileConfig,
    /// What the installation says of itself in consent receipts (docs/consent.md).
    pub consent: ConsentFileConfig,
    /// Per-owner encryption of payloads and the master key (docs/erasure.md).
    pub erasure: crate::erasure::ErasureFileConfig,
}

/// The `[consent]` table: the installation's part of every consent receipt
/// (Kantara CR v1.1 `jurisdiction`, `policyUrl`, `language`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsentFileConfig {
    pub jurisdiction: String,
    pub policy_url: String,
    pub language: String,
}

impl Default for ConsentFileConfig {
    fn default() -> Self {
        let issuer = tributary_rights::receipt::Issuer::default();
        ConsentFileConfig {
            jurisdiction: issuer.jurisdiction,
            policy_url: issuer.policy_url,
            language: issuer.language,
        }
    }
}

/// The longest value of a `[consent]` key, in bytes: each is copied into
/// every receipt.
const MAX_CONSENT_VALUE: usize = 512;

impl ConsentFileConfig {
    fn build(&self) -> anyhow::Result<tributary_rights::receipt::Issuer> {
        for (key, value) in [
            ("jurisdiction", &self.jurisdiction),
            ("policy_url", &self.policy_url),
            ("language", &self.language),
        ] {
            if value.len() > MAX_CONSENT_VALUE || value.chars().any(char::is_control) {
                anyhow::bail!(
                    "[consent] {key}: at most {MAX_CONSENT_VALUE} bytes, without control characters"
                );
            }
        }
        if self.jurisdiction.is_empty() || self.language.is_empty() {
            anyhow::bail!("[consent] jurisdiction and language must not be empty");
        }
        Ok(tributary_rights::receipt::Issuer {
            jurisdiction: self.jurisdiction.clone(),
            policy_url: self.policy_url.clone(),
            language: self.language.clone(),
        })
    }
}

/// The `[store]` table: where measurements are kept.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreFileConfig {
    /// `sqlite` (DATA_DIR/store.sqlite, the default), `sqlite:///PATH` or
    /// `postgres://USER@HOST:PORT/DB`.
    pub url: Option<String>,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            data_dir: PathBuf::from("./data"),
            mqtt: MqttConfig::default(),
            limits: LimitsConfig::default(),
            log: LogFileConfig::default(),
            tls: None,
            kafka: None,
            store: StoreFileConfig::default(),
            archive: ArchiveFileConfig::default(),
            http: HttpFileConfig::default(),
            model: ModelFileConfig::default(),
            cluster: ClusterFileConfig::default(),
            consent: ConsentFileConfig::default(),
            erasure: crate::erasure::ErasureFileConfig::default(),
        }
    }
}

impl FileConfig {
    /// Reads a config file; unknown keys are errors that name the key.
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parse config file {}", path.display()))
    }

    /// Checks every value and chooses the log: the one place that turns
    /// the file with its flags and environment into what a node runs on.
    /// Each error names its key.
    pub fn resolve(&self) -> anyhow::Result<NodeConfig> {
        let broker = BrokerConfig {
            mqtt: self.mqtt.clone(),
            limits: self.limits.clone(),
            tls: self.tls.clone(),
            // The one choice of the log (`NodeConfig::backend` reads it).
            kafka: self
                .kafka
                .as_ref()
                .map(KafkaFileConfig::build)
                .transpose()?,
        };
        broker.validate().map_err(anyhow::Error::msg)?;
        // Checked even when the archive is off, so turning it on later
        // cannot reveal a mistake made now.
        let policy = self.archive.policy()?;
        let archive = self.archive.enabled.then(|| ArchiveSettings {
            config: self.archive.archive(),
            policy,
        });
        let cluster = self.cluster.build(self.mqtt.proxy_protocol)?;
        let receipt_issuer = self.consent.build()?;
        self.erasure.validate()?;
        Ok(NodeConfig {
            data_dir: self.data_dir.clone(),
            log: self.log_config(),
            broker,
            store_url: self.store.url.clone(),
            archive,
            http: self.http.clone(),
            model: self.model.clone(),
            max_days_per_message: self.archive.max_days_per_message,
            cluster,
            receipt_issuer,
            erasure: self.erasure.clone(),
        })
    }

    /// The embedded log in the data dir with the `[log]` table's values.
    fn log_config(&self) -> LogConfig {
        self.log.build(self.data_dir.join("log"))
    }
}

/// Which log a node runs on, chosen once by [`FileConfig::resolve`] (from
/// `--log` and the `[kafka]` table) and read with [`NodeConfig::backend`];
/// everything that differs between the two asks this value.
#[derive(Debug, Clone, Copy)]
pub enum LogBackend<'a> {
    /// The embedded log in `DATA_DIR/log` is the log: publishes are
    /// acknowledged once it fsync'd them.
    Embedded,
    /// Kafka is the log: publishes are acknowledged once Kafka has them, and
    /// the embedded log in `DATA_DIR/log` is this node's copy for delivery
    /// to its own subscribers (fed from Kafka).
    Kafka(&'a tributary_kafka::KafkaConfig),
}

/// A node's configuration, every value checked: what `serve`,
/// `reprocess` and the pipeline run on. Only [`FileConfig::resolve`] makes one.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    /// The embedded log: the log itself, or with Kafka this node's copy.
    pub log: LogConfig,
    /// The broker's config; its `kafka` is the choice of the log.
    pub broker: BrokerConfig,
    /// `None`: SQLite in the data dir.
    pub store_url: Option<String>,
    /// `None`: the archive is off.
    pub archive: Option<ArchiveSettings>,
    pub http: HttpFileConfig,
    /// The behaviour model and whether raw motion goes to the store.
    pub model: ModelFileConfig,
    /// `[archive] max_days_per_message`, which the store sink applies too
    /// (even with the archive off), so that a message is refused alike.
    pub max_days_per_message: u32,
    /// `None`: the node joins no HAProxy backend and leaves at once on SIGTERM.
    pub cluster: Option<ClusterConfig>,
    /// `[consent]`: the installation's part of every consent receipt.
    pub receipt_issuer: tributary_rights::receipt::Issuer,
    /// Sealing on or off, and where the master key comes from.
    pub erasure: crate::erasure::ErasureFileConfig,
}

impl NodeConfig {
    /// What the store sink keeps and refuses.
    pub fn store_policy(&self) -> tributary_pipeline::StorePolicy {
        tributary_pipeline::StorePolicy {
            motion: self.model.motion_rows(),
            max_days_per_message: self.max_days_per_message,
            erased: Default::default(),
        }
    }
}

impl NodeConfig {
    /// Which log this node runs on.
    pub fn backend(&self) -> LogBackend<'_> {
        match &self.broker.kafka {
            Some(kafka) => LogBackend::Kafka(kafka),
            None => LogBackend::Embedded,
        }
    }
}

/// Where the archive goes and when a batch is written.
#[derive(Debug, Clone)]
pub struct ArchiveSettings {
    pub config: tributary_archive::ArchiveConfig,
    pub policy: tributary_pipeline::FlushPolicy,
}

#[cfg(test)]
mod docs_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_the_documented_defaults() -> anyhow::Result<()> {
        let config: FileConfig = toml::from_str("")?;
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert_eq!(config.mqtt.listen.to_string(), "127.0.0.1:1883");
        assert!(!config.mqtt.allow_anonymous);
        assert_eq!(config.limits.max_packet_size, 1024 * 1024);
        Ok(())
    }

    #[test]
    fn http_signup_takes_its_words_and_its_old_booleans() -> anyhow::Result<()> {
        use tributary_api::Signup;
        for (text, signup) in [
            ("\"auto\"", Signup::Auto),
            ("\"open\"", Signup::Open),
            ("\"off\"", Signup::Off),
            ("true", Signup::Open),
            ("false", Signup::Off),
        ] {
            let config: FileConfig = toml::from_str(&format!("[http]\nsignup = {text}\n"))?;
            assert_eq!(config.http.signup, signup, "{text}");
        }
        let err = toml::from_str::<FileConfig>("[http]\nsignup = \"maybe\"\n")
            .expect_err("not a mode")
            .to_string();
        assert!(err.contains("\"auto\", \"open\" or \"off\""), "{err}");
        let zero: FileConfig = toml::from_str("[http]\nmax_connections = 0\n")?;
        let err = zero.http.build().expect_err("0 connections").to_string();
        assert!(err.contains("max_connections"), "{err}");
        Ok(())
    }

    #[test]
    fn consent_keys_reach_the_receipts_and_bad_ones_are_named() -> anyhow::Result<()> {
        let config: FileConfig = toml::from_str(
            "[consent]\njurisdiction = \"DE\"\npolicy_url = \"https://example.org/p\"\n",
        )?;
        let issuer = config.resolve()?.receipt_issuer;
        assert_eq!(
            (
                issuer.jurisdiction.as_str(),
                issuer.policy_url.as_str(),
                issuer.language.as_str()
            ),
            ("DE", "https://example.org/p", "en")
        );
        let bad: FileConfig = toml::from_str("[consent]\njurisdiction = \"\"\n")?;
        let err = bad.resolve().expect_err("empty").to_string();
        assert!(err.contains("[consent] jurisdiction"), "{err}");
        Ok(())
    }

    #[test]
    fn unknown_key_is_refused_with_its_name() {
        let err =
            toml::from_str::<FileConfig>("[limits]\nmax_packets = 3\n").expect_err("unknown key");
        assert!(err.to_string().contains("max_packets"), "{err}");
    }

    #[test]
    fn listener_tables_and_tls_compose_the_listeners() -> anyhow::Result<()> {
        let config: FileConfig = toml::from_str(
            "[mqtt.ws]\nlisten = \"127.0.0.1:8083\"\n\
             [mqtt.wss]\nlisten = \"127.0.0.1:8084\"\nproxy_protocol = true\n\
             [tls]\ncert_file = \"s.crt\"\nkey_file = \"s.key\"\n",
        )?;
        let broker = config.resolve()?.broker;
        broker.validate().map_err(anyhow::Error::msg)?;
        let listeners: Vec<String> = broker
            .listeners()
            .iter()
            .map(|(kind, l)| format!("{kind} {} {}", l.listen, l.proxy_protocol))
            .collect();
        assert_eq!(
            listeners,
            [
                "mqtt 127.0.0.1:1883 false",
                "mqtt.tls 0.0.0.0:8883 false",
                "mqtt.ws 127.0.0.1:8083 false",
                "mqtt.wss 127.0.0.1:8084 true",
            ]
        );
        Ok(())
    }

    #[test]
    fn encrypted_listener_without_certificate_is_refused_by_name() -> anyhow::Result<()> {
        let config: FileConfig = toml::from_str("[mqtt.wss]\nlisten = \"127.0.0.1:8084\"\n")?;
        let err = config.resolve().expect_err("no [tls]").to_string();
        assert!(err.contains("mqtt.wss") && err.contains("[tls]"), "{err}");
        Ok(())
    }

    #[test]
    fn docs_example_config_parses() -> anyhow::Result<()> {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/tributary.example.toml"
        ))?;
        let config: FileConfig = toml::from_str(&text)?;
        config.resolve()?;
        Ok(())
    }

    #[test]
    fn kafka_table_resolves_and_names_bad_keys() -> anyhow::Result<()> {
        let config: FileConfig = toml::from_str(
            "[kafka]\nurl = \"kafka://127.0.0.1:19092\"\n\
             topics = [\"tributary/v1/+/senml -> tributary.senml\"]\n",
        )?;
        let kafka = config.resolve()?.broker.kafka.expect("kafka");
        assert_eq!(kafka.brokers, "127.0.0.1:19092");
        assert_eq!(kafka.topic_for("tributary/v1/w/senml"), "tributary.senml");
        assert_eq!(kafka.topic_for("other"), "tributary.ingest");
        let bad: FileConfig =
            toml::from_str("[kafka]\nurl = \"kafka://k:1\"\ntopics = [\"a/# b\"]\n")?;
        let err = format!("{:#}", bad.resolve().expect_err("bad rule"));
        assert!(err.contains("kafka.topics"), "{err}");
        Ok(())
    }

    #[test]
    fn kafka_group_prefix_names_every_group() -> anyhow::Result<()> {
        let config: FileConfig = toml::from_str("[kafka]\nurl = \"kafka://k:1\"\n")?;
        let kafka = config.resolve()?.broker.kafka.expect("kafka");
        assert_eq!(kafka.group("pipeline"), "tributary-pipeline");
        let config: FileConfig =
            toml::from_str("[kafka]\nurl = \"kafka://k:1\"\ngroup_prefix = \"site-b\"\n")?;
        let kafka = config.resolve()?.broker.kafka.expect("kafka");
        assert_eq!(kafka.group("archive"), "site-b-archive");
        let bad: FileConfig =
            toml::from_str("[kafka]\nurl = \"kafka://k:1\"\ngroup_prefix = \"a b\"\n")?;
        let err = format!("{:#}", bad.resolve().expect_err("bad prefix"));
        assert!(err.contains("kafka.group_prefix"), "{err}");
        Ok(())
    }

    fn data_args(config: Option<PathBuf>, log: Option<&str>) -> DataArgs {
        DataArgs {
            config,
            data_dir: None,
            log: log.map(str::to_owned),
            store: None,
        }
    }

    #[test]
    fn the_log_backend_comes_from_the_kafka_table_and_the_log_flag() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("tributary.toml");
        std::fs::write(
            &file,
            "[kafka]\nurl = \"kafka://10.0.0.1:9092\"\npartitions = 6\n",
        )?;

        // The [kafka] table alone: Kafka, with the table's values.
        let node = data_args(Some(file.clone()), None).compose()?.resolve()?;
        let LogBackend::Kafka(kafka) = node.backend() else {
            anyhow::bail!("expected Kafka, got {:?}", node.backend());
        };
        assert_eq!(kafka.brokers, "10.0.0.1:9092");
        assert_eq!(kafka.partitions, 6);

        // --log embedded wins over the file: no Kafka anywhere.
        let node = data_args(Some(file.clone()), Some("embedded"))
            .compose()?
            .resolve()?;
        assert!(matches!(node.backend(), LogBackend::Embedded));

        // --log kafka:// keeps the table's other values, with the flag's brokers.
        let node = data_args(Some(file), Some("kafka://10.0.0.2:9092"))
            .compose()?
            .resolve()?;
        let LogBackend::Kafka(kafka) = node.backend() else {
            anyhow::bail!("expected Kafka, got {:?}", node.backend());
        };
        assert_eq!(
            (kafka.brokers.as_str(), kafka.partitions),
            ("10.0.0.2:9092", 6)
        );

        // No file, no flag: the embedded log in the data dir.
        let node = data_args(None, None).compose()?.resolve()?;
        assert!(matches!(node.backend(), LogBackend::Embedded));
        assert_eq!(node.log.dir, PathBuf::from("./data/log"));
        Ok(())
    }

    #[test]
    fn a_bad_archive_policy_is_refused_even_with_the_archive_off() -> anyhow::Result<()> {
        let config: FileConfig = toml::from_str("[archive]\nenabled = false\nmax_rows = 0\n")?;
        let err = config.resolve().expect_err("max_rows = 0").to_string();
        assert!(err.contains("archive.max_rows"), "{err}");
        Ok(())
    }
}
