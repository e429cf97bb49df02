use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::ivr::NoChangeReason;
use crate::presence::memory::MemoryStore;
use crate::presence::{PresenceStore, Status, StatusKind, StatusUpdate};
use crate::sip::auth::AuthCounters;
use crate::sip::ua::NotifyCounters;

/// One sample line: its name, labels and value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// One metric family as the exposition declares it.
#[derive(Debug, Default)]
struct FamilyText {
    kind: String,
    help: String,
    unit: Option<String>,
    samples: Vec<Sample>,
}

/// A strict reader of the OpenMetrics 1.0 text format (the subset a Prometheus server reads
/// from us): every line is a descriptor of the family being read, a sample of it, or the
/// final `# EOF`; names and labels follow the exposition grammar; each sample's name is the
/// family's with a suffix its type allows; histograms are cumulative and end at `+Inf` equal
/// to `_count`. Panics with the offending line.
fn parse(text: &str) -> HashMap<String, FamilyText> {
    fn is_name(s: &str) -> bool {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    fn value(s: &str, line: &str) -> f64 {
        match s {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            _ => s
                .parse()
                .unwrap_or_else(|_| panic!("bad value {s:?} in {line:?}")),
        }
    }
    fn labels(s: &str, line: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            let (name, after) = rest
                .split_once("=\"")
                .unwrap_or_else(|| panic!("bad labels in {line:?}"));
            assert!(
                is_name(name) && !name.starts_with("__"),
                "label {name:?}: {line:?}"
            );
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c @ ('\\' | '"'))) => value.push(c),
                        other => panic!("bad escape {other:?} in {line:?}"),
                    },
                    Some((i, '"')) => break i,
                    Some((_, c)) => value.push(c),
                    None => panic!("unterminated label value in {line:?}"),
                }
            };
            out.push((name.to_string(), value));
            rest = &after[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
        out
    }

    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "the text ends with # EOF");
    assert!(text.ends_with("# EOF\n"), "a newline after # EOF");
    let mut families: HashMap<String, FamilyText> = HashMap::new();
    let mut current: Option<String> = None;
    for line in &lines[..lines.len() - 1] {
        if let Some(descriptor) = line.strip_prefix("# ") {
            let (keyword, rest) = descriptor.split_once(' ').expect("a descriptor");
            let (name, text) = rest.split_once(' ').expect("a descriptor with a value");
            assert!(is_name(name), "{line:?}");
            if current.as_deref() != Some(name) {
                assert!(
                    !families.contains_key(name),
                    "family {name} declared twice, or interleaved: {line:?}"
                );
                current = Some(name.to_string());
            }
            let family = families.entry(name.to_string()).or_default();
            match keyword {
                "HELP" => family.help = text.to_string(),
                "TYPE" => {
                    assert!(
                        ["counter", "gauge", "histogram", "info", "unknown"].contains(&text),
                        "{line:?}"
                    );
                    family.kind = text.to_string();
                }
                "UNIT" => {
                    assert!(name.ends_with(&format!("_{text}")), "unit suffix: {line:?}");
                    family.unit = Some(text.to_string());
                }
                _ => panic!("unknown descriptor {line:?}"),
            }
            continue;
        }
        assert!(!line.starts_with('#'), "stray comment {line:?}");
        let (series, value_text) = line.rsplit_once(' ').expect("a sample: name value");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').expect("labels end with }");
                (name, labels(inner, line))
            }
            None => (series, Vec::new()),
        };
        assert!(is_name(name), "{line:?}");
        let family_name = current.clone().expect("a sample after its TYPE");
        let family = families.get_mut(&family_name).expect("declared family");
        let suffix = name
            .strip_prefix(family_name.as_str())
            .unwrap_or_else(|| panic!("{name} outside family {family_name}"));
        let allowed: &[&str] = match family.kind.as_str() {
            "counter" => &["_total", "_created"],
            "gauge" => &[""],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            other => panic!("unexpected type {other}"),
        };
        assert!(allowed.contains(&suffix), "{name} in a {}", family.kind);
        family.samples.push(Sample {
            name: name.to_string(),
            labels,
            value: value(value_text, line),
        });
    }
    for (name, family) in &families {
        assert!(!family.help.is_empty(), "{name} has HELP");
        assert!(!family.kind.is_empty(), "{name} has TYPE");
        if family.kind == "histogram" {
            check_histogram(name, family);
        }
        if family.kind == "counter" {
            assert!(
                family.samples.iter().all(|s| s.value >= 0.0),
                "{name}: counters are never negative"
            );
        }
    }
    families
}

