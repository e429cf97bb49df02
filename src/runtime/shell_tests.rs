//! The shell as a whole on virtual time (`tokio::time::pause`, mini-redis style): the real
//! `Engine` with its tasks, a temporary SQLite store and the real call tasks, with watchers
//! and callers on in-memory connections served by the same code as TCP ones. Time jumps to
//! the next timer whenever everything waits, so seconds of SIP timers take milliseconds, and
//! "at what time" is asserted on the virtual clock, never the wall clock.

use std::path::Path;
use std::sync::OnceLock;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::presence::sqlite::SqliteStore;
use tokio::time::Instant as VirtualInstant;

use super::*;
use crate::config::HumanDuration;
use crate::media::Codec;
use crate::presence::StatusKind;
use crate::sip::framing::StreamFramer;
use crate::sip::ua::ConnId;

/// Our SIP address as the in-memory peers see it.
const LOCAL: &str = "127.0.0.1:5060";

/// The longest any single step of a test may wait, in virtual time.
const STEP: Duration = Duration::from_secs(60);

fn catalog() -> Arc<PromptCatalog> {
    static CATALOG: OnceLock<Arc<PromptCatalog>> = OnceLock::new();
    CATALOG
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
            Arc::new(PromptCatalog::load(&dir, "en", &[Codec::Pcmu], 20).unwrap())
        })
        .clone()
}

/// A running engine on virtual time.
struct Shell {
    inbound: mpsc::Sender<Inbound>,
    store: Arc<SqliteStore>,
    /// The engine's metrics; its store calls are timed into them as in `run`.
    metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    engine: JoinHandle<anyhow::Result<()>>,
    next_conn: ConnId,
    _dir: tempfile::TempDir,
}

impl Shell {
    async fn start(tweak: impl FnOnce(&mut Config)) -> Shell {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.media.codecs = vec![Codec::Pcmu];
        config.store.path = dir.path().join("presence.db");
        tweak(&mut config);
        let store = Arc::new(SqliteStore::open(&config.store.path).unwrap());
        let (inbound_tx, inbound) = mpsc::channel::<Inbound>(4096);
        let mut outbound = Outbound::new(inbound_tx.clone());
        let udp = Arc::new(transport::bind_udp("127.0.0.1:0".parse().unwrap()).unwrap());
        outbound.add_udp(udp);
        let mut ua = UserAgent::new(ua_settings(&config), 7).unwrap();
        // As `run` does: who must authenticate is config (by default, no in-memory peer).
        ua.set_auth(
            crate::sip::auth::AuthSettings::from_config(&config),
            [7; 32],
            now(),
        );
        let changes = store.subscribe();
        let metrics = Arc::new(Metrics::new());
        let timed = Arc::new(TimedStore::new(store.clone(), metrics.clone()));
        let engine = Engine::new(config, catalog(), timed, ua, outbound, metrics.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let engine = tokio::spawn(engine.serve(inbound, changes, async move {
            let _ = stopped.await;
            Ok(())
        }));
        Shell {
            inbound: inbound_tx,
            store,
            metrics,
            stop: Some(stop),
            engine,
            next_conn: 1,
            _dir: dir,
        }
    }

    /// A new connection to the engine, served like an accepted TCP connection; `capacity`
    /// is how many bytes the pipe holds before the engine's writes wait for the peer.
    fn connect(&mut self, capacity: usize) -> Line {
        let conn = self.next_conn;
        self.next_conn += 1;
        let (ours, theirs) = tokio::io::duplex(capacity);
        let (reader, writer) = tokio::io::split(theirs);
        let addr: SocketAddr = format!("127.0.0.{}:{}", 2 + conn / 60_000, 1024 + conn % 60_000)
            .parse()
            .unwrap();
        tokio::spawn(transport::serve_connection(
            conn,
            reader,
            writer,
            addr,
            LOCAL.parse().unwrap(),
            self.inbound.clone(),
            transport::Origin::Accepted(None),
        ));
        let (reader, writer) = tokio::io::split(ours);
        Line {
            reader,
            writer,
            framer: StreamFramer::new(),
            addr,
            branch: 0,
        }
    }

    /// Writes a status as another writer (the CLI) would; the engine hears it from the store.
    async fn set(&self, extension: &str, status: StatusKind) -> u64 {
        let store = self.store.clone();
        let update = StatusUpdate {
            extension: extension.into(),
            status,
            custom_text: None,
            source: ChangeSource::Cli,
            at: SystemTime::now(),
            actor: None,
            expected_version: None,
        };
        tokio::task::spawn_blocking(move || store.set(&update))
            .await
            .unwrap()
            .unwrap()
            .current
            .version
    }

    /// How many subscriptions the store holds now.
    async fn stored_now(&self) -> usize {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.load_subscriptions().unwrap().len())
            .await
            .unwrap()
    }

