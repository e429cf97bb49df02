//! Every capture in `fixtures/` replays to its expectation: one test per fixture, each running
//! the real `starcode replay --expect` command as QA would.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn capture_of(name: &str) -> PathBuf {
    for ext in ["pcap", "pcapng"] {
        let path = fixtures_dir().join(format!("{name}.{ext}"));
        if path.exists() {
            return path;
        }
    }
    panic!("no capture for fixture {name}");
}

/// Replays one fixture with its expectation and checks the transcript's shape.
fn replay_fixture(name: &str) {
    let capture = capture_of(name);
    let expect = fixtures_dir().join(format!("{name}.expect"));
    let output = Command::new(env!("CARGO_BIN_EXE_starcode"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("replay")
        .arg(&capture)
        .arg("--expect")
        .arg(&expect)
        .output()
        .expect("starcode runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{name} does not match its expectation:\n{stderr}\ntranscript:\n{stdout}"
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each transcript line is JSON"))
        .collect();
    assert_eq!(
        lines.first().and_then(|l| l["event"].as_str()),
        Some("call")
    );
    assert_eq!(lines.last().and_then(|l| l["event"].as_str()), Some("end"));
    let times: Vec<u64> = lines.iter().filter_map(|l| l["t_ms"].as_u64()).collect();
    assert_eq!(times.len(), lines.len(), "every line has a time");
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "times never go back"
    );
}

macro_rules! fixtures {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                replay_fixture(stringify!($name));
            }
        )*

        /// Every fixture on disk has a test above, and every test has its files.
        #[test]
        fn every_fixture_is_tested() {
            let listed: Vec<&str> = vec![$(stringify!($name)),*];
            let mut on_disk: Vec<String> = std::fs::read_dir(fixtures_dir())
                .expect("fixtures/ exists")
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let path = e.path();
                    (path.extension()? == "expect")
                        .then(|| path.file_stem()?.to_str().map(str::to_string))
                        .flatten()
                })
                .collect();
            on_disk.sort();
            let mut listed_sorted: Vec<String> = listed.iter().map(|s| s.to_string()).collect();
            listed_sorted.sort();
            assert_eq!(listed_sorted, on_disk);
            assert!(listed.len() >= 8, "the issue asks for at least eight fixtures");
        }
    };
}

fixtures![
    available_confirmed,
    away_confirmed,
    chat_confirmed,
    custom_confirmed,
    dnd_confirmed,
    hangup_during_confirm,
    invalid_then_valid,
    live_away_pcmu,
    live_bye_during_confirm,
    live_chat_info,
    live_dnd_pcma_48,
    long_press,
    lost_start_and_end,
    no_sip,
    opus,
    pcma,
    reselect_then_confirm,
    slow_caller,
    timeout_no_change,
    triple_end_redundancy,
    unavailable_confirmed,
];
