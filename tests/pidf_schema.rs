//! Every PIDF body we render validates against the IETF schemas (RFC 3863 PIDF, RFC 4479 data
//! model, RFC 4480 RPID) with libxml2's `xmllint`. `tests/schemas/all.xsd` loads the three
//! namespaces so the lax wildcards of pidf.xsd validate `dm:person` and `rpid:activities` too.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use starcode::presence::pidf::{render_pidf, PidfMapping};
use starcode::presence::{Presence, StatusKind};

fn schema() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemas/all.xsd")
}

/// Runs xmllint on `body`; Ok on valid, Err(xmllint's report) on invalid.
fn validate(body: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body.xml");
    std::fs::write(&file, body).unwrap();
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--nonet")
        .arg("--schema")
        .arg(schema())
        .arg(&file)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run xmllint ({e}); install libxml2-utils (apt-get install -y libxml2-utils)"
            )
        });
    let report = String::from_utf8_lossy(&out.stderr).into_owned();
    match out.status.code() {
        Some(0) => Ok(()),
        // 3: the document does not validate. Anything else: the schemas did not load.
        Some(3) => Err(report),
        other => panic!("xmllint failed to run the schema check (exit {other:?}):\n{report}"),
    }
}

fn presence(ext: &str, status: StatusKind, text: Option<&str>) -> Presence {
    let mut p = Presence::default_for(ext);
    p.status = status;
    p.custom_text = text.map(str::to_string);
    p.version = 3;
    p.updated_at = Some(UNIX_EPOCH + Duration::from_secs(1_714_557_600));
    p
}

#[test]
fn every_status_validates() {
    let mapping = PidfMapping::default();
    for kind in StatusKind::ALL {
        let text = (kind == StatusKind::Custom).then_some("Lunch");
        let body = render_pidf(
            "sip:1001@pbx.example.com",
            &presence("1001", kind, text),
            &mapping,
        );
        if let Err(report) = validate(&body) {
            panic!("{kind} does not validate:\n{report}\n{body}");
        }
    }
}

#[test]
fn hostile_custom_text_and_extension_validate() {
    let mapping = PidfMapping::default();
    for (ext, text) in [
        ("1001", "<&\"'> Zoë's café — 会议中 \u{1F4DE}"),
        ("+49.30-1_x", "a]]>b &amp; c\u{7}\u{1b}d"),
        ("9", "   spaced\tout\nnote   "),
    ] {
        let body = render_pidf(
            "sip:weird\"&<>'@host",
            &presence(ext, StatusKind::Custom, Some(text)),
            &mapping,
        );
        if let Err(report) = validate(&body) {
            panic!("custom text {text:?} does not validate:\n{report}\n{body}");
        }
    }
}

#[test]
fn every_activity_a_config_can_choose_validates() {
    use starcode::presence::pidf::{Activity, Basic};
    for activity in [
        Activity::None,
        Activity::Away,
        Activity::Busy,
        Activity::OnThePhone,
        Activity::Meeting,
        Activity::Other,
    ] {
        let mut mapping = PidfMapping::default();
        mapping.dnd.activity = activity;
        mapping.dnd.basic = Basic::Closed;
        let body = render_pidf(
            "sip:1001@h",
            &presence("1001", StatusKind::DoNotDisturb, None),
            &mapping,
        );
        if let Err(report) = validate(&body) {
            panic!("activity {activity} does not validate:\n{report}\n{body}");
        }
    }
}

/// The check is real: the same schemas refuse a person id that is not an xs:ID and an
/// activity RPID does not define.
#[test]
fn the_schema_check_rejects_broken_bodies() {
    let good = render_pidf(
        "sip:1001@h",
        &presence("1001", StatusKind::Away, None),
        &PidfMapping::default(),
    );
    validate(&good).unwrap();
    let bad_id = good.replace("id=\"p-1001\"", "id=\"1001\"");
    assert!(validate(&bad_id).unwrap_err().contains("xs:ID"));
    let bad_activity = good.replace("<rpid:away/>", "<rpid:napping/>");
    assert!(validate(&bad_activity).is_err());
    let bad_basic = good.replace(">open<", ">ajar<");
    assert!(validate(&bad_basic).is_err());
}
