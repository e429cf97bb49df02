//! Engines on a shared PostgreSQL database (issue 12, `store.url`) with real peers: a
//! throwaway server (`tests/support/postgres.rs`), an account added with `starcode ext` on the
//! same URL, a sipp phone that answers the digest challenge with that account and sets Do Not
//! Disturb with `*46` on one engine, `starcode status get` reading it back, and a sipp watcher
//! subscribed through a *second* engine process on the same database that gets `busy`
//! (acceptance point 2: every node tells its own watchers about every change).
//!
//! Without PostgreSQL these tests skip, except in CI (`CI` set), where they fail.

use std::time::Duration;

use super::pg::fresh_database;
use super::*;

/// Loopback peers on 127.0.0.1 must authenticate to this engine (only 127.0.0.2 is trusted);
/// sipp 3.6.1 answers only MD5.
const AUTHENTICATED_LOOPBACK: &str =
    "trusted_peers = [\"127.0.0.2/32\"]\ndigest_algorithms = [\"MD5\"]\n";

/// An engine on 127.0.0.1 whose `[store]` is the PostgreSQL database at `url`.
pub(super) fn start_on(url: &str, extra_sip: &str) -> Engine {
    let store = format!("url = \"{url}\"");
    let (dir, port) = Engine::configure_with_store("127.0.0.1", extra_sip, Some(&store));
    Engine::spawn(dir, port, "127.0.0.1")
}

#[test]
fn an_account_added_by_the_cli_sets_dnd_on_one_engine_and_a_watcher_on_another_sees_busy() {
    let Some(url) = fresh_database() else { return };
    let mut caller_side = start_on(&url, AUTHENTICATED_LOOPBACK);
    let mut watcher_side = start_on(&url, "");
    let ready = caller_side.wait_for_log("starcode ready", Duration::from_secs(1));
    assert!(
        ready.contains("PostgreSQL database postgres://starcode@127.0.0.1:"),
        "{ready}"
    );
    caller_side.wait_for_log("\"accounts\":0,\"disabled\":0", Duration::from_secs(5));

    // The account, through the CLI on the same URL (the caller side's config).
    let secret = "Pg-Account-Secret-4242";
    manage(
        &caller_side,
        "ext",
        &["add", "1301", "--name", "Ann", "--sip-secret-stdin"],
        &format!("{secret}\n"),
    );
    // Both engines' accounts watchers see the version move in the shared database.
    caller_side.wait_for_log("\"accounts\":1,\"disabled\":0", Duration::from_secs(10));
    watcher_side.wait_for_log("\"accounts\":1,\"disabled\":0", Duration::from_secs(10));

    // A watcher of 1301 through the second engine: open first, then busy.
    let target = watcher_side.target();
    let watching = std::thread::spawn(move || {
        target.call(
            "watcher.xml",
            &[],
            &[("ext", "1301"), ("watcher", "2301")],
            "u1",
        )
    });
    watcher_side.wait_for_log("presence subscription", Duration::from_secs(10));

    // The phone answers the 401 with the account's secret, then picks 5 (DND) and confirms.
    let uri = format!("*46@127.0.0.1:{}", caller_side.port);
    let call = caller_side.target().call_with(
        "auth_caller.xml",
        &[
            ("USER", "1301"),
            ("SECRET", secret),
            ("CHOICE", "5"),
            ("CONFIRM", "1"),
        ],
        &caller("1301", "*46", "0", "PCMU"),
        "u1",
        &["-auth_uri", &uri],
    );
    assert!(
        call.status.success(),
        "401, then 200 to the answer, then BYE"
    );
    let finished = caller_side.wait_for_log("call finished", Duration::from_secs(10));
    assert!(finished.contains("saved"), "{finished}");

    // The CLI reads it from the same database.
    let got = manage(&caller_side, "status", &["get", "1301", "--json"], "");
    let status: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(status["status"], "dnd", "{status}");
    assert_eq!(status["source"], "feature_code", "{status}");

    let watched = watching.join().unwrap();
    assert!(
        watched.status.success(),
        "the watcher on the other engine got busy, then unsubscribed"
    );
    for engine in [&caller_side, &watcher_side] {
        assert!(
            engine.lines.iter().all(|l| !l.contains(secret)),
            "the secret is in a log"
        );
    }
}

