//! The outcome of a run: [`BenchReport`], printed as a few aligned lines for
//! people or as one JSON line for scripts.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use serde::Serialize;

use crate::stats::LatencySummary;

/// Why the run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// Everything was sent, acknowledged and received (or, in `conn` mode,
    /// the connections were held for the whole `hold`).
    Completed,
    /// Nothing arrived for the quiet period after the publishers finished
    /// (or, in `sub` mode, after the last message).
    Quiet,
    /// The time limit cut the run short.
    TimeLimit,
}

/// What a run did. Field names are the keys of the JSON line.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// "pub", "sub" or "conn".
    pub mode: &'static str,
    /// Publishers (pub), subscribers (sub) or connections (conn).
    pub clients: usize,
    pub messages_per_client: u64,
    /// Payload bytes per message.
    pub size: usize,
    /// QoS of the publishes (pub) or of the subscriptions (sub).
    pub qos: u8,
    /// "3.1.1" or "5".
    pub protocol: &'static str,
    /// Subscribers that ran alongside the publishers (pub mode).
    pub subscribers: usize,
    /// PUBLISH packets the publishers sent.
    pub sent: u64,
    /// Publishes completed by PUBACK (QoS 1) or PUBCOMP (QoS 2).
    pub acknowledged: u64,
    /// Publishes the broker answered with a failure reason code (MQTT 5).
    pub rejected: u64,
    /// PUBLISH packets the subscribers received, summed over subscribers,
    /// duplicates included.
    pub received: u64,
    /// pub mode: messages a subscriber should have received (acknowledged
    /// ones at QoS 1/2, sent ones at QoS 0) but did not, summed over the
    /// subscribers. sub mode: gaps in each publisher's sequence numbers.
    pub lost: u64,
    /// Messages a subscriber received more than once, summed over subscribers.
    pub duplicated: u64,
    /// The measured window in seconds: pub mode from the start signal to the
    /// last acknowledgement or receive; sub mode from the first to the last
    /// receive; conn mode from the first connect to the last connect outcome.
    pub elapsed_s: f64,
    /// pub: acknowledged (QoS 1/2) or sent (QoS 0) per second; sub: received
    /// per second; conn: connections opened per second.
    pub msg_per_s: f64,
    /// Publish→PUBACK/PUBCOMP latency in milliseconds (none at QoS 0).
    pub ack_latency_ms: LatencySummary,
    /// Publish→receive latency in milliseconds, from the payload's send time.
    pub receive_latency_ms: LatencySummary,
    /// conn mode: connections open at the end of the hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connected: Option<u64>,
    /// conn mode: CONNECT→CONNACK latency in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_latency_ms: Option<LatencySummary>,
    /// Clients that could not connect or subscribe, or lost their connection.
    pub failed: u64,
    pub stopped: Stop,
    /// Why clients failed: each distinct message with its count.
    pub errors: BTreeMap<String, u64>,
}

impl BenchReport {
    /// The one-line JSON summary (no trailing newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report of plain numbers and strings serializes")
    }
}

