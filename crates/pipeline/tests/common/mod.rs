//! Log records as the broker writes them, for the pipeline's tests.

use tributary_log::{MessageId, Record};

pub const T0: i64 = 1_790_000_000_000;

pub fn record(id: u128, owner: &str, device: &str, suffix: &str, payload: Vec<u8>) -> Record {
    Record {
        receive_time_ms: T0 as u64 + 60_000,
        topic: format!("tributary/v1/{device}/{suffix}"),
        qos: 1,
        payload: payload.into(),
        client_id: format!("d:{device}:c"),
        message_id: MessageId(id),
        owner: owner.into(),
        device: device.into(),
        ..Record::default()
    }
}

pub fn senml_json(device: &str, base_s: i64, values: &[f64]) -> Vec<u8> {
    let records: Vec<serde_json::Value> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            if i == 0 {
                serde_json::json!({"bn": format!("{device}/"), "bt": base_s, "n": "hr", "u": "beat/min", "v": v})
            } else {
                serde_json::json!({"n": "hr", "t": i, "v": v})
            }
        })
        .collect();
    serde_json::to_vec(&records).expect("json")
}

/// One SenML record per day for the `days` days up to T0 (times later than
/// a day after receipt are invalid): one archive partition each.
#[allow(dead_code)] // not every test binary uses it
pub fn senml_daily(days: i64) -> Vec<u8> {
    let records: Vec<serde_json::Value> = (0..days)
        .map(|day| serde_json::json!({"n": "steps", "t": T0 / 1000 - day * 86_400, "v": 1}))
        .collect();
    serde_json::to_vec(&records).expect("json")
}
