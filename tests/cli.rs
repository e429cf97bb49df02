//! The `starcode` command as an admin or QA uses it: exit codes, output, and clear errors on
//! broken input (never a panic).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn starcode(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_starcode"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("starcode runs")
}

/// Runs `starcode run`, which must fail at start-up; killed after 60 s so a regression that
/// starts the engine instead cannot hang the suite.
fn run_must_fail(config: &Path) -> Output {
    use std::time::{Duration, Instant};
    let mut child = Command::new(env!("CARGO_BIN_EXE_starcode"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", "--config", config.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starcode runs");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("waitable").is_none() {
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("starcode run did not stop on a broken prompt set");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts a clean failure: exit code 1, the message on stderr, and no panic.
fn assert_clean_failure(out: &Output, needle: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
}

#[test]
fn check_config_prints_the_effective_config() {
    let out = starcode(&["check-config"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(printed.contains("feature_codes = ["), "{printed}");
    assert!(printed.contains("\"*46\""));
}

#[test]
fn check_config_lists_every_problem_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "feature_codes = [\"*4A\", \"*46\", \"*46\"]\n[menu]\nchat = \"1\"\nmenu_attempts = 0\n",
    )
    .unwrap();
    let out = starcode(&["check-config", path.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    for needle in [
        "feature_codes[0]: \"*4A\" contains 'A'",
        "feature_codes[2]: \"*46\" is listed twice",
        "menu.chat: key '1' is already used for menu.unavailable",
        "menu.menu_attempts: 0 is out of range",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    }
    assert!(out.stdout.is_empty());
}

#[test]
fn status_commands_work_on_a_fresh_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sub").join("presence.db");
    let db = db.to_str().unwrap();
    let out = starcode(&["status", "--db", db, "get", "1001"]);
    assert!(
        text(&out.stdout).contains("available"),
        "unknown reads as available"
    );
    let out = starcode(&["status", "--db", db, "set", "1001", "dnd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = starcode(&[
        "status",
        "--db",
        db,
        "set",
        "1001",
        "custom",
        "--text",
        "Out until 3",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = starcode(&["status", "--db", db, "get", "1001", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["status"], "custom");
    assert_eq!(json["custom_text"], "Out until 3");
    assert_eq!(json["version"], 2);
    assert_eq!(json["source"], "cli");
    let out = starcode(&["status", "--db", db, "list"]);
    assert!(text(&out.stdout).contains("1001"));
}

#[test]
fn status_refuses_bad_input_without_changing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("presence.db");
    let db = db.to_str().unwrap();
    starcode(&["status", "--db", db, "set", "1001", "away"]);
    let out = starcode(&["status", "--db", db, "set", "1001", "custom"]);
    assert_clean_failure(&out, "no custom status text");
    let long = "x".repeat(65);
    let out = starcode(&[
        "status", "--db", db, "set", "1001", "custom", "--text", &long,
    ]);
    assert_clean_failure(&out, "65 characters");
    let out = starcode(&["status", "--db", db, "set", "10 01", "away"]);
    assert_clean_failure(&out, "invalid extension");
    let out = starcode(&["status", "--db", db, "get", "1001", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["status"], "away");
    assert_eq!(json["version"], 1);
}

#[test]
fn status_on_a_file_that_is_not_a_database_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("garbage.db");
    std::fs::write(&db, vec![0x5a; 4096]).unwrap();
    let out = starcode(&["status", "--db", db.to_str().unwrap(), "list"]);
    assert_clean_failure(&out, "garbage.db");
}

#[test]
fn replay_of_garbage_or_truncated_captures_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pcap");
    std::fs::write(&garbage, b"this is not a capture at all, just text\n").unwrap();
    let out = starcode(&["replay", garbage.to_str().unwrap()]);
    assert_clean_failure(&out, "garbage.pcap");

    // A pcap header that promises a packet that is not there.
    let mut truncated = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
    truncated.extend_from_slice(&[0; 8]);
    truncated.extend_from_slice(&65535u32.to_le_bytes());
    truncated.extend_from_slice(&1u32.to_le_bytes());
    truncated.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 100, 0, 0, 0, 100, 0, 0, 0, 1, 2]);
    let path = dir.path().join("truncated.pcap");
    std::fs::write(&path, &truncated).unwrap();
    let out = starcode(&["replay", path.to_str().unwrap()]);
    assert_clean_failure(&out, "truncated");

    let out = starcode(&["replay", "/nonexistent/call.pcap"]);
    assert_clean_failure(&out, "/nonexistent/call.pcap");
}

#[test]
fn replay_rejects_a_bad_pt_option() {
    let fixture = first_fixture();
    let out = starcode(&[
        "replay",
        fixture.to_str().unwrap(),
        "--pt",
        "101=telephone-event",
    ]);
    assert_clean_failure(&out, "--pt '101=telephone-event'");
}

#[test]
fn a_missing_prompt_stops_start_up_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("prompts");
    let en = prompts.join("en");
    std::fs::create_dir_all(&en).unwrap();
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts/en");
    for entry in std::fs::read_dir(&bundled).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if name != "goodbye.wav" {
            std::fs::copy(&path, en.join(name)).unwrap();
        }
    }
    let config = dir.path().join("starcode.toml");
    let store = dir.path().join("presence.db");
    std::fs::write(
        &config,
        format!(
            "[prompts]\ndir = {:?}\n[store]\npath = {:?}\n",
            prompts.to_str().unwrap(),
            store.to_str().unwrap()
        ),
    )
    .unwrap();
    let out = run_must_fail(&config);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("goodbye"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // A prompt that is not audio at all.
    std::fs::write(en.join("goodbye.wav"), b"RIFF....WAVEfmt garbage").unwrap();
    let out = run_must_fail(&config);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("goodbye.wav"), "{stderr}");
}

fn first_fixture() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut captures: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    captures.sort();
    captures.into_iter().next().expect("a fixture capture")
}