#[test]
fn a_status_set_with_the_cli_on_the_url_reaches_a_watcher_and_admins_share_the_database() {
    let Some(url) = fresh_database() else { return };
    let mut engine = start_on(&url, "");
    let target = engine.target();
    let watching = std::thread::spawn(move || {
        target.call(
            "watcher.xml",
            &[],
            &[("ext", "1302"), ("watcher", "2302")],
            "u1",
        )
    });
    engine.wait_for_log("presence subscription", Duration::from_secs(10));
    // The subscription is accepted; its first NOTIFY (open, which the watcher checks) follows
    // once the record is stored and the presence read. Give it that time, as
    // `dnd_call_with_a_watcher` does: a change first would make the first NOTIFY say busy
    // (right for a phone, but not what this scenario expects). Seen once in CI.
    std::thread::sleep(Duration::from_secs(1));
    // Another process (the CLI) writes the shared database; the engine announces it.
    manage(&engine, "status", &["set", "1302", "dnd"], "");
    let watched = watching.join().unwrap();
    assert!(watched.status.success(), "the watcher got busy");
    let line = engine.wait_for_log("presence changed", Duration::from_secs(5));
    assert!(line.contains("1302") && line.contains("Cli"), "{line}");

    // `admin` and `token` work on the URL too; the list shows what was added, and the
    // password given on stdin is nowhere in the database's tables.
    let password = "Pg-Admin-Password-77";
    manage(
        &engine,
        "admin",
        &["add", "root", "--password-stdin"],
        &format!("{password}\n"),
    );
    let listed = manage(&engine, "admin", &["list"], "");
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("root"),
        "{}",
        String::from_utf8_lossy(&listed.stdout)
    );
    let mut client = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    let hash: String = client
        .query_one(
            "SELECT password_hash FROM web_admins WHERE name = 'root'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(hash.starts_with("$argon2id$"), "kept as a hash");
    assert!(!hash.contains(password));
}

/// `curl` with `args`, bounded to 10 s: its stdout (with `-i`, status line and headers too).
fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl runs (scripts/bootstrap.sh installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The HTTP status of `GET url/api/v1/me` with `cookie`.
fn me_status(url: &str, cookie: &str) -> String {
    curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        &format!("Cookie: {cookie}"),
        &format!("{url}/api/v1/me"),
    ])
}

#[test]
fn a_browser_session_opened_on_one_engine_is_good_on_the_other_until_the_cli_ends_it() {
    let Some(url) = fresh_database() else { return };
    let mut first = start_on(&url, "");
    let mut second = start_on(&url, "");
    let (first_web, second_web) = (first.web_url(), second.web_url());
    manage(
        &first,
        "admin",
        &["add", "ops", "--password-stdin"],
        "ops-pass-1234\n",
    );
    let login = curl(&[
        "-i",
        "-H",
        "Content-Type: application/json",
        "--data",
        r#"{"user":"ops","password":"ops-pass-1234"}"#,
        &format!("{first_web}/api/v1/login"),
    ]);
    assert!(
        login.lines().next().is_some_and(|l| l.contains(" 200")),
        "{login}"
    );
    let cookie = login
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim().eq_ignore_ascii_case("set-cookie").then(|| {
                value
                    .trim()
                    .split(';')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
        })
        .unwrap_or_else(|| panic!("no Set-Cookie in {login}"));
    assert_eq!(me_status(&first_web, &cookie), "200");
    assert_eq!(
        me_status(&second_web, &cookie),
        "200",
        "the session is in the shared database"
    );
    // Disabling the admin with the CLI ends its sessions: refused by both engines at once.
    manage(&second, "admin", &["disable", "ops"], "");
    assert_eq!(me_status(&first_web, &cookie), "401");
    assert_eq!(me_status(&second_web, &cookie), "401");
}
