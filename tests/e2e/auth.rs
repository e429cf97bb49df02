//! Accounts and SIP digest against peers someone else wrote (issue 10, item 5): sipp answering
//! the 401 itself (`[authentication]`), baresip and linphonec configured with a username and
//! password that dial `*46`, set a status and watch another extension, a wrong password, a
//! replayed Authorization, a source locked out after repeated failures, and a trace-level log
//! that holds no secret, HA1, portal password or hash, nor any `response=` sent.
//!
//! The engine trusts only 127.0.0.2 here, so the peers on 127.0.0.1 must authenticate; their
//! accounts are added with `starcode ext add` (secret on stdin) before the engine starts.
//! What the peers can do shapes the config: sipp 3.6.1 answers only the first challenge and only
//! MD5, and Debian's baresip 1.0 (libre 1.1) gives up on a 401 that offers any algorithm but
//! MD5, so their engines offer `digest_algorithms = ["MD5"]`; linphone (belle-sip 5.1) picks
//! SHA-256 from the default pair.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use starcode::accounts::DigestAlgorithm;

use super::digest_client::Challenge;
use super::peer::Message;
use super::*;

/// Only this address is trusted: loopback peers on 127.0.0.1 must authenticate.
const UNTRUSTED_LOOPBACK: &str = "trusted_peers = [\"127.0.0.2/32\"]\n";
/// The client nonce of the raw phones' answers (the engine only hashes it).
const CNONCE: &str = "0a4f113b";
/// What the accounts' secrets are in these tests (never a real one).
fn secret_of(ext: &str) -> String {
    format!("s3cret-{ext}-pw")
}

impl Engine {
    /// An engine on 127.0.0.1 that trusts only 127.0.0.2, with an account (secret from
    /// [`secret_of`], portal password `portal-EXT`) for each of `extensions`, logging at
    /// `log_filter`.
    fn start_with_accounts(extra_sip: &str, extensions: &[&str], log_filter: &str) -> Engine {
        let (dir, port) =
            Engine::configure("127.0.0.1", &format!("{UNTRUSTED_LOOPBACK}{extra_sip}"));
        for ext in extensions {
            ext_cli(
                &dir.path().join("starcode.toml"),
                &[
                    "add",
                    ext,
                    "--name",
                    &format!("Extension {ext}"),
                    "--sip-secret-stdin",
                    "--portal-password-stdin",
                ],
                &format!("{}\nportal-{ext}\n", secret_of(ext)),
            );
        }
        Engine::spawn_logging(dir, port, "127.0.0.1", log_filter)
    }
}

