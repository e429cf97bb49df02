//! How fast the presence server tells its watchers (issue 4). The release engine runs on
//! loopback with its SQLite store in a temp dir; N watchers (one UDP socket each) SUBSCRIBE to
//! one extension and answer every NOTIFY with 200 OK; a publisher changes the extension's status
//! with SIP PUBLISH (RFC 3903), which the engine commits durably before it fans out.
//!
//! Measured, never asserted (timing goals live in benchmarks, not tests):
//! - PUBLISH sent -> first NOTIFY received: an upper bound of "commit -> first NOTIFY" that
//!   includes the durable write (and the PUBLISH's own parsing);
//! - PUBLISH sent -> last of the N NOTIFYs received: the fan-out latency of one change;
//! - sustained NOTIFY/s: changes back to back (each PUBLISH sent when the previous one is
//!   answered), NOTIFYs the watchers actually received per second (the engine coalesces per
//!   watcher, so this is not changes x N), and whether every watcher ended on the last change.
//!
//! Receive times are taken by the watcher tasks in user space, so they also count the bench's
//! own scheduling on the same two cores: an upper bound of the time on the wire.
//!
//! Run: `benches/presence_fanout.sh [--target T] [N=1000] [CHANGES=100]`, or
//! `cargo bench --bench presence_fanout -- [--target T] N CHANGES [BURST]`. Under `cargo test`
//! it runs a small smoke round (10 watchers, debug engine) that checks only that every watcher
//! is told.
//!
//! `--target` picks the presence server: `starcode-sqlite` (the default, as above) or
//! `kamailio`, Kamailio's presence + presence_xml modules on SQLite, write-through
//! (`benches/kamailio/presence.cfg`, started by `benches/kamailio/run.sh`), measured by the same
//! watchers and publisher for a side-by-side figure. `starcode-postgres-1` and
//! `starcode-postgres-2` (one or two nodes on PostgreSQL, issue 12) are named but refused until
//! `starcode run` opens `store.url`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

#[path = "../tests/support/peer.rs"]
mod peer;
use peer::Message;
#[path = "../tests/support/bench_engine.rs"]
mod bench_engine;
use bench_engine::{cpu_of, load_average, Configured, Engine, Launch, Ready};

/// The watched extension.
const EXTENSION: &str = "4000";

/// The presence server under test (`--target`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The release engine with its SQLite store (the default).
    StarcodeSqlite,
    /// Kamailio's presence server on SQLite (`benches/kamailio/run.sh`).
    Kamailio,
}

impl Target {
    /// From `--target NAME` on the command line; starcode on SQLite without it.
    fn from_args() -> Result<Target, String> {
        let args: Vec<String> = std::env::args().collect();
        let name = args
            .iter()
            .position(|a| a == "--target")
            .map(|at| args.get(at + 1).map(String::as_str).unwrap_or_default());
        match name {
            None | Some("starcode-sqlite") => Ok(Target::StarcodeSqlite),
            Some("kamailio") => Ok(Target::Kamailio),
            // Hooks for issue 12: one node, and two nodes behind Kamailio's dispatcher
            // (tests/kamailio/dispatcher.cfg), on one PostgreSQL database.
            Some(t @ ("starcode-postgres-1" | "starcode-postgres-2")) => Err(format!(
                "--target {t}: needs `starcode run` with store.url (issue 12), not wired yet"
            )),
            Some(other) => Err(format!(
                "--target {other:?}: expected kamailio or starcode-sqlite"
            )),
        }
    }

    /// Starts the server under test; `binary` is starcode's.
    fn start(self, binary: &Path) -> Result<Engine, String> {
        match self {
            Target::StarcodeSqlite => start_engine(binary),
            Target::Kamailio => Engine::start_script(
                &Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/kamailio/run.sh"),
            ),
        }
    }
}

