//! The database goes away under a running engine (issue 12, point 4), with real peers: the
//! engine runs on a throwaway PostgreSQL that the test stops mid-run (`-m immediate`, as a
//! crash would). While it is down a sipp feature-code call hears that the status could not
//! be saved, and so does one that starts while it is down (it cannot read the caller's status,
//! so it skips "your status is" and offers the menu at once), a sipp PUBLISH gets 500, the HTTP API answers 503, and a sipp watcher gets no
//! NOTIFY at all (it keeps its last state). Then the server comes back on the same port and,
//! without restarting the engine, the next call sets Do Not Disturb and the watcher gets
//! `busy`.
//!
//! Without PostgreSQL this test skips, except in CI (`CI` set), where it fails.

use std::process::Command;
use std::time::Duration;

use super::pg::stoppable_database;
use super::*;

/// The HTTP status of `PUT /api/v1/extensions/{ext}/presence` with `body`, by curl.
fn put_presence(base: &str, token: &str, ext: &str, body: &str) -> u16 {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(["-X", "PUT", "-H", "Content-Type: application/json"])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(["--data-binary", body])
        .arg(format!("{base}/api/v1/extensions/{ext}/presence"))
        .output()
        .expect("curl is missing (scripts/bootstrap.sh installs it)");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("curl: {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn while_postgresql_is_down_the_engine_refuses_changes_and_recovers_by_itself() {
    let Some((server, url)) = stoppable_database() else {
        return;
    };
    let mut engine = super::on_postgres::start_on(&url, "");
    let base = engine.web_url();
    let token = String::from_utf8_lossy(
        &manage(
            &engine,
            "token",
            &["create", "--name", "ops", "--admin"],
            "",
        )
        .stdout,
    )
    .split_whitespace()
    .find(|w| w.starts_with("sc_"))
    .expect("a token")
    .to_string();

    // A watcher of 1401: `open` now, and nothing else until `busy` (any other NOTIFY fails it).
    let target = engine.target();
    let watching = std::thread::spawn(move || {
        target.call(
            "watcher.xml",
            &[],
            &[("ext", "1401"), ("watcher", "2401")],
            "u1",
        )
    });
    engine.wait_for_log("presence subscription", Duration::from_secs(10));
    // Its first NOTIFY answered and its CSeq stored before the database goes.
    std::thread::sleep(Duration::from_secs(1));

    // A feature-code call picks Away and confirms. The database goes once the call is in
    // the menu, so its save fails: the caller hears so, and the engine hangs up.
    let target = engine.target();
    let calling = std::thread::spawn(move || {
        target.call(
            "caller_rfc2833.xml",
            &[("CHOICE", "3"), ("CONFIRM", "1")],
            &caller("1401", "*46", "0", "PCMU"),
            "u1",
        )
    });
    engine.wait_for_log("ivr transition", Duration::from_secs(10));
    server.stop();
    let published = engine.call("publisher_refused.xml", &[], &[("ext", "1401")], "u1");
    assert!(published.status.success(), "the PUBLISH got 500");
    assert_eq!(
        put_presence(&base, &token, "1401", r#"{"status":"chat"}"#),
        503,
        "the API says the store is unavailable"
    );
    let call = calling.join().unwrap();
    assert!(call.status.success(), "the engine ended the refused call");
    let finished = engine.wait_for_log("call finished", Duration::from_secs(10));
    assert!(finished.contains("save_failed"), "{finished}");

    // A call that *starts* while the database is down is answered all the same: the
    // caller's status cannot be read, so no "your status is", the menu at once; the choice's
    // write fails and the caller hears so.
    let call = engine.call(
        "caller_rfc2833.xml",
        &[("CHOICE", "4"), ("CONFIRM", "1")],
        &caller("1401", "*46", "0", "PCMU"),
        "u1",
    );
    assert!(call.status.success(), "answered, and ended by the engine");
    let unread = engine.wait_for_log("answering without it", Duration::from_secs(10));
    assert!(
        unread.contains("WARN") && unread.contains("call_id"),
        "{unread}"
    );
    engine.wait_for_log("answered, status unknown", Duration::from_secs(10));
    engine.wait_for_logs(
        &["ivr transition", "confirm(chat"],
        1,
        Duration::from_secs(10),
    );
    engine.wait_for_logs(
        &["call finished", "save_failed"],
        2,
        Duration::from_secs(10),
    );

    server.restart();
    // The same engine process: its store reconnects by itself.
    let call = engine.call(
        "caller_rfc2833.xml",
        &[("CHOICE", "5"), ("CONFIRM", "1")],
        &caller("1401", "*46", "0", "PCMU"),
        "u1",
    );
    assert!(call.status.success(), "the caller set Do Not Disturb");
    let watched = watching.join().unwrap();
    assert!(
        watched.status.success(),
        "the watcher kept open through the outage, then got busy"
    );
    let got = manage(&engine, "status", &["get", "1401", "--json"], "");
    let status: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(status["status"], "dnd", "{status}");
    assert_eq!(
        status["version"], 1,
        "nothing was written while it was down"
    );
}