/// Runs `starcode ext --config CONFIG ARGS` with `stdin`, as an admin would; must succeed.
fn ext_cli(config: &Path, args: &[&str], stdin: &str) {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_starcode"))
        .arg("ext")
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "starcode ext {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A phone on a raw UDP socket of 127.0.0.1 that sends SUBSCRIBEs and answers NOTIFYs.
struct RawPhone {
    socket: UdpSocket,
    engine: SocketAddr,
    user: String,
    sent: usize,
}

impl RawPhone {
    fn new(engine: &Engine, user: &str) -> RawPhone {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        RawPhone {
            socket,
            engine: format!("127.0.0.1:{}", engine.port).parse().unwrap(),
            user: user.to_string(),
            sent: 0,
        }
    }

    /// A new SUBSCRIBE (own Call-ID and tag) to `ext`'s presence, with `authorization` if any.
    fn subscribe_text(&mut self, ext: &str, authorization: Option<&str>) -> String {
        self.sent += 1;
        let me = self.socket.local_addr().unwrap();
        let (n, user, engine) = (self.sent, &self.user, self.engine);
        let auth = authorization
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        format!(
            "SUBSCRIBE sip:{ext}@{engine} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {me};branch=z9hG4bK-auth{n}-{};rport\r\nMax-Forwards: 70\r\n\
             From: <sip:{user}@127.0.0.1>;tag=t{n}\r\nTo: <sip:{ext}@127.0.0.1>\r\n\
             Call-ID: auth-{n}-{}@127.0.0.1\r\nCSeq: {n} SUBSCRIBE\r\nContact: <sip:{user}@{me}>\r\n\
             {auth}Event: presence\r\nAccept: application/pidf+xml\r\nExpires: 600\r\n\
             Content-Length: 0\r\n\r\n",
            me.port(),
            me.port(),
        )
    }

    /// Sends `request` and returns the final response to it (NOTIFYs meanwhile answered 200),
    /// resending it every 500 ms for up to 5 s.
    fn exchange(&self, request: &str) -> String {
        let cseq = Message::parse(request.as_bytes())
            .and_then(|m| m.cseq())
            .map(|(n, m)| (n, m.to_string()))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut resend = Instant::now();
        let mut buf = [0u8; 65_535];
        while Instant::now() < deadline {
            if Instant::now() >= resend {
                self.socket
                    .send_to(request.as_bytes(), self.engine)
                    .unwrap();
                resend = Instant::now() + Duration::from_millis(500);
            }
            let Ok((n, from)) = self.socket.recv_from(&mut buf) else {
                continue;
            };
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let Some(msg) = Message::parse(text.as_bytes()) else {
                continue;
            };
            if msg.start.starts_with("NOTIFY") {
                self.socket.send_to(msg.ok().as_bytes(), from).unwrap();
                continue;
            }
            let ours = msg.cseq().map(|(n, m)| (n, m.to_string())) == Some(cseq.clone());
            if ours && msg.status().is_some_and(|c| c >= 200) {
                return text;
            }
        }
        panic!("no final answer to:\n{request}");
    }

    /// Answers NOTIFYs for `time` (bounded), so a subscription made is not failed.
    fn answer_notifies_for(&self, time: Duration) {
        let deadline = Instant::now() + time;
        let mut buf = [0u8; 65_535];
        while Instant::now() < deadline {
            if let Ok((n, from)) = self.socket.recv_from(&mut buf) {
                if let Some(msg) = Message::parse(&buf[..n]) {
                    if msg.start.starts_with("NOTIFY") {
                        self.socket.send_to(msg.ok().as_bytes(), from).unwrap();
                    }
                }
            }
        }
    }
}

/// Runs one sipp scenario that answers challenges with `[authentication]`. sipp 3.6.1 puts
/// `sip:<remote_ip>:<remote_port>` in the answer's `uri` unless told otherwise, and the engine
/// wants the `uri` to name the request's target (RFC 7616 §3.4): `-auth_uri` gives sipp the
/// Request-URI its requests use, `sip:TARGET@127.0.0.1:<port>` (sipp adds the `sip:`).
fn sipp_answering(
    engine: &Engine,
    scenario: &str,
    fill: &[(&str, &str)],
    keys: &[(&str, &str)],
    target: &str,
) -> std::process::Output {
    let uri = format!("{target}@127.0.0.1:{}", engine.port);
    engine
        .target()
        .call_with(scenario, fill, keys, "u1", &["-auth_uri", &uri])
}

/// Stops the engine with SIGTERM and reads its log until it closes its stderr (bounded), so
/// every line, the shutdown summaries included, is in `engine.lines`. The child is not reaped
/// here, so Drop's kill cannot reach another process with a reused PID.
fn stop_and_read_log(engine: &mut Engine) {
    let _ = Command::new("kill")
        .args(["-TERM", &engine.child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match engine.log.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => engine.lines.push(line),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
}

/// The shutdown summary line of the authentication counters.
fn auth_summary(engine: &Engine) -> String {
    engine
        .lines
        .iter()
        .find(|l| l.contains("stopped; SIP authentication"))
        .cloned()
        .unwrap_or_else(|| panic!("no auth summary; log:\n{}", engine.lines.join("\n")))
}

/// The status code of a response's text.
fn code(response: &str) -> u16 {
    Message::parse(response.as_bytes())
        .and_then(|m| m.status())
        .unwrap_or(0)
}

#[test]
fn a_sipp_phone_answers_the_challenge_and_sets_its_status() {
    let mut engine =
        Engine::start_with_accounts("digest_algorithms = [\"MD5\"]\n", &["1201"], "info");
    let secret = secret_of("1201");
    let out = sipp_answering(
        &engine,
        "auth_caller.xml",
        &[
            ("USER", "1201"),
            ("SECRET", &secret),
            ("CHOICE", "3"),
            ("CONFIRM", "1"),
        ],
        &caller("1201", "*46", "0", "PCMU"),
        "*46",
    );
    assert!(
        out.status.success(),
        "401, then 200 to the answer, then BYE"
    );
    let finished = engine.wait_for_log("call finished", Duration::from_secs(10));
    assert!(finished.contains("saved"), "{finished}");
    let status = engine.status("1201");
    assert_eq!(status["status"], "away");
    assert_eq!(status["source"], "feature_code");
}

#[test]
fn a_wrong_password_gets_401_then_403() {
    let engine = Engine::start_with_accounts("digest_algorithms = [\"MD5\"]\n", &["1202"], "info");
    let out = sipp_answering(
        &engine,
        "auth_caller_refused.xml",
        &[
            ("USER", "1202"),
            ("SECRET", "not-the-secret"),
            ("EXPECTED", "403"),
        ],
        &caller("1202", "*46", "0", "PCMU"),
        "*46",
    );
    assert!(out.status.success(), "401, then 403 to the wrong answer");
    assert_eq!(engine.status("1202")["version"], 0);
}

#[test]
fn an_extension_dialing_as_another_gets_403_after_authenticating() {
    let engine =
        Engine::start_with_accounts("digest_algorithms = [\"MD5\"]\n", &["1203", "1204"], "info");
    // Authenticated as 1203 with 1203's secret, but the From names 1204.
    let secret = secret_of("1203");
    let out = sipp_answering(
        &engine,
        "auth_caller_refused.xml",
        &[("USER", "1203"), ("SECRET", &secret), ("EXPECTED", "403")],
        &caller("1204", "*46", "0", "PCMU"),
        "*46",
    );
    assert!(
        out.status.success(),
        "401, then 403: 1203 may act only as itself"
    );
    assert_eq!(engine.status("1204")["version"], 0);
}

/// The refresh of an authenticated subscription meets an expired nonce: 401 with stale=true,
/// the refresh that answers the new challenge is accepted, and the watcher goes on hearing.
#[test]
fn a_sipp_watcher_authenticates_and_refreshes_through_a_stale_nonce() {
    let engine = Engine::start_with_accounts(
        "digest_algorithms = [\"MD5\"]\nnonce_lifetime = \"10s\"\n",
        &["1205"],
        "info",
    );
    let db = engine.db();
    // After the stale refresh (11 s) the watched extension changes to Do Not Disturb.
    let setter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(13));
        Command::new(env!("CARGO_BIN_EXE_starcode"))
            .args(["status", "--db"])
            .arg(db)
            .args(["set", "1206", "dnd"])
            .output()
            .unwrap()
    });
    let secret = secret_of("1205");
    let out = sipp_answering(
        &engine,
        "auth_watcher.xml",
        &[("USER", "1205"), ("SECRET", &secret), ("WAIT", "11000")],
        &[("ext", "1206")],
        "1206",
    );
    let set = setter.join().unwrap();
    assert!(set.status.success());
    assert!(
        out.status.success(),
        "401, 200, open; stale 401, 200, active; busy; unsubscribed"
    );
}

