//! `/metrics` of the real engine after a feature-code call with a watcher, read with curl and
//! parsed by the Prometheus project's own OpenMetrics parser (python3-prometheus-client, a
//! strict reader someone else wrote): the text is valid, and the call, its keys, its change
//! and that change's first NOTIFY are all counted.

use super::*;

/// The parser lives in the Debian package's module tree, beside the system Python.
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// One sample of a parsed exposition.
#[derive(serde::Deserialize, Debug)]
struct Sample {
    name: String,
    labels: std::collections::BTreeMap<String, String>,
    value: f64,
}

/// Every sample of `text`, through the reference parser; panics with its message if the text
/// is not valid OpenMetrics.
fn parsed(text: &str) -> Vec<Sample> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/openmetrics_check.py");
    let out = output_with_stdin(Command::new(SYSTEM_PYTHON).arg(&script), text);
    assert!(
        out.status.success(),
        "the reference parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The value of the sample `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .unwrap_or_else(|| panic!("no {name} {labels:?}"))
        .value
}

#[test]
fn metrics_after_a_call_are_valid_openmetrics_and_count_the_call() {
    let mut engine = Engine::start("");
    let url = engine.web_url();
    dnd_call_with_a_watcher(&engine, "1018", "2018");
    engine.wait_for_log("call finished", Duration::from_secs(10));

    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-D", "-"])
        .arg(format!("{url}/metrics"))
        .output()
        .expect("curl is missing (scripts/bootstrap.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let response = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    let (head, text) = response.split_once("\n\n").expect("headers, then the body");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    let samples = parsed(text);

    assert_eq!(
        value(&samples, "starcode_calls_total", &[("outcome", "saved")]),
        1.0
    );
    assert_eq!(
        value(&samples, "starcode_keys_total", &[("source", "rfc4733")]),
        2.0,
        "one choice, one confirmation"
    );
    assert_eq!(
        value(
            &samples,
            "starcode_status_changes_total",
            &[("source", "feature_code")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "starcode_change_to_notify_seconds_count",
            &[("source", "feature_code")]
        ),
        1.0,
        "the call's change was timed to its first NOTIFY"
    );
    assert!(value(&samples, "starcode_notifies_sent_total", &[]) >= 3.0);
    assert!(value(&samples, "starcode_rtp_send_lateness_seconds_count", &[]) > 50.0);
    assert!(
        value(
            &samples,
            "starcode_store_latency_seconds_count",
            &[("op", "set")]
        ) >= 1.0
    );
}
