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
fn check_config_never_prints_the_database_password() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pg.toml");
    std::fs::write(
        &path,
        "[store]\nurl = \"postgres://starcode:Hunter2-Secret@db.example.com:5432/presence\"\n",
    )
    .unwrap();
    let out = starcode(&["check-config", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(
        printed.contains("postgres://starcode:***@db.example.com:5432/presence"),
        "{printed}"
    );
    assert!(!printed.contains("Hunter2-Secret"), "{printed}");
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
fn a_capture_cut_short_is_read_up_to_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let whole = std::fs::read("fixtures/away_confirmed.pcap").unwrap();
    let path = dir.path().join("cut.pcap");
    std::fs::write(&path, &whole[..whole.len() - 7]).unwrap();
    let out = starcode(&["detect", path.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let pressed: Vec<&str> = keys.iter().map(|k| k["key"].as_str().unwrap()).collect();
    assert_eq!(pressed, ["3", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ends in the middle of a record"),
        "{stderr}"
    );
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

// ---------------------------------------------------------------------------------------------
// starcode detect

/// Runs `starcode detect ARGS --json`, checks success and returns the parsed lines and stderr.
fn detect_json(args: &[&str]) -> (Vec<serde_json::Value>, String) {
    let mut all = vec!["detect", "--json"];
    all.extend_from_slice(args);
    let out = starcode(&all);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    (lines, stderr)
}

/// Asserts each line's key, source, start (± `slack_ms`) and, when given, duration, in order.
fn assert_detected(
    lines: &[serde_json::Value],
    expected: &[(&str, &str, i64, Option<i64>)],
    slack_ms: i64,
) {
    assert_eq!(lines.len(), expected.len(), "{lines:#?}");
    for (line, &(key, source, start, duration)) in lines.iter().zip(expected) {
        assert_eq!(line["key"], key, "{line}");
        assert_eq!(line["source"], source, "{line}");
        let got = line["start_ms"].as_i64().unwrap();
        assert!(
            (got - start).abs() <= slack_ms,
            "start {got}, not ~{start}: {line}"
        );
        if let Some(duration) = duration {
            let got = line["duration_ms"].as_i64().unwrap();
            assert!((got - duration).abs() <= 30, "duration {got}: {line}");
        }
        for field in ["key", "source", "start_ms", "duration_ms", "stream"] {
            assert!(line.get(field).is_some(), "{field} missing: {line}");
        }
    }
}

#[test]
fn detect_lists_the_rfc4733_keys_of_a_fixture() {
    // away_confirmed.expect: keys "31"; the scenario presses 3 at 4.0 s and 1 at 6.0 s after
    // the 200 OK, which comes 40 ms into the capture.
    let (lines, stderr) = detect_json(&["fixtures/away_confirmed.pcap"]);
    assert_detected(
        &lines,
        &[
            ("3", "rfc4733", 4040, Some(160)),
            ("1", "rfc4733", 6040, Some(120)),
        ],
        50,
    );
    for line in &lines {
        let stream = line["stream"].as_str().unwrap();
        assert!(
            stream.starts_with("127.0.0.1:16384 -> 127.0.0.1:40000 ssrc 0x"),
            "{stream}"
        );
    }
    assert!(
        stderr.contains("2 RTP stream(s)")
            && stderr.contains("keys: rfc4733 2, inband 0, sip_info 0"),
        "{stderr}"
    );
}

#[test]
fn detect_reads_sip_info_keys_of_a_live_recording() {
    // live_chat_info.expect: keys "4#" sent as SIP INFO (dtmf-relay, Duration=160).
    let (lines, stderr) = detect_json(&["fixtures/live_chat_info.pcap"]);
    assert_detected(
        &lines,
        &[
            ("4", "sip_info", 3008, Some(160)),
            ("#", "sip_info", 5011, Some(160)),
        ],
        50,
    );
    assert!(
        lines[0]["stream"].as_str().unwrap().contains("call-id"),
        "{lines:?}"
    );
    assert!(stderr.contains("(2 INFO)"), "{stderr}");
}

#[test]
fn detect_needs_pt_for_events_in_a_capture_without_sip() {
    // no_sip.expect: keys "21"; its [given] pt says 101 is telephone-event/8000.
    let (lines, stderr) = detect_json(&["fixtures/no_sip.pcap"]);
    assert!(lines.is_empty(), "{lines:?}");
    assert!(stderr.contains("--pt 101=telephone-event/8000"), "{stderr}");
    assert!(stderr.contains("keys: rfc4733 0"), "{stderr}");

    let (lines, _) = detect_json(&["fixtures/no_sip.pcap", "--pt", "101=telephone-event/8000"]);
    assert_detected(
        &lines,
        &[("2", "rfc4733", 3680, None), ("1", "rfc4733", 5780, None)],
        60,
    );

    let out = starcode(&[
        "detect",
        "fixtures/no_sip.pcap",
        "--pt",
        "101=telephone-event",
    ]);
    assert_clean_failure(&out, "--pt '101=telephone-event'");
}

/// Samples of the key tones `(key, start_ms, length_ms)` at 8 kHz, silence elsewhere.
fn dtmf_8k(total_ms: usize, presses: &[(char, usize, usize)]) -> Vec<i16> {
    let freqs = |key: char| match key {
        '1' => (697.0, 1209.0),
        '5' => (770.0, 1336.0),
        '9' => (852.0, 1477.0),
        '#' => (941.0, 1477.0),
        other => panic!("no tone for {other}"),
    };
    let mut pcm = vec![0i16; total_ms * 8];
    for &(key, start, len) in presses {
        let (lo, hi): (f64, f64) = freqs(key);
        for i in 0..len * 8 {
            let t = i as f64 / 8000.0;
            let v = 8000.0
                * ((2.0 * std::f64::consts::PI * lo * t).sin()
                    + (2.0 * std::f64::consts::PI * hi * t).sin());
            pcm[start * 8 + i] = v as i16;
        }
    }
    pcm
}

#[test]
fn detect_reads_a_wav_recording_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phone.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for s in dtmf_8k(2000, &[('9', 400, 100), ('#', 1300, 150)]) {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();

    let out = starcode(&["detect", path.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    // `mm:ss.mmm  key  source  duration`, no stream for a file.
    for (line, (key, start_ms)) in lines.iter().zip([("9", 400), ("#", 1300)]) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (minutes, seconds) = fields[0].split_once(':').unwrap();
        let ms =
            minutes.parse::<f64>().unwrap() * 60_000.0 + seconds.parse::<f64>().unwrap() * 1000.0;
        assert!((ms - f64::from(start_ms)).abs() <= 20.0, "{line}");
        assert_eq!(&fields[1..3], [key, "inband"], "{line}");
        assert_eq!(fields[4], "ms", "{line}");
        assert_eq!(fields.len(), 5, "{line}");
    }
    assert!(
        stderr.contains("WAV: 2.00 s of audio at 8000 Hz"),
        "{stderr}"
    );
    assert!(stderr.contains("inband 2"), "{stderr}");
}

#[test]
fn detect_fails_cleanly_on_files_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pcap");
    std::fs::write(&garbage, b"this is not a capture at all, just text\n").unwrap();
    let out = starcode(&["detect", garbage.to_str().unwrap()]);
    assert_clean_failure(&out, "not a WAV, FLAC, Ogg, MP3, pcap or pcapng file");
    assert!(out.stdout.is_empty());

    let broken = dir.path().join("broken.wav");
    std::fs::write(&broken, b"RIFF\x20\0\0\0WAVEfmt \x10\0\0\0garbage").unwrap();
    let out = starcode(&["detect", broken.to_str().unwrap()]);
    assert_clean_failure(&out, "cannot decode the audio");

    let out = starcode(&["detect", "/nonexistent/call.pcap"]);
    assert_clean_failure(&out, "/nonexistent/call.pcap");

    let empty = dir.path().join("empty.wav");
    std::fs::write(&empty, b"").unwrap();
    assert_clean_failure(&starcode(&["detect", empty.to_str().unwrap()]), "empty");
}

/// One Ethernet/IPv4/UDP frame from 10.0.0.1:4000 to 10.0.0.2:5000.
fn udp_frame(payload: &[u8]) -> Vec<u8> {
    let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(4000, 5000);
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, payload).unwrap();
    out
}

fn rtp_packet(pt: u8, marker: bool, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&0xCAFEu32.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

#[test]
fn detect_shows_a_key_sent_both_as_rfc4733_and_in_band_once_per_source() {
    use pcap_file::pcap::{PcapPacket, PcapWriter};
    use std::time::Duration;

    // A phone that sends telephone-events and leaves the tone in the PCMU audio too.
    let presses = [('5', 1000, 120), ('1', 2000, 100)];
    let pcm = dtmf_8k(3000, &presses);
    let mut packets: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut seq = 100u16;
    for (i, frame) in pcm.chunks(160).enumerate() {
        let ulaw: Vec<u8> = frame
            .iter()
            .map(|&s| audio_codec_algorithms::encode_ulaw(s))
            .collect();
        let at = i as u64 * 20;
        packets.push((at, rtp_packet(0, i == 0, seq, at as u32 * 8, &ulaw)));
        seq += 1;
    }
    for (key, start, len) in presses {
        let code = key.to_digit(10).unwrap() as u8;
        let mut reports = vec![(0, false, 160u16), (50, false, 400)];
        reports.extend((0..3).map(|i| (len + 20 * i, true, len as u16 * 8)));
        for (n, (offset, end, duration)) in reports.into_iter().enumerate() {
            let mut payload = vec![code, if end { 0x8A } else { 0x0A }];
            payload.extend_from_slice(&duration.to_be_bytes());
            let at = (start + offset) as u64;
            packets.push((at, rtp_packet(101, n == 0, seq, start as u32 * 8, &payload)));
            seq += 1;
        }
    }
    packets.sort_by_key(|(at, _)| *at);
    let mut writer = PcapWriter::new(Vec::new()).unwrap();
    for (at, payload) in &packets {
        let frame = udp_frame(payload);
        let time = Duration::from_secs(1_800_000_000) + Duration::from_millis(*at);
        writer
            .write_packet(&PcapPacket::new(time, frame.len() as u32, &frame))
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("both.pcap");
    std::fs::write(&path, writer.into_writer()).unwrap();

    let (mut lines, stderr) =
        detect_json(&[path.to_str().unwrap(), "--pt", "101=telephone-event/8000"]);
    // Both reports of one press start within a few ms; list RFC 4733 first for the check.
    lines.sort_by_key(|l| {
        (
            (l["start_ms"].as_i64().unwrap() + 250) / 500,
            l["source"] != "rfc4733",
        )
    });
    assert_detected(
        &lines,
        &[
            ("5", "rfc4733", 1000, Some(120)),
            ("5", "inband", 1000, Some(120)),
            ("1", "rfc4733", 2000, Some(100)),
            ("1", "inband", 2000, Some(100)),
        ],
        20,
    );
    assert!(lines
        .iter()
        .all(|l| l["stream"] == "10.0.0.1:4000 -> 10.0.0.2:5000 ssrc 0x0000cafe"));
    assert!(
        stderr.contains("keys: rfc4733 2, inband 2, sip_info 0"),
        "{stderr}"
    );
}

#[test]
fn detect_uses_the_thresholds_of_the_given_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quiet.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    // About -25.6 dBm0 per tone: above the default -30 dBm0 minimum.
    for s in dtmf_8k(1000, &[('5', 300, 120)]) {
        w.write_sample((f64::from(s) * 0.15) as i16).unwrap();
    }
    w.finalize().unwrap();
    let wav = path.to_str().unwrap();

    let defaults = dir.path().join("defaults.toml");
    std::fs::write(&defaults, "").unwrap();
    let (lines, _) = detect_json(&[wav, "--config", defaults.to_str().unwrap()]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["key"], "5");

    // A deployment that raised the minimum to -20 dBm0 would not hear it; detect says so, even
    // with in-band listening turned off in that engine.
    let strict = dir.path().join("strict.toml");
    std::fs::write(
        &strict,
        "[media.inband]\nenabled = false\nmin_tone_level_dbm0 = -20.0\n",
    )
    .unwrap();
    let (lines, _) = detect_json(&[wav, "--config", strict.to_str().unwrap()]);
    assert!(lines.is_empty(), "{lines:?}");

    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[media.inband]\nmin_tone_level_dbm0 = 9.0\n").unwrap();
    let out = starcode(&["detect", wav, "--config", broken.to_str().unwrap()]);
    assert_clean_failure(&out, "media.inband.min_tone_level_dbm0");
}

/// Runs `starcode ext --db DB ARGS` with `stdin`; every secret a test uses is checked to be
/// absent from what any command printed.
struct Ext {
    dir: tempfile::TempDir,
    secrets: Vec<String>,
    printed: String,
}

impl Ext {
    fn new() -> Ext {
        Ext {
            dir: tempfile::tempdir().unwrap(),
            secrets: Vec::new(),
            printed: String::new(),
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("presence.db")
    }

    fn run(&mut self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        use std::process::Stdio;
        self.secrets
            .extend(stdin.lines().filter(|l| !l.is_empty()).map(str::to_string));
        let mut child = Command::new(env!("CARGO_BIN_EXE_starcode"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("ext")
            .arg("--db")
            .arg(self.db())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starcode runs");
        // A command that does not read stdin may exit before the write: that is fine.
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        let out = child.wait_with_output().expect("output");
        self.printed.push_str(&text(&out.stdout));
        self.printed.push_str(&text(&out.stderr));
        out
    }

    /// Runs and expects success; returns stdout.
    fn ok(&mut self, args: &[&str], stdin: &str) -> String {
        let out = self.run(args, stdin);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    }

    fn list(&mut self) -> Vec<serde_json::Value> {
        self.ok(&["list", "--json"], "")
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Ext {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        for secret in &self.secrets {
            assert!(
                !self.printed.contains(secret.as_str()),
                "a secret was printed: {}",
                self.printed
            );
        }
    }
}

#[test]
fn ext_add_passwd_disable_enable_list_and_remove() {
    let mut ext = Ext::new();
    let out = ext.ok(
        &[
            "add",
            "1001",
            "--name",
            "Ann Smith",
            "--sip-secret-stdin",
            "--portal-password-stdin",
        ],
        "Sip-Secret-1001\nPortal-Pass-1001\n",
    );
    assert_eq!(
        out,
        "added 1001 (Ann Smith): SIP secret set for realm starcode, portal password set\n"
    );
    let dup = ext.run(
        &["add", "1001", "--name", "Bob", "--sip-secret-stdin"],
        "Other-Secret-9\n",
    );
    assert_clean_failure(&dup, "adding 1001: extension 1001 already has an account");
    let weak = ext.run(
        &["add", "1002", "--name", "Bob", "--sip-secret-stdin"],
        "abc12\n",
    );
    assert_clean_failure(&weak, "shorter than 8 characters");

    ext.ok(
        &["passwd", "1001", "--sip-secret-stdin"],
        "Sip-Secret-1001b\n",
    );
    assert_eq!(ext.ok(&["disable", "1001"], ""), "1001 disabled\n");
    assert_eq!(ext.list()[0]["enabled"], false);
    assert_eq!(ext.ok(&["enable", "1001"], ""), "1001 enabled\n");
    assert_eq!(
        ext.list(),
        [
            serde_json::json!({"extension": "1001", "name": "Ann Smith", "enabled": true,
            "language": null, "sip_secret": true, "portal_password": true,
            "status": "available", "custom_text": null})
        ]
    );
    let missing = ext.run(&["enable", "2002"], "");
    assert_clean_failure(&missing, "enabling 2002: extension 2002 has no account");

    // Removing keeps the presence history.
    let set = starcode(&[
        "status",
        "--db",
        ext.db().to_str().unwrap(),
        "set",
        "1001",
        "away",
    ]);
    assert!(set.status.success(), "{}", text(&set.stderr));
    ext.ok(&["remove", "1001"], "");
    assert!(ext.list().is_empty());
    let get = starcode(&[
        "status",
        "--db",
        ext.db().to_str().unwrap(),
        "get",
        "1001",
        "--json",
        "--history",
        "5",
    ]);
    let got: serde_json::Value = serde_json::from_slice(&get.stdout).unwrap();
    assert_eq!(got["status"], "away");
    assert_eq!(got["history"].as_array().unwrap().len(), 1);

    // The database never holds a secret in plaintext.
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(ext.dir.path()).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    for secret in ext.secrets.clone() {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} is in the database"
        );
    }
}

#[test]
fn ext_import_reads_every_supported_pbx_export() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/accounts");
    let mut ext = Ext::new();
    for (file, extensions) in [
        ("freepbx_bulk_handler.csv", &["2001", "2002", "2003"][..]),
        ("freepbx_bulk_extensions_legacy.csv", &["3001", "3002"]),
        ("3cx_users.csv", &["4001", "4002"]),
        ("switchvox.csv", &["5001", "5002"]),
        ("plain.csv", &["6001", "6002"]),
        ("plain_no_header.csv", &["7001", "7002"]),
    ] {
        let path = data.join(file);
        let out = ext.ok(&["import", path.to_str().unwrap()], "");
        assert!(
            out.starts_with(&format!("imported {} accounts", extensions.len())),
            "{file}: {out}"
        );
        // The secret columns of these files must never be printed either.
        let csv = std::fs::read_to_string(&path).unwrap();
        for secret in [
            "9f2c41d07be3a6e1c5d8",
            "c3f1a9e27d4b8056e1f2",
            "Xk2p9QrT7vLm",
            "Ph0ne-5001-s3cret",
            "plain-6001-secret",
            "nohdr-7001-secret",
        ] {
            if csv.contains(secret) {
                ext.secrets.push(secret.to_string());
            }
        }
    }
    let list = ext.list();
    assert_eq!(list.len(), 13);
    assert!(list.iter().all(|a| a["sip_secret"] == true), "{list:?}");
    let bob = list.iter().find(|a| a["extension"] == "2002").unwrap();
    assert_eq!(bob["name"], "Bob Builder, Jr.");
    assert_eq!(bob["language"], "de-CH");
    let fay = list.iter().find(|a| a["extension"] == "4001").unwrap();
    assert_eq!(fay["name"], "Fay Okafor");

    // Again without --replace: every row is an error, nothing changes.
    let again = ext.run(&["import", data.join("plain.csv").to_str().unwrap()], "");
    assert_clean_failure(&again, "line 2: extension 6001 already has an account");
    let replaced = ext.ok(
        &[
            "import",
            "--replace",
            data.join("plain.csv").to_str().unwrap(),
        ],
        "",
    );
    assert!(replaced.contains("0 added, 2 updated"), "{replaced}");
}

#[test]
fn ext_import_of_500_rows_is_one_command_and_a_bad_row_imports_nothing() {
    let mut ext = Ext::new();
    let mut csv = String::from("extension,name,secret\n");
    for n in 0..500 {
        csv.push_str(&format!("{},User {n},Bulk-Secret-{n:04}\n", 10_000 + n));
    }
    let good = ext.dir.path().join("good.csv");
    std::fs::write(&good, &csv).unwrap();
    // Line 302 (row 301): a broken extension; line 451: a weak secret.
    let mut lines: Vec<String> = csv.lines().map(str::to_string).collect();
    lines[301] = "10 300,User 300,Bulk-Secret-0300".into();
    lines[450] = "10449,User 449,abc".into();
    let bad = ext.dir.path().join("bad.csv");
    std::fs::write(&bad, lines.join("\n")).unwrap();
    ext.secrets.push("Bulk-Secret-0123".into());

    let out = ext.run(&["import", bad.to_str().unwrap()], "");
    assert_clean_failure(&out, "2 problems; nothing imported:");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("line 302, column extension: not an extension"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 451, column secret: the SIP secret is shorter than 8 characters"),
        "{stderr}"
    );
    assert!(ext.list().is_empty());

    let dry = ext.ok(&["import", "--dry-run", good.to_str().unwrap()], "");
    assert!(dry.starts_with("dry run: would add 500, update 0"), "{dry}");
    assert!(ext.list().is_empty());
    let done = ext.ok(&["import", good.to_str().unwrap()], "");
    assert_eq!(
        done,
        "imported 500 accounts: 500 added, 0 updated (realm starcode); 0 without a SIP secret\n"
    );
    assert_eq!(ext.list().len(), 500);
}

/// Runs `starcode` with `stdin` piped in.
fn starcode_with_stdin(args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_starcode"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starcode runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("stdin written");
    child.wait_with_output().expect("output")
}

#[test]
fn admins_and_tokens_are_managed_from_the_command_line_and_kept_only_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("presence.db");
    let db = db.to_str().unwrap();
    let out = starcode_with_stdin(
        &["admin", "--db", db, "add", "root", "--password-stdin"],
        "root-Password-1\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "added admin root\n");
    let out = starcode(&["admin", "--db", db, "add", "alice"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let generated = text(&out.stdout);
    let generated = generated
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("generated password (shown once, kept only hashed): "))
        .expect("a generated password")
        .to_string();
    let out = starcode(&["admin", "--db", db, "list", "--json"]);
    let names: Vec<String> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["name"].to_string())
        .collect();
    assert_eq!(names, ["\"alice\"", "\"root\""]);

    let out = starcode(&["token", "--db", db, "create", "--name", "deploy", "--admin"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("token (shown once, kept only hashed): "))
        .expect("the token")
        .to_string();
    assert!(token.starts_with("sc_"), "{token}");
    let id = token[3..].split('_').next().unwrap().to_string();
    let out = starcode(&["token", "--db", db, "list"]);
    let list = text(&out.stdout);
    assert!(list.contains(&id) && !list.contains(&token), "{list}");
    let out = starcode(&["token", "--db", db, "revoke", &id]);
    assert_eq!(text(&out.stdout), format!("revoked token {id} (deploy)\n"));

    let out = starcode(&[
        "token",
        "--db",
        db,
        "create",
        "--name",
        "x",
        "--extension",
        "1001",
    ]);
    assert_clean_failure(&out, "extension 1001 has no account");
    let out = starcode(&["admin", "--db", db, "disable", "nobody"]);
    assert_clean_failure(&out, "there is no admin nobody");
    let out = starcode_with_stdin(
        &["admin", "--db", db, "passwd", "root", "--password-stdin"],
        "short\n",
    );
    assert_clean_failure(&out, "shorter than 8 characters");
    assert!(!text(&out.stderr).contains("short\n"));

    let mut bytes = std::fs::read(dir.path().join("presence.db")).unwrap();
    bytes.extend(std::fs::read(dir.path().join("presence.db-wal")).unwrap_or_default());
    for secret in [
        "root-Password-1",
        generated.as_str(),
        &token[4 + id.len()..],
    ] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "a secret is in the database file"
        );
    }
}