/// An Authorization taken from a successful SUBSCRIBE and sent again in a new request (same
/// nonce, nonce-count and response) is refused. The engine logs at trace level meanwhile, and
/// no line of its log holds a secret, an HA1, the portal password or its hash, or a
/// `response=` value sent.
#[test]
fn a_replayed_authorization_is_refused_and_no_secret_is_logged() {
    let mut engine = Engine::start_with_accounts("", &["1207"], "trace");
    let mut phone = RawPhone::new(&engine, "1207");
    let secret = secret_of("1207");

    let first = phone.subscribe_text("1208", None);
    let challenged = phone.exchange(&first);
    assert_eq!(code(&challenged), 401, "{challenged}");
    let msg = Message::parse(challenged.as_bytes()).unwrap();
    let challenges = Challenge::all(&msg);
    let offered: Vec<_> = challenges.iter().map(|c| c.algorithm).collect();
    assert_eq!(
        offered,
        [DigestAlgorithm::Sha256, DigestAlgorithm::Md5],
        "one challenge per algorithm, SHA-256 first: {challenged}"
    );
    let uri = format!("sip:1208@127.0.0.1:{}", engine.port);
    let mut responses = Vec::new();
    let (authorization, response) =
        challenges[0].answer("1207", &secret, "SUBSCRIBE", &uri, 1, CNONCE);
    responses.push(response);
    let request = phone.subscribe_text("1208", Some(&authorization));
    let accepted = phone.exchange(&request);
    assert_eq!(code(&accepted), 200, "{accepted}");

    // The same Authorization in a new SUBSCRIBE: refused (the nonce is still fresh, so not
    // as stale either).
    let replay = phone.subscribe_text("1208", Some(&authorization));
    let refused = phone.exchange(&replay);
    assert_eq!(
        code(&refused),
        403,
        "a replayed Authorization must be refused: {refused}"
    );
    // An MD5 answer to the MD5 challenge of a fresh 401 is accepted too.
    let request = phone.subscribe_text("1208", None);
    let fresh = phone.exchange(&request);
    let md5 = Challenge::offered(
        &Message::parse(fresh.as_bytes()).unwrap(),
        DigestAlgorithm::Md5,
    )
    .expect("an MD5 challenge");
    let (authorization, response) = md5.answer("1207", &secret, "SUBSCRIBE", &uri, 1, CNONCE);
    responses.push(response);
    let request = phone.subscribe_text("1208", Some(&authorization));
    let again = phone.exchange(&request);
    assert_eq!(code(&again), 200, "{again}");
    phone.answer_notifies_for(Duration::from_millis(500));
    engine.wait_for_log("subscription created", Duration::from_secs(5));

    stop_and_read_log(&mut engine);
    let portal_hash: String = rusqlite::Connection::open(engine.db())
        .unwrap()
        .query_row(
            "SELECT portal_password FROM accounts WHERE extension = '1207'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    let mut forbidden = vec![
        ("the SIP secret", secret.clone()),
        ("the portal password", "portal-1207".to_string()),
        ("the portal password hash", portal_hash),
    ];
    for alg in DigestAlgorithm::ALL {
        forbidden.push((
            "an HA1",
            starcode::accounts::ha1(alg, "1207", "starcode", &secret),
        ));
    }
    for response in responses {
        forbidden.push(("a response= value", response));
    }
    let summary = auth_summary(&engine);
    assert!(
        summary.contains("\"replayed\":1") && summary.contains("\"successes\":2"),
        "the replay is counted: {summary}"
    );
    assert!(
        engine.lines.len() > 20,
        "a trace log: {}",
        engine.lines.len()
    );
    for line in &engine.lines {
        for (what, value) in &forbidden {
            assert!(
                !line.contains(value.as_str()),
                "{what} is in a log line: {line}"
            );
        }
    }
}