/// What one run does; from the command line under `cargo bench`, small under `cargo test`.
struct Settings {
    watchers: usize,
    rounds: usize,
    warmup: usize,
    pause: Duration,
    burst_changes: usize,
    burst_time: Duration,
    /// A smoke run checks delivery and exits non-zero when a watcher was not told.
    smoke: bool,
}

impl Settings {
    fn from_args() -> Settings {
        let Some(numbers) = bench_engine::bench_numbers() else {
            return Settings {
                watchers: 10,
                rounds: 3,
                warmup: 1,
                pause: Duration::from_millis(20),
                burst_changes: 10,
                burst_time: Duration::from_secs(10),
                smoke: true,
            };
        };
        Settings {
            watchers: numbers.first().copied().unwrap_or(1000).max(1),
            rounds: numbers.get(1).copied().unwrap_or(100).max(1),
            warmup: 3,
            pause: Duration::from_millis(50),
            burst_changes: numbers.get(2).copied().unwrap_or(200).max(2),
            burst_time: Duration::from_secs(20),
            smoke: false,
        }
    }
}

/// A status as the watchers see it in the PIDF (basic + RPID activity, default mapping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shown {
    Available,
    Away,
    DoNotDisturb,
    Unavailable,
    Other,
}

impl Shown {
    /// The PUBLISH body a phone would send for this status.
    fn pidf(self) -> String {
        let (basic, activity, note) = match self {
            Shown::Available | Shown::Other => ("open", "", "Available"),
            Shown::Away => ("open", "<rpid:away/>", "Away"),
            Shown::DoNotDisturb => ("open", "<rpid:busy/>", "Do Not Disturb"),
            Shown::Unavailable => ("closed", "", "Unavailable"),
        };
        let activities = if activity.is_empty() {
            String::new()
        } else {
            format!("<rpid:activities>{activity}</rpid:activities>")
        };
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
             <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" \
             xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" \
             xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" entity=\"sip:{EXTENSION}@127.0.0.1\">\r\n\
             <tuple id=\"t1\"><status><basic>{basic}</basic></status></tuple>\r\n\
             <dm:person id=\"p1\">{activities}<dm:note>{note}</dm:note></dm:person>\r\n\
             </presence>\r\n"
        )
    }

    /// Reads a NOTIFY body (see [`peer::shown`]).
    fn of_body(body: &str) -> Shown {
        match peer::shown(body) {
            "unavailable" => Shown::Unavailable,
            "available" => Shown::Available,
            "away" => Shown::Away,
            "dnd" => Shown::DoNotDisturb,
            _ => Shown::Other,
        }
    }
}

/// The statuses the timed rounds go through; each differs from the one before.
const CYCLE: [Shown; 4] = [
    Shown::Away,
    Shown::DoNotDisturb,
    Shown::Unavailable,
    Shown::Available,
];

/// What a watcher saw, sent to the coordinator.
#[derive(Debug)]
enum Seen {
    Subscribed,
    Refused(u16),
    Notify {
        watcher: usize,
        at: Instant,
        shown: Shown,
    },
    /// A NOTIFY with a CSeq not above the last one: a retransmission (answered, not counted).
    Repeat,
}

