//! Two starcode nodes on one PostgreSQL database behind Kamailio's dispatcher (issue 12,
//! acceptance 5): a sipp watcher subscribes through the proxy and lands on node A; a sipp caller
//! sets Do Not Disturb through the proxy on node B; the watcher hears `busy` from A (B's change
//! reached A through the database). Then A is killed with SIGKILL and the status set back to
//! Available: B takes A's subscription over when A's lease runs out and the watcher hears
//! `open` from B, in the same dialog and through the proxy, within the lease plus one second,
//! with a CSeq above A's; its refresh, sent to A's Contact, is failed over to B and kept.
//!
//! The dispatcher takes the first live node of a set (`DS_ALG=8`): subscriptions prefer A
//! (set 1: A, B), calls prefer B (set 2: B, A), so the test knows where each dialog lands.
//! Without PostgreSQL or Kamailio these tests skip, except in CI (`CI` set), where they fail.

use std::time::{Duration, SystemTime};

use starcode::config::edit::write_feature_codes;
use starcode::config::FeatureCode;

use super::kamailio::Kamailio;
use super::pg::fresh_database;
use super::*;

/// The nodes' lease in this test: short, so the take-over is quick.
const LEASE: Duration = Duration::from_secs(2);

/// A node on 127.0.0.1 on the database at `url`, named `node`, with a lease of [`LEASE`].
fn node(url: &str, node: &str) -> Engine {
    let store = format!(
        "url = \"{url}\"\n[cluster]\nnode = \"{node}\"\nlease = \"{}ms\"",
        LEASE.as_millis()
    );
    let (dir, port) = Engine::configure_with_store("127.0.0.1", "", Some(&store));
    Engine::spawn(dir, port, "127.0.0.1")
}

#[test]
fn a_watcher_behind_kamailio_follows_changes_on_the_other_node_and_survives_its_nodes_death() {
    let Some(url) = fresh_database() else { return };
    let mut a = node(&url, "a");
    let mut b = node(&url, "b");
    a.wait_for_log("joined the nodes", Duration::from_secs(5));
    b.wait_for_log("joined the nodes", Duration::from_secs(5));
    let Some(mut proxy) = Kamailio::start_with(
        &[(1, a.port), (1, b.port), (2, b.port), (2, a.port)],
        &[("DS_ALG", "8"), ("DS_CALLS", "2")],
    ) else {
        return;
    };

    // The watcher, through the proxy: set 1 puts it on A.
    let (target, fill) = (proxy.target(), proxy.fill());
    let open_at = target.dir.join("open_at");
    let open_at_fill = open_at.display().to_string();
    let watching = std::thread::spawn(move || {
        target.call_with(
            "watcher_takeover.xml",
            &[("PROXY", &fill), ("OPEN_AT", &open_at_fill)],
            &[("ext", "1001"), ("watcher", "2001")],
            "u1",
            &["-aa"],
        )
    });
    let subscribe = proxy.wait_for_log("dispatch SUBSCRIBE ", Duration::from_secs(10));
    assert!(
        subscribe.contains(&format!("to sip:127.0.0.1:{}", a.port)),
        "{subscribe}"
    );
    a.wait_for_log("presence subscription", Duration::from_secs(10));

    // The caller, through the proxy: set 2 puts it on B. A hears of the change from the
    // database and tells its watcher.
    let fill = proxy.fill();
    let call = proxy.target().call(
        "caller_proxied.xml",
        &[("CHOICE", "5"), ("CONFIRM", "1"), ("PROXY", &fill)],
        &caller("1001", "*46", "0", "PCMU"),
        "u1",
    );
    assert!(call.status.success(), "the caller set Do Not Disturb on B");
    let invite = proxy.wait_for_log("dispatch INVITE ", Duration::from_secs(5));
    assert!(
        invite.contains(&format!("to sip:127.0.0.1:{}", b.port)),
        "{invite}"
    );
    a.wait_for_log("presence changed", Duration::from_secs(10));

    // A dies without a word; the status changes on the database meanwhile.
    a.kill();
    let changed = SystemTime::now();
    manage(&b, "status", &["set", "1001", "available"], "");
    let watched = watching.join().unwrap();
    assert!(
        watched.status.success(),
        "the watcher heard busy from A, then open from B through the proxy with a higher CSeq, \
         and B kept its refresh: {}",
        String::from_utf8_lossy(&watched.stderr)
    );
    let nanos: u64 = std::fs::read_to_string(&open_at)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let heard = SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos);
    let waited = heard.duration_since(changed).unwrap();
    let took = b.wait_for_log("took over the subscriptions", Duration::from_secs(1));
    assert!(took.contains("\"subscriptions\":1"), "{took}");
    proxy.wait_for_log(
        "got no answer from its node; trying",
        Duration::from_secs(1),
    );
    // The lease, plus one second for B to look (it checks every second).
    let bound = LEASE + Duration::from_secs(1);
    assert!(
        waited <= bound,
        "open heard {waited:?} after the change, more than {bound:?}"
    );
    eprintln!("the watcher heard the change {waited:?} after it, A having been killed");
}

#[test]
fn feature_codes_remapped_on_one_node_are_written_into_the_others_file_and_served_there() {
    let Some(url) = fresh_database() else { return };
    let mut a = node(&url, "a");
    let mut b = node(&url, "b");
    b.wait_for_log("joined the nodes", Duration::from_secs(5));
    // On A, as the web layer does it: the file edited, then a reload (here by SIGHUP).
    let codes = [
        FeatureCode::enabled("*47"),
        FeatureCode::disabled("*46"),
        FeatureCode::enabled("*48"),
    ];
    write_feature_codes(&a.config_path(), &codes).unwrap();
    let reloaded = a.sighup();
    assert!(reloaded.contains("config reloaded"), "{reloaded}");
    a.wait_for_log(
        "feature codes shared with the other nodes",
        Duration::from_secs(5),
    );
    // B writes them into its own file (comments and the rest kept) and applies them.
    b.wait_for_log(
        "feature codes changed on another node",
        Duration::from_secs(5),
    );
    let written = std::fs::read_to_string(b.config_path()).unwrap();
    assert!(
        written.contains("*47") && written.contains("node = \"b\""),
        "{written}"
    );
    b.refused("*46");
    let set = b.set_by_call("1031", "*47", "5");
    assert_eq!(set, "dnd");
    // Nothing loops: B's reload shared the same codes back, which is no change.
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let version: i64 = db
        .query_one(
            "SELECT version FROM shared_settings WHERE name = 'feature_codes'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(version, 1);
}