/// After `failures_per_source` wrong answers the source gets 403 at once, even with the right
/// secret, and the engine logs the source.
#[test]
fn repeated_wrong_passwords_lock_the_source_out() {
    let mut engine = Engine::start_with_accounts(
        "[limits.auth]\nfailures_per_source = 3\nlockout = \"30s\"\n",
        &["1209"],
        "info",
    );
    let mut phone = RawPhone::new(&engine, "1209");
    let uri = format!("sip:1210@127.0.0.1:{}", engine.port);
    for attempt in 1..=3 {
        let request = phone.subscribe_text("1210", None);
        let challenged = phone.exchange(&request);
        assert_eq!(code(&challenged), 401, "attempt {attempt}: {challenged}");
        let challenge = Challenge::all(&Message::parse(challenged.as_bytes()).unwrap())
            .into_iter()
            .next()
            .expect("a challenge");
        let (wrong, _) = challenge.answer("1209", "guessed-wrong", "SUBSCRIBE", &uri, 1, CNONCE);
        let request = phone.subscribe_text("1210", Some(&wrong));
        let refused = phone.exchange(&request);
        assert!(
            matches!(code(&refused), 401 | 403),
            "attempt {attempt}: {refused}"
        );
    }
    // Locked out: no challenge any more, and the right secret does not help.
    let request = phone.subscribe_text("1210", None);
    let locked = phone.exchange(&request);
    assert_eq!(code(&locked), 403, "{locked}");
    assert!(!locked.contains("WWW-Authenticate"), "{locked}");
    let logged = engine.wait_for_log("locked out", Duration::from_secs(2));
    assert!(logged.contains("127.0.0.1"), "{logged}");
    assert_eq!(engine.watchers("1210"), None);
    stop_and_read_log(&mut engine);
    let summary = auth_summary(&engine);
    assert!(
        summary.contains("\"wrong_response\":3")
            && summary.contains("\"lockouts\":1")
            && summary.contains("\"locked_out\":1"),
        "failures and the lockout are counted: {summary}"
    );
}