/// One watcher: SUBSCRIBEs (retransmitted while unanswered), then answers every NOTIFY.
async fn watcher(
    index: usize,
    socket: UdpSocket,
    engine: SocketAddr,
    run: u64,
    seen: mpsc::UnboundedSender<Seen>,
) {
    let Ok(local) = socket.local_addr() else {
        return;
    };
    let id = format!("fanout-{run:x}-{index}");
    let subscribe = peer::subscribe(local, engine, EXTENSION, 20_000 + index, &id);
    let mut buf = vec![0u8; 16 * 1024];
    let mut answered = false;
    let mut tries = 0;
    let mut resend_at = tokio::time::Instant::now();
    let mut last_cseq = 0u32;
    loop {
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let Ok((len, from)) = received else { continue };
                let at = Instant::now();
                let Some(msg) = buf.get(..len).and_then(Message::parse) else { continue };
                match (msg.status(), msg.cseq()) {
                    (Some(code), Some((1, "SUBSCRIBE"))) if code >= 200 && !answered => {
                        answered = true;
                        let _ = seen.send(if code < 300 { Seen::Subscribed } else { Seen::Refused(code) });
                    }
                    (None, Some((cseq, "NOTIFY"))) => {
                        let _ = socket.send_to(msg.ok().as_bytes(), from).await;
                        if cseq <= last_cseq {
                            let _ = seen.send(Seen::Repeat);
                            continue;
                        }
                        last_cseq = cseq;
                        let shown = Shown::of_body(msg.body);
                        let _ = seen.send(Seen::Notify { watcher: index, at, shown });
                    }
                    _ => {}
                }
            }
            _ = tokio::time::sleep_until(resend_at), if !answered && tries < 8 => {
                tries += 1;
                resend_at += Duration::from_millis(500);
                let _ = socket.send_to(subscribe.as_bytes(), engine).await;
            }
        }
    }
}

/// The phone whose status changes: PUBLISH, then refreshes by SIP-If-Match with its ETag.
struct Publisher {
    socket: UdpSocket,
    engine: SocketAddr,
    run: u64,
    cseq: u32,
    etag: Option<String>,
}

/// One answered PUBLISH.
struct Published {
    sent: Instant,
    answered: Instant,
}

impl Publisher {
    async fn publish(&mut self, shown: Shown) -> Result<Published, String> {
        self.cseq += 1;
        let local = self.socket.local_addr().map_err(|e| e.to_string())?;
        let (engine, run, cseq) = (self.engine, self.run, self.cseq);
        let body = shown.pidf();
        let if_match = self
            .etag
            .as_ref()
            .map(|e| format!("SIP-If-Match: {e}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "PUBLISH sip:{EXTENSION}@{engine} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-p{run:x}-{cseq};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{EXTENSION}@{local}>;tag=pub{run:x}\r\n\
             To: <sip:{EXTENSION}@{engine}>\r\n\
             Call-ID: publish-{run:x}@127.0.0.1\r\n\
             CSeq: {cseq} PUBLISH\r\n\
             Event: presence\r\n\
             Expires: 3600\r\n\
             {if_match}\
             Content-Type: application/pidf+xml\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let sent = Instant::now();
        let answer = peer::transact(&self.socket, engine, &request).await?;
        let answered = Instant::now();
        let msg = Message::parse(&answer).ok_or("an unreadable answer to PUBLISH")?;
        match msg.status() {
            Some(200..=299) => {
                self.etag = msg
                    .header("SIP-ETag", "SIP-ETag")
                    .map(str::to_string)
                    .or(self.etag.take());
                Ok(Published { sent, answered })
            }
            code => Err(format!("PUBLISH answered {}", code.unwrap_or(0))),
        }
    }
}

/// The engine under test, trusting every loopback peer, with expiries the watchers accept.
fn start_engine(binary: &Path) -> Result<Engine, String> {
    let configured = Configured::new(
        100,
        "trusted_peers = [\"127.0.0.0/8\"]\n[presence]\nmin_expires = 60\nmax_expires = 3600\n",
    )?;
    // RUST_LOG is the caller's: e.g. `info,starcode::runtime=debug` for a closer look.
    let launch = Launch {
        global_args: &[],
        rust_log: None,
        ready: Ready::Logged,
    };
    configured.start(binary, &launch)
}

impl Engine {
    /// Waits (bounded) until the engine has used no CPU for a while: earlier work is done.
    async fn quiesce(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut before = self.cpu();
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = self.cpu();
            if now.saturating_sub(before) <= Duration::from_millis(10) {
                return;
            }
            before = now;
        }
    }
}

/// Nearest-rank percentile of sorted durations, in milliseconds.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    sorted
        .get(index)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

/// The coordinator's view of every watcher.
struct Watchers {
    seen: mpsc::UnboundedReceiver<Seen>,
    count: usize,
    /// The last state each watcher was told, and when.
    latest: Vec<Option<(Shown, Instant)>>,
    notifies: u64,
    repeats: u64,
}

impl Watchers {
    /// The next event, or None at `deadline`.
    async fn next(&mut self, deadline: Instant) -> Option<Seen> {
        let seen = tokio::time::timeout_at(deadline.into(), self.seen.recv())
            .await
            .ok()
            .flatten()?;
        match &seen {
            Seen::Notify { watcher, at, shown } => {
                self.notifies += 1;
                if let Some(slot) = self.latest.get_mut(*watcher) {
                    *slot = Some((*shown, *at));
                }
            }
            Seen::Repeat => self.repeats += 1,
            Seen::Subscribed | Seen::Refused(_) => {}
        }
        Some(seen)
    }