    /// Stored subscriptions, once the writer has caught up with `expected` (bounded wait; the
    /// count at the end of it otherwise).
    async fn stored_subscriptions(&self, expected: usize) -> usize {
        let mut count = 0;
        for _ in 0..100 {
            count = self.stored_now().await;
            if count == expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        count
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(STEP, &mut self.engine)
            .await
            .expect("the engine stops")
            .unwrap()
            .unwrap();
    }
}

/// A peer on an in-memory connection: writes SIP text, reads framed messages.
struct Line {
    reader: ReadHalf<DuplexStream>,
    writer: WriteHalf<DuplexStream>,
    framer: StreamFramer,
    addr: SocketAddr,
    branch: u64,
}

impl Line {
    async fn send(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).await.unwrap();
    }

    /// The next message, or `None` when the engine closed the connection or `within` passed.
    async fn next_within(&mut self, within: Duration) -> Option<String> {
        let deadline = VirtualInstant::now() + within;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            if let Some(message) = self.framer.next_message().unwrap() {
                return Some(String::from_utf8(message).unwrap());
            }
            let read = tokio::time::timeout_at(deadline, self.reader.read(&mut buf)).await;
            match read {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(n)) => self.framer.push(&buf[..n]),
            }
        }
    }

    async fn next(&mut self) -> String {
        self.next_within(STEP)
            .await
            .expect("a message from the engine")
    }

    /// The next message that is not a provisional response.
    async fn next_final(&mut self) -> String {
        loop {
            let message = self.next().await;
            if !message.starts_with("SIP/2.0 1") {
                return message;
            }
        }
    }

    fn branch(&mut self) -> String {
        self.branch += 1;
        format!("z9hG4bK{}x{}", self.addr.port(), self.branch)
    }

    /// SUBSCRIBEs to `extension` in a new dialog; returns the 200 and the first NOTIFY
    /// (answered).
    async fn subscribe(&mut self, extension: &str, call_id: &str) -> (String, String) {
        self.send_subscribe(extension, call_id).await;
        let ok = self.next().await;
        assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
        let notify = self.next().await;
        assert!(notify.starts_with("NOTIFY"), "{notify}");
        self.answer(&notify).await;
        (ok, notify)
    }

    /// Sends a SUBSCRIBE to `extension` in a new dialog.
    async fn send_subscribe(&mut self, extension: &str, call_id: &str) {
        let branch = self.branch();
        let addr = self.addr;
        self.send(&format!(
            "SUBSCRIBE sip:{extension}@{LOCAL} SIP/2.0\r\nVia: SIP/2.0/TCP {addr};branch={branch}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:2001@127.0.0.1>;tag=w{call_id}\r\nTo: <sip:{extension}@127.0.0.1>\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:2001@{addr};transport=tcp>\r\n\
             Event: presence\r\nAccept: application/pidf+xml\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n"
        ))
        .await;
    }

    /// 200 OK to a request of the engine's.
    async fn answer(&mut self, request: &str) {
        let mut out = String::from("SIP/2.0 200 OK\r\n");
        for line in request.lines().take_while(|l| !l.is_empty()) {
            if ["Via:", "From:", "To:", "Call-ID:", "CSeq:"]
                .iter()
                .any(|h| line.starts_with(h))
            {
                out.push_str(line);
                out.push_str("\r\n");
            }
        }
        out.push_str("Content-Length: 0\r\n\r\n");
        self.send(&out).await;
    }

    /// The next NOTIFY, answered; its body.
    async fn notified(&mut self) -> String {
        let notify = self.next().await;
        assert!(notify.starts_with("NOTIFY"), "{notify}");
        self.answer(&notify).await;
        notify
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
            .unwrap_or_default()
    }

    /// Calls `*46` as extension 1001 (PCMU, RTP to `rtp`).
    async fn invite(&mut self, call_id: &str, rtp: u16) -> String {
        let branch = self.branch();
        let addr = self.addr;
        let sdp = format!(
            "v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {rtp} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n"
        );
        self.send(&format!(
            "INVITE sip:*46@{LOCAL} SIP/2.0\r\nVia: SIP/2.0/TCP {addr};branch={branch}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:1001@127.0.0.1>;tag=c{call_id}\r\nTo: <sip:*46@127.0.0.1>\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:1001@{addr};transport=tcp>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        ))
        .await;
        branch
    }

    /// Presses `key` by SIP INFO (`application/dtmf-relay`) in the call `ok` answered.
    async fn info_key(&mut self, call_id: &str, ok: &str, cseq: u32, key: char) {
        let to = ok.lines().find(|l| l.starts_with("To:")).unwrap();
        let branch = self.branch();
        let addr = self.addr;
        let body = format!("Signal={key}\r\nDuration=160\r\n");
        self.send(&format!(
            "INFO sip:*46@{LOCAL} SIP/2.0\r\nVia: SIP/2.0/TCP {addr};branch={branch}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:1001@127.0.0.1>;tag=c{call_id}\r\n{to}\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} INFO\r\nContent-Type: application/dtmf-relay\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ))
        .await;
    }

    async fn ack(&mut self, call_id: &str, ok: &str) {
        let to = ok.lines().find(|l| l.starts_with("To:")).unwrap();
        let branch = self.branch();
        let addr = self.addr;
        self.send(&format!(
            "ACK sip:*46@{LOCAL} SIP/2.0\r\nVia: SIP/2.0/TCP {addr};branch={branch}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:1001@127.0.0.1>;tag=c{call_id}\r\n{to}\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        ))
        .await;
    }
}

/// A free UDP port on loopback for a caller's RTP (nobody sends from it).
fn rtp_sink() -> std::net::UdpSocket {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap()
}

#[tokio::test(start_paused = true)]
async fn answer_delay_rings_then_answers_at_the_right_virtual_time() {
    let mut shell =
        Shell::start(|c| c.sip.answer_delay = HumanDuration(Duration::from_secs(3))).await;
    let mut caller = shell.connect(64 * 1024);
    let sink = rtp_sink();
    let started = VirtualInstant::now();
    caller
        .invite("ad-1", sink.local_addr().unwrap().port())
        .await;
    let trying = caller.next().await;
    assert!(trying.starts_with("SIP/2.0 100"), "{trying}");
    let ringing = caller.next().await;
    assert!(ringing.starts_with("SIP/2.0 180"), "{ringing}");
    assert!(started.elapsed() < Duration::from_secs(1));
    let ok = caller.next().await;
    assert!(
        ok.starts_with("SIP/2.0 200") && ok.contains("m=audio"),
        "{ok}"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_millis(3100),
        "answered after {waited:?} of virtual time"
    );
    caller.ack("ad-1", &ok).await;
    shell.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_change_fans_out_to_every_watcher() {
    let mut shell = Shell::start(|_| {}).await;
    let mut watchers = Vec::new();
    for i in 0..40 {
        let mut line = shell.connect(64 * 1024);
        line.subscribe("1001", &format!("fan-{i}")).await;
        watchers.push(line);
    }
    for status in [
        StatusKind::Away,
        StatusKind::DoNotDisturb,
        StatusKind::Available,
    ] {
        shell.set("1001", status).await;
        for line in &mut watchers {
            let body = line.notified().await;
            let (word, not) = match status {
                StatusKind::Away => ("away", "busy"),
                StatusKind::DoNotDisturb => ("busy", "away"),
                _ => ("open", "busy"),
            };
            assert!(
                body.contains(word) && !body.contains(not),
                "{status:?}: {body}"
            );
        }
    }
    assert_eq!(shell.stored_subscriptions(40).await, 40);
    // Each change made elsewhere (the CLI) was timed from its stamp to its first NOTIFY.
    assert_eq!(
        sample(
            &shell.metrics.render(),
            "starcode_change_to_notify_seconds_count{source=\"cli\"}"
        ),
        3.0
    );
    shell.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_watcher_that_stops_reading_costs_only_its_own_notifies() {
    let mut shell = Shell::start(|c| c.presence.max_notify_failures = 1).await;
    // The stuck watcher: 100 subscriptions on one connection whose pipe holds 4 KiB, answered
    // while it still reads.
    let mut stuck = shell.connect(4 * 1024);
    for i in 0..100 {
        stuck.subscribe("1001", &format!("stuck-{i}")).await;
    }
    let mut good = Vec::new();
    for i in 0..20 {
        let mut line = shell.connect(64 * 1024);
        line.subscribe("1001", &format!("good-{i}")).await;
        good.push(line);
    }
    assert_eq!(shell.stored_subscriptions(120).await, 120);
    // It stops reading. Each change now sends it 100 NOTIFYs (100 KiB): the pipe fills, then
    // its queue; the rest fail at once and, with max_notify_failures = 1, are dropped.
    let started = VirtualInstant::now();
    for status in [StatusKind::Away, StatusKind::Chat, StatusKind::DoNotDisturb] {
        shell.set("1001", status).await;
        for line in &mut good {
            line.notified().await;
        }
    }
    assert!(
        started.elapsed() < crate::runtime::transport::TCP_WRITE_STALL,
        "the other watchers did not wait for the stuck one: {:?}",
        started.elapsed()
    );
    // The NOTIFYs that found its queue full failed at once and, with one failure allowed, took
    // their subscriptions with them; those in its pipe and queue are still in flight.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let left = shell.stored_now().await;
    assert!(left > 20 && left < 120, "{left} subscriptions stored");
    // A call goes on too.
    let mut caller = shell.connect(64 * 1024);
    let sink = rtp_sink();
    caller
        .invite("hol-call", sink.local_addr().unwrap().port())
        .await;
    let ok = caller.next_final().await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    caller.ack("hol-call", &ok).await;
    // The stuck connection is closed after the stall bound; its NOTIFYs still in flight time
    // out (Timer F, 64*T1) and their subscriptions go: only the good watchers remain.
    tokio::time::sleep(Duration::from_secs(40)).await;
    shell.set("1001", StatusKind::Available).await;
    for line in &mut good {
        line.notified().await;
    }
    assert_eq!(shell.stored_subscriptions(20).await, 20);
    let mut drained = 0;
    while stuck.next_within(STEP).await.is_some() {
        drained += 1;
        assert!(drained < 1000, "bounded");
    }
    shell.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_caller_who_sends_no_rtp_is_hung_up_after_the_rtp_timeout() {
    let mut shell =
        Shell::start(|c| c.media.rtp_timeout = HumanDuration(Duration::from_secs(4))).await;
    let mut caller = shell.connect(64 * 1024);
    let sink = rtp_sink();
    caller
        .invite("quiet-1", sink.local_addr().unwrap().port())
        .await;
    let ok = caller.next_final().await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let answered = VirtualInstant::now();
    caller.ack("quiet-1", &ok).await;
    let bye = caller.next().await;
    assert!(bye.starts_with("BYE"), "{bye}");
    let silent = answered.elapsed();
    assert!(
        silent >= Duration::from_secs(4) && silent < Duration::from_secs(5),
        "BYE after {silent:?} of virtual silence"
    );
    caller.answer(&bye).await;
    shell.stop().await;
}

/// The value of the sample `series` (name and labels exactly as rendered) in `text`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_call_and_its_notify_move_the_metrics() {
    let mut shell = Shell::start(|_| {}).await;
    let mut watcher = shell.connect(64 * 1024);
    watcher.subscribe("1001", "metrics-w").await;
    let mut caller = shell.connect(64 * 1024);
    let sink = rtp_sink();
    caller
        .invite("metrics-call", sink.local_addr().unwrap().port())
        .await;
    let ok = caller.next_final().await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    caller.ack("metrics-call", &ok).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = shell.metrics.render();
    assert_eq!(sample(&during, "starcode_calls_active"), 1.0);
    // Away (3), then confirm (1), by SIP INFO.
    for (cseq, key) in [(2, '3'), (3, '1')] {
        caller.info_key("metrics-call", &ok, cseq, key).await;
        let answer = caller.next_final().await;
        assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let body = watcher.notified().await;
    assert!(body.contains("away"), "{body}");
    let bye = caller.next().await;
    assert!(bye.starts_with("BYE"), "{bye}");
    caller.answer(&bye).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let text = shell.metrics.render();
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert_eq!(
        sample(&text, "starcode_calls_total{outcome=\"saved\"}"),
        1.0
    );
    assert_eq!(sample(&text, "starcode_calls_active"), 0.0);
    assert_eq!(
        sample(&text, "starcode_keys_total{source=\"sip_info\"}"),
        2.0
    );
    assert_eq!(
        sample(&text, "starcode_keys_total{source=\"rfc4733\"}"),
        0.0
    );
    assert_eq!(
        sample(
            &text,
            "starcode_status_changes_total{source=\"feature_code\"}"
        ),
        1.0
    );
    // The change was timed to its first NOTIFY under its writer.
    assert_eq!(
        sample(
            &text,
            "starcode_change_to_notify_seconds_count{source=\"feature_code\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "starcode_change_to_notify_seconds_count{source=\"publish\"}"
        ),
        0.0
    );
    // The first NOTIFY of the subscription and the one of the change, both answered.
    assert_eq!(sample(&text, "starcode_notifies_sent_total"), 2.0);
    assert_eq!(sample(&text, "starcode_notifies_delivered_total"), 2.0);
    assert_eq!(
        sample(
            &text,
            "starcode_notifies_failed_total{reason=\"no_answer\"}"
        ),
        0.0
    );
    assert_eq!(sample(&text, "starcode_subscriptions"), 1.0);
    // The caller's status read and the commit went through the timed store.
    assert_eq!(
        sample(&text, "starcode_store_latency_seconds_count{op=\"set\"}"),
        1.0
    );
    assert!(sample(&text, "starcode_store_latency_seconds_count{op=\"get\"}") >= 1.0);
    assert!(
        sample(
            &text,
            "starcode_store_latency_seconds_count{op=\"write_subscriptions\"}"
        ) >= 1.0
    );
    // Prompts were sent: every packet's lateness is recorded (on virtual time, none late).
    let packets = sample(&text, "starcode_rtp_send_lateness_seconds_count");
    assert!(packets > 50.0, "{packets} packets");
    assert_eq!(
        sample(
            &text,
            "starcode_rtp_send_lateness_seconds_bucket{le=\"0.04\"}"
        ),
        packets
    );
    assert_eq!(
        sample(&text, "starcode_sip_auth_challenges_total{stale=\"false\"}"),
        0.0
    );
    shell.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_digest_challenge_shows_in_the_metrics() {
    let mut shell = Shell::start(|c| c.sip.auth = crate::config::AuthMode::Always).await;
    let mut watcher = shell.connect(64 * 1024);
    watcher.send_subscribe("1001", "metrics-auth").await;
    let challenge = watcher.next().await;
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
    tokio::time::sleep(Duration::from_millis(10)).await;
    let text = shell.metrics.render();
    assert_eq!(
        sample(&text, "starcode_sip_auth_challenges_total{stale=\"false\"}"),
        1.0
    );
    assert_eq!(sample(&text, "starcode_sip_auth_successes_total"), 0.0);
    assert_eq!(sample(&text, "starcode_subscriptions"), 0.0);
    shell.stop().await;
}