/// baresip with `auth_user`/`auth_pass` dials `*46` (keys as RFC 4733 events, pressed through
/// its cons module), sets Away, and watches another extension through the 401, seeing its
/// next change.
#[test]
fn a_baresip_phone_with_credentials_sets_its_status_and_watches_another() {
    let Some(modules) = require_baresip() else {
        return;
    };
    let mut engine =
        Engine::start_with_accounts("digest_algorithms = [\"MD5\"]\n", &["1211", "1212"], "info");
    let secret = secret_of("1211");
    let engine_port = engine.port.to_string();
    let cons_port = free_port();
    let cons = cons_port.to_string();
    let dial = format!("/dial sip:*46@127.0.0.1:{}", engine.port);
    let mut baresip = Baresip::launch(
        "tests/e2e/baresip_auth",
        &[
            ("MODULE_PATH", modules.to_str().unwrap()),
            ("USER", "1211"),
            ("SECRET", &secret),
            ("EXT", "1212"),
            ("ENGINE_PORT", &engine_port),
            ("CONS_PORT", &cons),
        ],
        &["-e", &dial],
    );
    // The watcher: baresip answered the 401 to its SUBSCRIBE and heard the first NOTIFY.
    let subscribed = engine.wait_for_log("subscription created", Duration::from_secs(10));
    assert!(subscribed.contains("1212"), "{subscribed}");
    // The call: answered after the 401, then the keys, pressed once the menu plays.
    engine.wait_for_log("menu(attempt=1)", Duration::from_secs(10));
    let keys = UdpSocket::bind("127.0.0.1:0").unwrap();
    keys.send_to(b"3", ("127.0.0.1", cons_port)).unwrap();
    engine.wait_for_log("confirm(", Duration::from_secs(5));
    keys.send_to(b"1", ("127.0.0.1", cons_port)).unwrap();
    let finished = engine.wait_for_log("call finished", Duration::from_secs(10));
    assert!(finished.contains("saved"), "{finished}");
    assert_eq!(engine.status("1211")["status"], "away");
    // The watched extension's next change reaches baresip.
    engine.cli(&["set", "1212", "dnd"]);
    let contact = format!("sip:1212@127.0.0.1:{}", engine.port);
    assert_eq!(baresip.wait_for_change(&contact, 1).1, "Busy");
}

/// linphonec with an `[auth_info_0]` for its extension and no proxy (it never registers), as
/// README "Pointing phones at starcode" shows, dials `*46` (digits typed during the call go out
/// as RFC 4733 events), sets Do Not Disturb, and watches another extension through the 401 (it
/// picks the SHA-256 challenge), seeing its next change.
#[test]
fn a_linphone_phone_with_credentials_sets_its_status_and_watches_another() {
    if !require_linphonec() {
        return;
    }
    let mut engine = Engine::start_with_accounts("", &["1213", "1214"], "info");
    let secret = secret_of("1213");
    let mut linphone = Linphone::launch(
        "1213",
        &format!(
            "\n[auth_info_0]\nusername=1213\nuserid=1213\npasswd={secret}\nrealm=starcode\n\
             [sound]\nuse_files=1\n"
        ),
    );
    linphone.send(&format!(
        "friend add \"Extension 1214\" sip:1214@127.0.0.1:{}",
        engine.port
    ));
    let contact = format!("sip:1214@127.0.0.1:{}", engine.port);
    assert_eq!(linphone.wait_for_report(&contact, 1), "Online");
    linphone.send(&format!("call sip:*46@127.0.0.1:{}", engine.port));
    engine.wait_for_log("menu(attempt=1)", Duration::from_secs(10));
    linphone.send("5");
    engine.wait_for_log("confirm(", Duration::from_secs(5));
    linphone.send("1");
    let finished = engine.wait_for_log("call finished", Duration::from_secs(10));
    assert!(finished.contains("saved"), "{finished}");
    assert_eq!(engine.status("1213")["status"], "dnd");
    engine.cli(&["set", "1214", "away"]);
    assert_eq!(linphone.wait_for_report(&contact, 2), "Away");
}

/// Granted 5 s, a watcher refreshes every few seconds; with 10 s nonces a refresh soon meets a
/// stale nonce. The engine logs the stale challenge (`starcode::sip::auth` at debug level), and
/// the watcher still hears the next change: the stale refresh was re-challenged and accepted
/// (baresip answers inside the dialog; linphone subscribes again, see README).
const SHORT_EXPIRY_STALE_NONCES: &str =
    "nonce_lifetime = \"10s\"\n[presence]\nmin_expires = 1\nmax_expires = 5\n";
const AUTH_DEBUG: &str = "info,starcode::sip::auth=debug";