/// Each series of a histogram: buckets ascending and cumulative, `+Inf` last and equal to
/// `_count`, `_sum` present.
fn check_histogram(name: &str, family: &FamilyText) {
    let mut series: HashMap<Vec<(String, String)>, Vec<&Sample>> = HashMap::new();
    for sample in &family.samples {
        let key = sample
            .labels
            .iter()
            .filter(|(k, _)| k != "le")
            .cloned()
            .collect();
        series.entry(key).or_default().push(sample);
    }
    for (labels, samples) in series {
        let buckets: Vec<(f64, f64)> = samples
            .iter()
            .filter(|s| s.name.ends_with("_bucket"))
            .map(|s| {
                let le = s
                    .labels
                    .iter()
                    .find(|(k, _)| k == "le")
                    .map(|(_, v)| {
                        if v == "+Inf" {
                            f64::INFINITY
                        } else {
                            v.parse().unwrap()
                        }
                    })
                    .expect("a bucket has le");
                (le, s.value)
            })
            .collect();
        assert!(!buckets.is_empty(), "{name}{labels:?} has buckets");
        assert!(
            buckets
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
            "{name}{labels:?}: ascending, cumulative: {buckets:?}"
        );
        let last = buckets.last().unwrap();
        assert_eq!(last.0, f64::INFINITY, "{name}{labels:?} ends at +Inf");
        let count = samples
            .iter()
            .find(|s| s.name.ends_with("_count"))
            .expect("_count")
            .value;
        assert_eq!(last.1, count, "{name}{labels:?}: +Inf bucket is the count");
        assert!(samples.iter().any(|s| s.name.ends_with("_sum")), "_sum");
    }
}

/// The value of the sample `name` whose labels include every pair of `labels`.
fn value(families: &HashMap<String, FamilyText>, name: &str, labels: &[(&str, &str)]) -> f64 {
    families
        .values()
        .flat_map(|f| &f.samples)
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
        .value
}

const FAMILIES: [(&str, &str); 18] = [
    ("starcode_calls", "counter"),
    ("starcode_calls_active", "gauge"),
    ("starcode_keys", "counter"),
    ("starcode_status_changes", "counter"),
    ("starcode_change_to_notify_seconds", "histogram"),
    ("starcode_rtp_send_lateness_seconds", "histogram"),
    ("starcode_store_latency_seconds", "histogram"),
    ("starcode_store_errors", "counter"),
    ("starcode_sip_send_failures", "counter"),
    ("starcode_sip_auth_challenges", "counter"),
    ("starcode_sip_auth_successes", "counter"),
    ("starcode_sip_auth_failures", "counter"),
    ("starcode_sip_auth_lockouts", "counter"),
    ("starcode_sip_limit_events", "counter"),
    ("starcode_notifies_sent", "counter"),
    ("starcode_notifies_delivered", "counter"),
    ("starcode_notifies_failed", "counter"),
    ("starcode_subscriptions", "gauge"),
];

#[test]
fn a_fresh_registry_declares_every_family_at_zero() {
    let text = Metrics::new().render();
    let families = parse(&text);
    for (name, kind) in FAMILIES {
        let family = families
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"));
        assert_eq!(family.kind, kind, "{name}");
        assert!(family.help.ends_with('.'), "{name}: {}", family.help);
        assert!(
            !family.samples.is_empty(),
            "{name} has series from the start"
        );
        assert!(
            family.samples.iter().all(|s| s.value == 0.0),
            "{name} at zero"
        );
    }
    assert_eq!(families.len(), FAMILIES.len(), "{text}");
    for (name, _) in FAMILIES.iter().filter(|(n, _)| n.ends_with("_seconds")) {
        assert_eq!(families[*name].unit.as_deref(), Some("seconds"), "{name}");
    }
    assert!(text.contains("# TYPE starcode_calls counter\n"), "{text}");
    assert!(text.contains("# HELP starcode_keys Key presses"), "{text}");
    assert!(
        text.contains("starcode_keys_total{source=\"sip_info\"} 0\n"),
        "{text}"
    );
    assert!(
        text.contains("starcode_store_latency_seconds_bucket{le=\"+Inf\",op=\"set\"} 0\n"),
        "{text}"
    );
}