    /// Takes in what already arrived.
    fn drain(&mut self) {
        while let Ok(seen) = self.seen.try_recv() {
            if let Seen::Notify { watcher, at, shown } = seen {
                self.notifies += 1;
                if let Some(slot) = self.latest.get_mut(watcher) {
                    *slot = Some((shown, at));
                }
            } else if let Seen::Repeat = seen {
                self.repeats += 1;
            }
        }
    }

    /// How many watchers were last told `shown`, and when the last of them was.
    fn on(&self, shown: Shown) -> (usize, Option<Instant>) {
        let told: Vec<Instant> = self
            .latest
            .iter()
            .flatten()
            .filter(|(s, _)| *s == shown)
            .map(|(_, at)| *at)
            .collect();
        (told.len(), told.iter().max().copied())
    }

    /// Waits until every watcher was last told `shown` (bounded by `deadline`).
    async fn until_all(&mut self, shown: Shown, deadline: Instant) -> (usize, Option<Instant>) {
        self.drain();
        while self.on(shown).0 < self.count {
            if self.next(deadline).await.is_none() {
                break;
            }
        }
        self.on(shown)
    }
}

/// One timed change: PUBLISH sent -> 200 OK, first NOTIFY, last NOTIFY.
struct Round {
    committed: Duration,
    first: Duration,
    last: Duration,
}

/// The results the table prints.
#[derive(Default)]
struct Report {
    subscribed: usize,
    subscribe_time: Duration,
    rounds: Vec<Round>,
    incomplete_rounds: usize,
    burst_changes: usize,
    burst_fired: Duration,
    burst_notifies: u64,
    burst_window: Duration,
    burst_final_told: usize,
    burst_settle: Duration,
    repeats: u64,
    engine_cpu_rounds: Duration,
    engine_cpu_burst: Duration,
    bench_cpu_burst: Duration,
}

async fn run(settings: &Settings, target: Target, engine: &Engine) -> Result<Report, String> {
    let n = settings.watchers;
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let run_id = (u64::from(std::process::id()) << 32) | u64::from(clock);
    let (tx, rx) = mpsc::unbounded_channel();
    let mut watchers = Watchers {
        seen: rx,
        count: n,
        latest: vec![None; n],
        notifies: 0,
        repeats: 0,
    };
    let mut report = Report::default();

    let mut publisher = Publisher {
        socket: UdpSocket::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?,
        engine: engine.sip,
        run: run_id,
        cseq: 0,
        etag: None,
    };
    // starcode shows a new extension as Available; Kamailio has no state for it until someone
    // publishes (its first NOTIFYs would carry no PIDF), so the publisher starts Available.
    if target == Target::Kamailio {
        publisher.publish(Shown::Available).await?;
    }

    // Subscribe in waves of 100 so the engine's socket buffer is not the thing measured.
    let start = Instant::now();
    let mut subscribed = 0;
    let mut refused = Vec::new();
    for wave in (0..n).step_by(100) {
        let end = (wave + 100).min(n);
        for index in wave..end {
            let socket = UdpSocket::bind("127.0.0.1:0")
                .await
                .map_err(|e| format!("watcher socket {index}: {e}"))?;
            tokio::spawn(watcher(index, socket, engine.sip, run_id, tx.clone()));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while subscribed + refused.len() < end {
            match watchers.next(deadline).await {
                Some(Seen::Subscribed) => subscribed += 1,
                Some(Seen::Refused(code)) => refused.push(code),
                Some(_) => {}
                None => break,
            }
        }
    }
    drop(tx);
    // Every watcher's first NOTIFY: the current state (Available for a new extension).
    let (told, _) = watchers
        .until_all(Shown::Available, Instant::now() + Duration::from_secs(30))
        .await;
    report.subscribed = subscribed;
    report.subscribe_time = start.elapsed();
    if !refused.is_empty() || told < n {
        return Err(format!(
            "{subscribed} of {n} subscribed ({} refused: {:?}), {told} told their first state",
            refused.len(),
            refused.iter().take(5).collect::<Vec<_>>()
        ));
    }
    engine.quiesce(Duration::from_secs(30)).await;

    // Timed rounds: one change at a time, every watcher told before the next.
    let cpu0 = engine.cpu();
    let mut current = Shown::Available;
    for round in 0..settings.warmup + settings.rounds {
        let shown = CYCLE[round % CYCLE.len()];
        watchers.drain();
        let published = publisher.publish(shown).await?;
        let (told, last) = watchers
            .until_all(shown, published.sent + Duration::from_secs(10))
            .await;
        current = shown;
        let first = watchers
            .latest
            .iter()
            .flatten()
            .filter(|(s, at)| *s == shown && *at >= published.sent)
            .map(|(_, at)| *at)
            .min();
        if round >= settings.warmup {
            match (told == n, first, last) {
                (true, Some(first), Some(last)) => report.rounds.push(Round {
                    committed: published.answered - published.sent,
                    first: first - published.sent,
                    last: last - published.sent,
                }),
                _ => report.incomplete_rounds += 1,
            }
        }
        tokio::time::sleep(settings.pause).await;
    }
    report.engine_cpu_rounds = engine.cpu().saturating_sub(cpu0);
    engine.quiesce(Duration::from_secs(30)).await;

    // Sustained: changes back to back through the burst statuses, then one final status no
    // burst change uses, so a watcher showing it has surely been told the last change.
    let final_shown = current;
    let burst: Vec<Shown> = CYCLE
        .iter()
        .copied()
        .filter(|s| *s != final_shown)
        .collect();
    watchers.drain();
    let notifies0 = watchers.notifies;
    let cpu0 = engine.cpu();
    let bench_cpu0 = cpu_of("/proc/self/stat");
    let start = Instant::now();
    let mut changes = 0;
    while changes + 1 < settings.burst_changes && start.elapsed() < settings.burst_time {
        let shown = burst
            .get(changes % burst.len())
            .copied()
            .unwrap_or(Shown::Away);
        publisher.publish(shown).await?;
        changes += 1;
        watchers.drain();
    }
    let fin = publisher.publish(final_shown).await?;
    changes += 1;
    report.burst_fired = fin.answered - start;
    let (told, last) = watchers
        .until_all(final_shown, Instant::now() + Duration::from_secs(20))
        .await;
    report.engine_cpu_burst = engine.cpu().saturating_sub(cpu0);
    report.bench_cpu_burst = cpu_of("/proc/self/stat").saturating_sub(bench_cpu0);
    let end = last.unwrap_or_else(Instant::now);
    report.burst_changes = changes;
    report.burst_notifies = watchers.notifies - notifies0;
    report.burst_window = end - start;
    report.burst_settle = end.saturating_duration_since(fin.sent);
    // Nothing older may come after the final state: wait a little and look again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    watchers.drain();
    report.burst_final_told = watchers.on(final_shown).0.min(told);
    report.repeats = watchers.repeats;
    Ok(report)
}

fn print(
    settings: &Settings,
    target: Target,
    binary: &Path,
    report: &Report,
    load_before: &str,
    engine_log: &str,
) {
    let n = settings.watchers;
    let (version, binary) = match target {
        Target::StarcodeSqlite => (
            Command::new(binary)
                .arg("--version")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default(),
            binary.to_path_buf(),
        ),
        Target::Kamailio => (
            Command::new("/usr/sbin/kamailio")
                .arg("-v")
                .output()
                .map(|o| {
                    let out = String::from_utf8_lossy(&o.stdout).to_string();
                    let first = out.lines().next().unwrap_or_default().trim().to_string();
                    // benches/kamailio/run.sh reads the same variable.
                    let mode =
                        std::env::var("KAMAILIO_SUBS_DB_MODE").unwrap_or_else(|_| "1".to_string());
                    format!(
                        "{first}, presence + presence_xml on SQLite \
                         (subs_db_mode={mode}, publ_cache=1)"
                    )
                })
                .unwrap_or_default(),
            Path::new("benches/kamailio/presence.cfg").to_path_buf(),
        ),
    };
    println!(
        "{version} ({}), {n} watchers of {EXTENSION} on loopback UDP (one socket each), \
         {} timed changes after {} warm-up",
        binary.display(),
        settings.rounds,
        settings.warmup
    );
    println!(
        "load average before: {load_before}; after: {}",
        load_average()
    );
    println!(
        "subscribe: {} watchers subscribed and told their first state in {:.2} s",
        report.subscribed,
        report.subscribe_time.as_secs_f64()
    );
    let mut committed: Vec<Duration> = report.rounds.iter().map(|r| r.committed).collect();
    let mut first: Vec<Duration> = report.rounds.iter().map(|r| r.first).collect();
    let mut last: Vec<Duration> = report.rounds.iter().map(|r| r.last).collect();
    committed.sort();
    first.sort();
    last.sort();
    println!(
        "\none change at a time ({} rounds complete, {} incomplete)  p50 ms   p99 ms   max ms   target   p99/target",
        report.rounds.len(),
        report.incomplete_rounds
    );
    let row = |name: &str, values: &[Duration], target: Option<f64>| {
        let p99 = percentile(values, 99.0);
        let (t, ratio) = match target {
            Some(t) => (format!("{t:.0} ms"), format!("{:.2}", p99 / t)),
            None => ("-".to_string(), "-".to_string()),
        };
        println!(
            "  {name:<52} {:>7.2}  {:>7.2}  {:>7.2}  {t:>7}  {ratio:>6}",
            percentile(values, 50.0),
            p99,
            percentile(values, 100.0),
        );
    };
    // The targets are for 1,000 watchers; smaller runs show no ratio.
    let targeted = n >= 1000;
    row("PUBLISH sent -> its 200 OK (committed)", &committed, None);
    row(
        "PUBLISH sent -> first NOTIFY (>= commit -> first)",
        &first,
        targeted.then_some(5.0),
    );
    // The engine's own clock: from the start of the durable write to the first NOTIFY handed
    // to the socket, for the timed rounds' changes (versions after the warm-up's).
    let timed = (settings.warmup as u64 + 1)..=(settings.warmup + settings.rounds) as u64;
    let mut inside: Vec<Duration> = first_notify_times(engine_log)
        .into_iter()
        .filter(|(version, _)| timed.contains(version))
        .map(|(_, waited)| waited)
        .collect();
    inside.sort();
    if !inside.is_empty() {
        row(
            "in the engine: write start -> first NOTIFY sent",
            &inside,
            targeted.then_some(5.0),
        );
    }
    row(
        &format!("PUBLISH sent -> last of {n} NOTIFYs (fan-out)"),
        &last,
        targeted.then_some(100.0),
    );
    let fired = report.burst_fired.as_secs_f64();
    let window = report.burst_window.as_secs_f64();
    let rate = report.burst_notifies as f64 / window.max(1e-9);
    println!(
        "\nsustained: {} changes back to back in {fired:.2} s ({:.0} commits/s); \
         {} NOTIFYs received in {window:.2} s (first PUBLISH -> last watcher on the final state)",
        report.burst_changes,
        report.burst_changes as f64 / fired.max(1e-9),
        report.burst_notifies
    );
    let versus = if targeted {
        format!(" (target 20000: {:.2}x)", rate / 20_000.0)
    } else {
        String::new()
    };
    println!(
        "  {rate:.0} NOTIFY/s{versus}; {:.1} NOTIFYs per watcher for {} changes \
         (coalesced); {} of {n} watchers ended on the final state, the last {:.1} ms after its PUBLISH; \
         {} retransmitted NOTIFYs",
        report.burst_notifies as f64 / n as f64,
        report.burst_changes,
        report.burst_final_told,
        report.burst_settle.as_secs_f64() * 1e3,
        report.repeats
    );
    println!(
        "engine CPU: {:.2} s over the timed rounds ({:.1} ms per change); {:.2} s over the sustained \
         window ({:.1} us per NOTIFY); the bench itself used {:.2} s then",
        report.engine_cpu_rounds.as_secs_f64(),
        report.engine_cpu_rounds.as_secs_f64() * 1e3
            / (settings.rounds + settings.warmup) as f64,
        report.engine_cpu_burst.as_secs_f64(),
        report.engine_cpu_burst.as_secs_f64() * 1e6 / (report.burst_notifies.max(1)) as f64,
        report.bench_cpu_burst.as_secs_f64()
    );
}

/// `(version, write start -> first NOTIFY)` from the engine's "first NOTIFY of a change sent"
/// log lines (text format, colours or not).
fn first_notify_times(log: &str) -> Vec<(u64, Duration)> {
    let field = |line: &str, name: &str| -> Option<u64> {
        let at = line.find(name)? + name.len();
        let digits: String = line[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    log.lines()
        .filter(|l| l.contains("first NOTIFY of a change sent"))
        .map(strip_colours)
        .filter_map(|l| {
            let version = field(&l, "version=")?;
            let micros = field(&l, "write_to_first_notify_us=")?;
            Some((version, Duration::from_micros(micros)))
        })
        .collect()
}

/// The line without ANSI colour sequences (`ESC [ ... m`).
fn strip_colours(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn main() {
    let settings = Settings::from_args();
    let target = match Target::from_args() {
        Ok(target) => target,
        Err(error) => {
            eprintln!("presence_fanout: {error}");
            std::process::exit(2);
        }
    };
    let binary = bench_engine::engine_binary(Some("FANOUT_ENGINE"));
    let load_before = load_average();
    let mut engine = match target.start(&binary) {
        Ok(engine) => engine,
        Err(error) => {
            eprintln!("presence_fanout: {error}");
            std::process::exit(1);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = runtime.block_on(run(&settings, target, &engine));
    runtime.shutdown_background();
    let warnings = engine
        .log()
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .count();
    engine.stop();
    // For a closer look (e.g. with RUST_LOG=info,starcode::runtime=debug): keep the log.
    if let Some(keep) = std::env::var_os("FANOUT_ENGINE_LOG") {
        let _ = std::fs::write(&keep, engine.log());
    }
    match result {
        Ok(report) => {
            print(
                &settings,
                target,
                &binary,
                &report,
                &load_before,
                &engine.log(),
            );
            println!("engine log: {warnings} warnings or errors");
            let complete =
                report.incomplete_rounds == 0 && report.burst_final_told == settings.watchers;
            if settings.smoke && !complete {
                eprintln!("presence_fanout: some watcher was not told a change");
                std::process::exit(1);
            }
        }
        Err(error) => {
            eprintln!("presence_fanout: {error}\nengine log tail:");
            let log = engine.log();
            let lines: Vec<&str> = log.lines().collect();
            for line in lines.iter().skip(lines.len().saturating_sub(20)) {
                eprintln!("{line}");
            }
            std::process::exit(1);
        }
    }
}
