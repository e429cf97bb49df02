//! Replay decides as live: each recorded live call (`fixtures/live_*.pcap`, recorded with
//! `scripts/record-live-call.sh`) replays to the transcript the live engine logged for it
//! (`fixtures/live_*.transcript.jsonl`): the same entries in the same order with the same
//! content, and times within [`TOLERANCE_MS`].
//!
//! Why 60 ms: live, a transcript's times count from when the call task answered, which is the
//! INVITE's arrival plus the store read on the blocking pool (a few ms) plus
//! `sip.answer_delay` (zero in the recordings, the same in replay); replay counts from the
//! INVITE's capture time. Loopback capture stamps and the engine's receive time differ by
//! well under a millisecond, and live timers fire up to a millisecond late. Three 20 ms
//! packets cover all of that with room, and a different decision (a key heard one packet
//! later, a prompt cut elsewhere) still shows as an entry or content difference, which has no
//! tolerance.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// How far a replayed time may be from the live one.
const TOLERANCE_MS: u64 = 60;

/// Fields that are times or grow with time: compared within the tolerance.
const TIMED_FIELDS: [&str; 2] = ["t_ms", "duration_ms"];

/// Packet counts of the summary: they grow by one per 20 ms packet, so the same tolerance
/// allows this many packets either way.
const COUNTED_FIELDS: [&str; 2] = ["rtp_in", "rtp_out"];
const PACKET_TOLERANCE: u64 = TOLERANCE_MS / 20;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("each transcript line is JSON"))
        .collect()
}

/// The replay's transcript of a fixture.
fn replayed(name: &str) -> Vec<Value> {
    let capture = fixtures_dir().join(format!("{name}.pcap"));
    let output = Command::new(env!("CARGO_BIN_EXE_starcode"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("replay")
        .arg(&capture)
        .output()
        .expect("starcode runs");
    assert!(
        output.status.success(),
        "{name}: replay failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    json_lines(&String::from_utf8_lossy(&output.stdout))
}

/// What differs between the live and the replayed transcript, one line each.
fn differences(live: &[Value], replay: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    if live.len() != replay.len() {
        out.push(format!(
            "{} live entries, {} replayed",
            live.len(),
            replay.len()
        ));
    }
    for (i, (l, r)) in live.iter().zip(replay).enumerate() {
        let (Some(l), Some(r)) = (l.as_object(), r.as_object()) else {
            out.push(format!("entry {i} is not an object"));
            continue;
        };
        let mut keys: Vec<&String> = l.keys().chain(r.keys()).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            let (lv, rv) = (l.get(key), r.get(key));
            let tolerance = if TIMED_FIELDS.contains(&key.as_str()) {
                Some(TOLERANCE_MS)
            } else if COUNTED_FIELDS.contains(&key.as_str()) {
                Some(PACKET_TOLERANCE)
            } else {
                None
            };
            let same = match (
                tolerance,
                lv.and_then(Value::as_u64),
                rv.and_then(Value::as_u64),
            ) {
                (Some(tolerance), Some(a), Some(b)) => a.abs_diff(b) <= tolerance,
                _ => lv == rv,
            };
            if !same {
                out.push(format!(
                    "entry {i} ({}) {key}: live {}, replay {}",
                    l.get("event").and_then(Value::as_str).unwrap_or("?"),
                    lv.map_or("absent".to_string(), Value::to_string),
                    rv.map_or("absent".to_string(), Value::to_string)
                ));
            }
        }
    }
    out
}

fn check(name: &str) {
    let live_path = fixtures_dir().join(format!("{name}.transcript.jsonl"));
    let live = json_lines(&std::fs::read_to_string(&live_path).expect("the live transcript"));
    assert!(!live.is_empty(), "{name}: empty live transcript");
    let replay = replayed(name);
    let diff = differences(&live, &replay);
    assert!(
        diff.is_empty(),
        "{name}: replay differs from the live call:\n  {}",
        diff.join("\n  ")
    );
}

#[test]
fn live_away_pcmu() {
    check("live_away_pcmu");
}

#[test]
fn live_dnd_pcma_48() {
    check("live_dnd_pcma_48");
}

#[test]
fn live_bye_during_confirm() {
    check("live_bye_during_confirm");
}

#[test]
fn live_chat_info() {
    check("live_chat_info");
}

/// Every recorded live capture has its live transcript and a test above.
#[test]
fn every_live_capture_is_compared() {
    let mut live: Vec<String> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures/ exists")
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.starts_with("live_") && n.ends_with(".pcap"))
        .map(|n| n.trim_end_matches(".pcap").to_string())
        .collect();
    live.sort();
    assert_eq!(
        live,
        [
            "live_away_pcmu",
            "live_bye_during_confirm",
            "live_chat_info",
            "live_dnd_pcma_48"
        ]
    );
    for name in &live {
        assert!(
            fixtures_dir()
                .join(format!("{name}.transcript.jsonl"))
                .exists(),
            "{name} has no live transcript"
        );
    }
}

#[test]
fn the_comparison_sees_a_different_decision() {
    let live = json_lines(
        r#"{"t_ms":0,"event":"call","caller":"2001"}
{"t_ms":3000,"event":"key","key":"3","source":"rfc4733"}"#,
    );
    let late = json_lines(
        r#"{"t_ms":10,"event":"call","caller":"2001"}
{"t_ms":3050,"event":"key","key":"3","source":"rfc4733"}"#,
    );
    assert!(differences(&live, &late).is_empty());
    let other = json_lines(
        r#"{"t_ms":0,"event":"call","caller":"2002"}
{"t_ms":3100,"event":"key","key":"3","source":"inband"}"#,
    );
    assert_eq!(differences(&live, &other).len(), 3);
}
