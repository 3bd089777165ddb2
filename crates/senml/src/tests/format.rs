use crate::{format_of, Format};

#[test]
fn format_of_table() {
    let json = Some(Format::Json);
    let cbor = Some(Format::Cbor);
    let cases: &[(Option<&str>, &str, Option<Format>)] = &[
        // The content type decides when present.
        (Some("application/senml+json"), "a/b", json),
        (Some("application/senml+cbor"), "a/b", cbor),
        (Some("Application/SenML+JSON"), "a/b", json),
        (Some("APPLICATION/SENML+CBOR"), "a/b", cbor),
        (Some("application/senml+json; charset=utf-8"), "a/b", json),
        (Some(" application/senml+cbor ;x=y"), "a/b", cbor),
        (Some("application/senml+cbor"), "a/senml", cbor),
        (Some("application/json"), "a/senml", None),
        (Some(""), "a/senml", None),
        (Some("application/senml+exi"), "a/b", None),
        // Without a content type, the topic's last level.
        (None, "owner/device/senml", json),
        (None, "senml", json),
        (None, "owner/device/senml+cbor", cbor),
        (None, "owner/device/senml-cbor", cbor),
        (None, "owner/device/SENML", None),
        (None, "owner/senml/device", None),
        (None, "owner/device/senml/", None),
        (None, "owner/device/senml+json", None),
        (None, "owner/device/telemetry", None),
        (None, "", None),
    ];
    for (content_type, topic, expected) in cases {
        assert_eq!(
            format_of(*content_type, topic),
            *expected,
            "content type {content_type:?}, topic {topic:?}"
        );
    }
}
