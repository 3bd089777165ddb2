//! What of one message a service may receive under a consent
//! (docs/consent.md, "Enforcement"): only SenML measurements of the
//! consented types, never anything else.

use std::collections::HashSet;

use tributary_senml::Format;

/// What to send a service for one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Filtered {
    /// Every record is of a consented type: the message as published.
    Whole,
    /// Some are: a SenML JSON pack of those records only, resolved
    /// (absolute names and times, as `tributary_senml::encode_json` writes).
    Part(Vec<u8>),
    /// Nothing may go: no consented record, not SenML, not valid SenML, a
    /// command, or a CBOR pack only partly consented (re-encoding it as JSON
    /// would change its format under the subscriber; it is withheld whole).
    Nothing,
}

/// Filters one message of a device for a service allowed `types`.
/// `content_type` is the message's MQTT 5.0 content type, if any;
/// `received_ms` its receive time (SenML relative times are resolved to it).
pub fn filter_for_service(
    types: &HashSet<String>,
    content_type: Option<&str>,
    topic: &str,
    payload: &[u8],
    received_ms: i64,
) -> Filtered {
    if is_command(topic) {
        return Filtered::Nothing;
    }
    let Some(format) = tributary_senml::format_of(content_type, topic) else {
        return Filtered::Nothing;
    };
    let Ok(measurements) = tributary_senml::decode(format, payload, received_ms) else {
        return Filtered::Nothing;
    };
    let total = measurements.len();
    let kept: Vec<_> = measurements
        .into_iter()
        .filter(|m| types.contains(&m.name))
        .collect();
    if kept.is_empty() {
        Filtered::Nothing
    } else if kept.len() == total {
        Filtered::Whole
    } else if format == Format::Json {
        Filtered::Part(tributary_senml::encode_json(&kept))
    } else {
        Filtered::Nothing
    }
}

/// Commands to a device (`tributary/v1/{device}/commands/...`) are no
/// measurements, whoever sent them.
fn is_command(topic: &str) -> bool {
    let mut levels = topic.split('/');
    matches!(
        (levels.next(), levels.next(), levels.next(), levels.next()),
        (Some("tributary"), Some("v1"), Some(_), Some("commands"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn types(names: &[&str]) -> HashSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    const PACK: &[u8] = br#"[{"bn":"","n":"heart_rate","u":"beat/min","v":72,"t":1700000000},{"n":"steps","v":10,"t":1700000000}]"#;

    #[test]
    fn a_fully_consented_pack_goes_as_published() {
        let f = filter_for_service(
            &types(&["heart_rate", "steps"]),
            None,
            "tributary/v1/w/senml",
            PACK,
            NOW,
        );
        assert_eq!(f, Filtered::Whole);
    }

    #[test]
    fn a_mixed_pack_is_cut_to_the_consented_records() {
        let f = filter_for_service(&types(&["steps"]), None, "tributary/v1/w/senml", PACK, NOW);
        let Filtered::Part(bytes) = f else {
            panic!("{f:?}")
        };
        let back = tributary_senml::decode(Format::Json, &bytes, NOW).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].name, "steps");
        assert!(!String::from_utf8(bytes).unwrap().contains("heart_rate"));
    }

    #[test]
    fn nothing_goes_without_a_consented_record_or_outside_senml() {
        let t = types(&["temperature"]);
        assert_eq!(
            filter_for_service(&t, None, "tributary/v1/w/senml", PACK, NOW),
            Filtered::Nothing
        );
        let all = types(&["heart_rate", "steps"]);
        for (topic, payload) in [
            ("tributary/v1/w/raw", PACK),
            ("tributary/v1/w/commands/senml", PACK),
            ("tributary/v1/w/senml", b"not json".as_slice()),
        ] {
            assert_eq!(
                filter_for_service(&all, None, topic, payload, NOW),
                Filtered::Nothing,
                "{topic}"
            );
        }
        assert_eq!(
            filter_for_service(&all, Some("text/plain"), "tributary/v1/w/senml", PACK, NOW),
            Filtered::Nothing
        );
    }
}