#[test]
fn what_moves_shows_in_the_text() {
    let m = Metrics::new();
    m.call_finished(Some(&Outcome::Saved(Status::Away)));
    m.call_finished(Some(&Outcome::Saved(Status::Chat)));
    m.call_finished(Some(&Outcome::NoChange(NoChangeReason::CallerHungUp)));
    m.call_finished(None);
    m.call_not_started(NotStarted::MediaSetup);
    m.key_pressed(KeySource::Rfc4733);
    m.key_pressed(KeySource::Rfc4733);
    m.key_pressed(KeySource::Inband);
    m.status_changed(ChangeSource::Publish);
    m.send_failed();
    m.set_calls_active(3);
    let f = parse(&m.render());
    assert_eq!(
        value(&f, "starcode_calls_total", &[("outcome", "saved")]),
        2.0
    );
    assert_eq!(
        value(
            &f,
            "starcode_calls_total",
            &[("outcome", "no_change"), ("reason", "caller_hung_up")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &f,
            "starcode_calls_total",
            &[("outcome", "no_change"), ("reason", "too_many_attempts")]
        ),
        0.0
    );
    assert_eq!(
        value(&f, "starcode_calls_total", &[("outcome", "unknown")]),
        1.0
    );
    assert_eq!(
        value(
            &f,
            "starcode_calls_total",
            &[("outcome", "not_started"), ("reason", "media_setup")]
        ),
        1.0
    );
    assert_eq!(
        value(&f, "starcode_keys_total", &[("source", "rfc4733")]),
        2.0
    );
    assert_eq!(
        value(&f, "starcode_keys_total", &[("source", "inband")]),
        1.0
    );
    assert_eq!(
        value(&f, "starcode_keys_total", &[("source", "sip_info")]),
        0.0
    );
    assert_eq!(
        value(
            &f,
            "starcode_status_changes_total",
            &[("source", "publish")]
        ),
        1.0
    );
    assert_eq!(value(&f, "starcode_sip_send_failures_total", &[]), 1.0);
    assert_eq!(value(&f, "starcode_calls_active", &[]), 3.0);
}

#[test]
fn histograms_fill_their_buckets() {
    let m = Metrics::new();
    m.change_notified(ChangeSource::Publish, Duration::from_micros(700));
    m.change_notified(ChangeSource::Publish, Duration::from_millis(30));
    m.change_notified(ChangeSource::Publish, Duration::from_secs(60));
    m.change_notified(ChangeSource::Api, Duration::from_millis(2));
    for micros in [50, 120, 120, 900, 45_000] {
        m.rtp_lateness().record(Duration::from_micros(micros));
    }
    m.store_call("set", Duration::from_millis(3), true);
    m.store_call("get", Duration::from_micros(40), false);
    let f = parse(&m.render());
    let change = "starcode_change_to_notify_seconds_bucket";
    let publish = ("source", "publish");
    assert_eq!(value(&f, change, &[publish, ("le", "0.0005")]), 0.0);
    assert_eq!(value(&f, change, &[publish, ("le", "0.001")]), 1.0);
    assert_eq!(value(&f, change, &[publish, ("le", "0.05")]), 2.0);
    assert_eq!(value(&f, change, &[publish, ("le", "5.0")]), 2.0);
    assert_eq!(value(&f, change, &[publish, ("le", "+Inf")]), 3.0);
    assert_eq!(
        value(&f, "starcode_change_to_notify_seconds_count", &[publish]),
        3.0
    );
    let api = [("source", "api")];
    assert_eq!(value(&f, change, &[api[0], ("le", "0.001")]), 0.0);
    assert_eq!(value(&f, change, &[api[0], ("le", "0.0025")]), 1.0);
    assert_eq!(
        value(&f, "starcode_change_to_notify_seconds_count", &api),
        1.0
    );
    assert_eq!(
        value(
            &f,
            "starcode_change_to_notify_seconds_count",
            &[("source", "cli")]
        ),
        0.0,
        "every writer's series exists from the start"
    );
    let sum = value(&f, "starcode_change_to_notify_seconds_sum", &[publish]);
    assert!((sum - 60.0307).abs() < 1e-9, "{sum}");
    let rtp = "starcode_rtp_send_lateness_seconds_bucket";
    assert_eq!(value(&f, rtp, &[("le", "0.0001")]), 1.0);
    assert_eq!(value(&f, rtp, &[("le", "0.00025")]), 3.0);
    assert_eq!(value(&f, rtp, &[("le", "0.001")]), 4.0);
    assert_eq!(value(&f, rtp, &[("le", "0.04")]), 4.0);
    assert_eq!(value(&f, rtp, &[("le", "+Inf")]), 5.0);
    let sum = value(&f, "starcode_rtp_send_lateness_seconds_sum", &[]);
    assert!((sum - 0.04619).abs() < 1e-9, "{sum}");
    let store = "starcode_store_latency_seconds_bucket";
    assert_eq!(value(&f, store, &[("op", "set"), ("le", "0.0025")]), 0.0);
    assert_eq!(value(&f, store, &[("op", "set"), ("le", "0.005")]), 1.0);
    assert_eq!(value(&f, store, &[("op", "get"), ("le", "0.0001")]), 1.0);
    assert_eq!(
        value(&f, "starcode_store_errors_total", &[("op", "get")]),
        1.0
    );
    assert_eq!(
        value(&f, "starcode_store_errors_total", &[("op", "set")]),
        0.0
    );
}

#[test]
fn the_user_agents_totals_move_the_counters_by_what_they_grew() {
    let m = Metrics::new();
    let mut export = UaExport::default();
    let mut totals = UaTotals {
        auth: AuthCounters {
            challenges: 5,
            stale: 2,
            successes: 4,
            wrong_response: 1,
            locked_out: 7,
            lockouts: 1,
            ..AuthCounters::default()
        },
        notify: NotifyCounters {
            sent: 10,
            delivered: 8,
            rejected: 1,
            timed_out: 1,
        },
        subscriptions: 6,
        ..UaTotals::default()
    };
    totals.limits.refused = 2;
    totals.limits.garbage = 9;
    export.export(totals, &m);
    export.export(totals, &m);
    let f = parse(&m.render());
    let auth = |labels: &[(&str, &str)]| value(&f, "starcode_sip_auth_challenges_total", labels);
    assert_eq!(auth(&[("stale", "false")]), 3.0);
    assert_eq!(auth(&[("stale", "true")]), 2.0);
    assert_eq!(value(&f, "starcode_sip_auth_successes_total", &[]), 4.0);
    assert_eq!(value(&f, "starcode_sip_auth_lockouts_total", &[]), 1.0);
    let failures = |reason| {
        value(
            &f,
            "starcode_sip_auth_failures_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(failures("wrong_response"), 1.0);
    assert_eq!(failures("locked_out"), 7.0);
    assert_eq!(failures("replayed"), 0.0);
    let limits = |event| value(&f, "starcode_sip_limit_events_total", &[("event", event)]);
    assert_eq!(limits("refused_503"), 2.0);
    assert_eq!(limits("garbage"), 9.0);
    assert_eq!(value(&f, "starcode_notifies_sent_total", &[]), 10.0);
    assert_eq!(value(&f, "starcode_notifies_delivered_total", &[]), 8.0);
    let failed = |reason| value(&f, "starcode_notifies_failed_total", &[("reason", reason)]);
    assert_eq!(failed("rejected"), 1.0);
    assert_eq!(failed("no_answer"), 1.0);
    assert_eq!(value(&f, "starcode_subscriptions", &[]), 6.0);

    // More NOTIFYs; a new authenticator (a reload) starts its totals at zero again.
    totals.notify.sent = 13;
    totals.subscriptions = 2;
    totals.auth = AuthCounters {
        successes: 1,
        ..AuthCounters::default()
    };
    export.export(totals, &m);
    let f = parse(&m.render());
    assert_eq!(value(&f, "starcode_notifies_sent_total", &[]), 13.0);
    assert_eq!(value(&f, "starcode_sip_auth_successes_total", &[]), 5.0);
    assert_eq!(
        value(
            &f,
            "starcode_sip_auth_failures_total",
            &[("reason", "locked_out")]
        ),
        7.0,
        "a counter never goes down"
    );
    assert_eq!(value(&f, "starcode_subscriptions", &[]), 2.0);
}

#[test]
fn the_timed_store_counts_every_call_by_operation() {
    let m = Arc::new(Metrics::new());
    let store = TimedStore::new(Arc::new(MemoryStore::new()), m.clone());
    let update = StatusUpdate {
        extension: "1001".into(),
        status: StatusKind::Away,
        custom_text: None,
        source: ChangeSource::Api,
        at: SystemTime::now(),
        actor: None,
        expected_version: None,
    };
    let mut changes = store.subscribe();
    store.set(&update).unwrap();
    assert_eq!(store.get("1001").unwrap().status, StatusKind::Away);
    store.get("1001").unwrap();
    assert!(store
        .set(&StatusUpdate {
            extension: "not an extension".into(),
            ..update
        })
        .is_err());
    assert_eq!(
        changes.try_recv().unwrap().current.extension,
        "1001",
        "changes still come through the wrapped store"
    );
    let f = parse(&m.render());
    let count = |op| value(&f, "starcode_store_latency_seconds_count", &[("op", op)]);
    assert_eq!(count("set"), 2.0);
    assert_eq!(count("get"), 2.0);
    assert_eq!(count("list"), 0.0);
    assert_eq!(
        value(&f, "starcode_store_errors_total", &[("op", "set")]),
        1.0
    );
}

#[test]
fn the_reader_refuses_broken_text() {
    // The reader itself: a text it must refuse.
    for broken in [
        "# TYPE a counter\n# HELP a x\na_total 1\n",                // no EOF
        "# TYPE a counter\n# HELP a x\nb_total 1\n# EOF\n",         // sample outside its family
        "# TYPE a histogram\n# HELP a x\na_bucket{le=\"1\"} 2\na_bucket{le=\"+Inf\"} 1\na_count 1\na_sum 0\n# EOF\n",
    ] {
        assert!(
            std::panic::catch_unwind(|| parse(broken)).is_err(),
            "accepted {broken:?}"
        );
    }
}