#[test]
fn a_baresip_watcher_refreshes_through_a_stale_nonce() {
    let Some(modules) = require_baresip() else {
        return;
    };
    let mut engine = Engine::start_with_accounts(
        &format!("digest_algorithms = [\"MD5\"]\n{SHORT_EXPIRY_STALE_NONCES}"),
        &["1215"],
        AUTH_DEBUG,
    );
    let secret = secret_of("1215");
    let engine_port = engine.port.to_string();
    let cons = free_port().to_string();
    let mut baresip = Baresip::launch(
        "tests/e2e/baresip_auth",
        &[
            ("MODULE_PATH", modules.to_str().unwrap()),
            ("USER", "1215"),
            ("SECRET", &secret),
            ("EXT", "1216"),
            ("ENGINE_PORT", &engine_port),
            ("CONS_PORT", &cons),
        ],
        &[],
    );
    engine.wait_for_log("subscription created", Duration::from_secs(10));
    baresip.wait_for_notify_answered(1);
    engine.wait_for_log("challenged with stale=true", Duration::from_secs(20));
    engine.cli(&["set", "1216", "dnd"]);
    let contact = format!("sip:1216@127.0.0.1:{}", engine.port);
    assert_eq!(baresip.wait_for_change(&contact, 1).1, "Busy");
    assert_eq!(engine.watchers("1216"), Some(serde_json::json!(1)));
}

#[test]
fn a_linphone_watcher_refreshes_through_a_stale_nonce() {
    if !require_linphonec() {
        return;
    }
    let mut engine = Engine::start_with_accounts(SHORT_EXPIRY_STALE_NONCES, &["1217"], AUTH_DEBUG);
    let secret = secret_of("1217");
    let mut linphone = Linphone::launch(
        "1217",
        &format!("\n[auth_info_0]\nusername=1217\nuserid=1217\npasswd={secret}\nrealm=starcode\n"),
    );
    linphone.send(&format!(
        "friend add \"Extension 1218\" sip:1218@127.0.0.1:{}",
        engine.port
    ));
    let contact = format!("sip:1218@127.0.0.1:{}", engine.port);
    assert_eq!(linphone.wait_for_report(&contact, 1), "Online");
    engine.wait_for_log("challenged with stale=true", Duration::from_secs(20));
    // belle-sip drops the dialog on the 401 to its refresh and subscribes again, with a new
    // Call-ID, answering a fresh challenge (its first try resends the old, stale answer).
    engine.wait_for_logs(
        &["subscription created", "\"watcher\":\"1217\""],
        2,
        Duration::from_secs(10),
    );
    engine.cli(&["set", "1218", "away"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 2;
    loop {
        if linphone.wait_for_report(&contact, n) == "Away" {
            break;
        }
        assert!(Instant::now() < deadline, "linphone never showed Away");
        n += 1;
    }
}

/// Linphone sends each key as RFC 4733 and as SIP INFO. With 10 s nonces (the least allowed), a key pressed once the
/// call's nonce is stale goes out as an RFC 4733 event at once and as an INFO that meets
/// `stale=true` and comes back authenticated about a second later. It is still one press: a
/// '1' in the menu must not also confirm the choice it made.
#[test]
fn a_linphone_key_sent_again_after_a_stale_challenge_counts_once() {
    if !require_linphonec() {
        return;
    }
    let mut engine = Engine::start_with_accounts(
        "nonce_lifetime = \"10s\"\n",
        &["1219"],
        "info,starcode::sip=debug",
    );
    let secret = secret_of("1219");
    // `use_info=1`: keys go out as SIP INFO too (linphonerc's [sip] section, read twice).
    let mut linphone = Linphone::launch(
        "1219",
        &format!(
            "\n[sip]\nuse_info=1\nuse_rfc2833=1\n\
             [auth_info_0]\nusername=1219\nuserid=1219\npasswd={secret}\nrealm=starcode\n\
             [sound]\nuse_files=1\n"
        ),
    );
    linphone.send(&format!("call sip:*46@127.0.0.1:{}", engine.port));
    engine.wait_for_log("menu(attempt=1)", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(10_500));
    linphone.send("1");
    engine.wait_for_log("confirm(", Duration::from_secs(5));
    engine.wait_for_log("dated from its first attempt", Duration::from_secs(5));
    // Whatever the INFO's retry did, nothing was confirmed by it.
    std::thread::sleep(Duration::from_millis(1500));
    assert_ne!(
        engine.status("1219")["status"],
        "unavailable",
        "the INFO's retry confirmed the choice"
    );
    linphone.send("1");
    let finished = engine.wait_for_log("call finished", Duration::from_secs(10));
    assert!(finished.contains("saved"), "{finished}");
    assert_eq!(engine.status("1219")["status"], "unavailable");
}