impl fmt::Display for BenchReport {
    /// The human summary: a headline and aligned `name  value` lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut lines: Vec<(&str, String)> = Vec::new();
        let stopped = match self.stopped {
            Stop::Completed => "completed",
            Stop::Quiet => "stopped after a quiet period",
            Stop::TimeLimit => "stopped by the time limit",
        };
        match self.mode {
            "conn" => {
                writeln!(
                    f,
                    "bench conn: {} connections, MQTT {}",
                    self.clients, self.protocol
                )?;
                let connected = self.connected.unwrap_or(0);
                lines.push(("connected", format!("{connected} of {}", self.clients)));
                lines.push(("failed", self.failed.to_string()));
                lines.push((
                    "connect rate",
                    format!(
                        "{} conn/s over {:.2} s",
                        thousands(self.msg_per_s),
                        self.elapsed_s
                    ),
                ));
                if let Some(l) = &self.connect_latency_ms {
                    lines.push(("connect latency", latency(l)));
                }
            }
            mode => {
                if mode == "pub" {
                    let subs = match self.subscribers {
                        0 => String::new(),
                        1 => ", 1 subscriber".into(),
                        n => format!(", {n} subscribers"),
                    };
                    writeln!(
                        f,
                        "bench pub: {} clients x {} messages, {} B, QoS {}, MQTT {}{subs}",
                        self.clients, self.messages_per_client, self.size, self.qos, self.protocol
                    )?;
                    lines.push(("sent", self.sent.to_string()));
                    if self.qos > 0 {
                        lines.push(("acknowledged", self.acknowledged.to_string()));
                    }
                    if self.rejected > 0 {
                        lines.push(("rejected", self.rejected.to_string()));
                    }
                } else {
                    writeln!(
                        f,
                        "bench sub: {} subscribers, QoS {}, MQTT {}",
                        self.clients, self.qos, self.protocol
                    )?;
                }
                if mode == "sub" || self.subscribers > 0 {
                    lines.push(("received", self.received.to_string()));
                    lines.push(("lost", self.lost.to_string()));
                    lines.push(("duplicated", self.duplicated.to_string()));
                }
                if self.failed > 0 {
                    lines.push(("failed clients", self.failed.to_string()));
                }
                lines.push(("elapsed", format!("{:.2} s ({stopped})", self.elapsed_s)));
                lines.push(("throughput", format!("{} msg/s", thousands(self.msg_per_s))));
                if mode == "pub" && self.qos > 0 {
                    lines.push(("ack latency", latency(&self.ack_latency_ms)));
                }
                if mode == "sub" || self.subscribers > 0 {
                    lines.push(("receive latency", latency(&self.receive_latency_ms)));
                }
            }
        }
        let width = lines.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
        for (name, value) in lines {
            writeln!(f, "  {name:<width$}  {value}")?;
        }
        for (error, count) in &self.errors {
            writeln!(f, "  error ({count}x): {error}")?;
        }
        Ok(())
    }
}

fn latency(l: &LatencySummary) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3} ms"));
    format!("p50 {}  p99 {}  max {}", ms(l.p50), ms(l.p99), ms(l.max))
}

/// A rate rounded to a whole number with thousands separators.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        let _ = out.write_char(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> BenchReport {
        BenchReport {
            mode: "pub",
            clients: 2,
            messages_per_client: 200,
            size: 100,
            qos: 1,
            protocol: "3.1.1",
            subscribers: 1,
            sent: 400,
            acknowledged: 400,
            rejected: 0,
            received: 400,
            lost: 0,
            duplicated: 0,
            elapsed_s: 0.5,
            msg_per_s: 800.0,
            ack_latency_ms: LatencySummary {
                p50: Some(0.25),
                p99: Some(1.5),
                max: Some(2.0),
            },
            receive_latency_ms: LatencySummary::default(),
            connected: None,
            connect_latency_ms: None,
            failed: 0,
            stopped: Stop::Completed,
            errors: BTreeMap::new(),
        }
    }

    #[test]
    fn json_is_one_line_with_the_documented_keys() {
        let json = report().to_json();
        assert!(!json.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        for key in [
            "mode",
            "clients",
            "messages_per_client",
            "size",
            "qos",
            "protocol",
            "sent",
            "acknowledged",
            "received",
            "lost",
            "duplicated",
            "elapsed_s",
            "msg_per_s",
        ] {
            assert!(v.get(key).is_some(), "{key} missing in {json}");
        }
        assert_eq!(v["ack_latency_ms"]["p99"], 1.5);
        assert!(v["receive_latency_ms"]["p50"].is_null());
        assert_eq!(v["stopped"], "completed");
        assert!(v.get("connected").is_none());
    }

    #[test]
    fn human_summary_aligns_values() {
        let text = report().to_string();
        assert!(text.starts_with(
            "bench pub: 2 clients x 200 messages, 100 B, QoS 1, MQTT 3.1.1, 1 subscriber\n"
        ));
        assert!(text.contains("  acknowledged     400\n"), "{text}");
        assert!(
            text.contains("  ack latency      p50 0.250 ms  p99 1.500 ms  max 2.000 ms\n"),
            "{text}"
        );
        assert!(text.contains("  receive latency  p50 -"), "{text}");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1234567.6), "1,234,568");
    }
}
