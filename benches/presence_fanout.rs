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
//! `--target` picks the presence server: `starcode-sqlite` (the default, as above),
//! `starcode-postgres-1` (one node on a throwaway PostgreSQL the bench starts, fsync and
//! synchronous_commit on), `starcode-postgres-2` (two nodes on that database: watchers
//! alternate between them, the PUBLISHes go to node 1, so half the NOTIFYs leave from the node
//! that learns of the change through the database), `kamailio` (Kamailio's presence +
//! presence_xml modules on SQLite, write-through: `benches/kamailio/presence.cfg`, started by
//! `benches/kamailio/run.sh`), `kamailio-postgres` (the same on the throwaway PostgreSQL,
//! db_postgres), or `all` (each in turn, one server at a time). On PostgreSQL the bench also
//! counts the database's commits and statements (`pg_stat_database`, `pg_stat_statements`) per
//! change.

use std::net::SocketAddr;
use std::path::Path;
use std::path::PathBuf;
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
#[path = "../tests/support/postgres.rs"]
mod pg;

/// The watched extension.
const EXTENSION: &str = "4000";

/// The presence server under test (`--target`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The release engine with its SQLite store (the default).
    StarcodeSqlite,
    /// Kamailio's presence server on SQLite (`benches/kamailio/run.sh`).
    Kamailio,
    /// One starcode node on the bench's PostgreSQL.
    StarcodePostgres1,
    /// Two starcode nodes on one database of the bench's PostgreSQL.
    StarcodePostgres2,
    /// Kamailio's presence server on the bench's PostgreSQL (db_postgres).
    KamailioPostgres,
}

/// Every target, in the order `--target all` runs them.
const ALL: [Target; 5] = [
    Target::StarcodeSqlite,
    Target::StarcodePostgres1,
    Target::StarcodePostgres2,
    Target::Kamailio,
    Target::KamailioPostgres,
];

/// The servers of one target, and the database they share when on PostgreSQL.
struct Servers {
    /// One, or two for `starcode-postgres-2`; PUBLISHes go to the first.
    nodes: Vec<Engine>,
    database: Option<Database>,
}

/// A database on the bench's PostgreSQL, read through `psql` for its statistics.
struct Database {
    name: String,
    admin_url: String,
}

/// What PostgreSQL counted for the bench's database so far.
#[derive(Debug, Clone, Copy, Default)]
struct DbCounts {
    commits: u64,
    statements: u64,
}

impl Database {
    /// A fresh database on the bench's durable server (`pg_stat_statements` created in the
    /// admin database to count statements).
    fn fresh() -> Result<Database, String> {
        let (url, admin_url) = pg::durable_database()
            .ok_or("PostgreSQL is not installed (scripts/bootstrap.sh installs it)")?;
        let name = url.rsplit('/').next().unwrap_or_default().to_string();
        let database = Database { name, admin_url };
        database.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")?;
        Ok(database)
    }

    /// The database's URL.
    fn url(&self) -> String {
        let server = self.admin_url.trim_end_matches("/postgres");
        format!("{server}/{}", self.name)
    }

    fn psql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new("psql")
            .args([
                "-qAtX",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &self.admin_url,
                "-c",
                sql,
            ])
            .output()
            .map_err(|e| format!("running psql: {e}"))?;
        if !out.status.success() {
            return Err(format!("psql: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Commits and statements so far; a backend reports its counts within a second of its
    /// last transaction, so this waits that long first. Zeros if unreadable.
    async fn counts(&self) -> DbCounts {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let sql = format!(
            "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = '{0}'), \
             (SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s \
              JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = '{0}')",
            self.name
        );
        let text = self.psql(&sql).unwrap_or_default();
        let mut numbers = text.split('|').map(|n| n.trim().parse().unwrap_or(0));
        DbCounts {
            commits: numbers.next().unwrap_or(0),
            statements: numbers.next().unwrap_or(0),
        }
    }
}

impl DbCounts {
    fn since(self, before: DbCounts) -> DbCounts {
        DbCounts {
            commits: self.commits.saturating_sub(before.commits),
            statements: self.statements.saturating_sub(before.statements),
        }
    }
}

impl Servers {
    /// Every node's CPU so far.
    fn cpu(&self) -> Vec<Duration> {
        self.nodes.iter().map(Engine::cpu).collect()
    }

    /// Waits until every node is idle (see [`Engine::quiesce`]).
    async fn quiesce(&self, limit: Duration) {
        for node in &self.nodes {
            node.quiesce(limit).await;
        }
    }

    /// What the database counted so far (zeros on SQLite).
    async fn db_counts(&self) -> DbCounts {
        match &self.database {
            Some(database) => database.counts().await,
            None => DbCounts::default(),
        }
    }

    /// Every node's log, one after the other.
    fn log(&self) -> String {
        self.nodes.iter().map(Engine::log).collect()
    }

    fn stop(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
    }
}

impl Target {
    /// From `--target NAME` on the command line (`all`: every target); starcode on SQLite
    /// without it.
    fn from_args() -> Result<Vec<Target>, String> {
        let args: Vec<String> = std::env::args().collect();
        let name = args
            .iter()
            .position(|a| a == "--target")
            .map(|at| args.get(at + 1).map(String::as_str).unwrap_or_default());
        match name {
            None => Ok(vec![Target::StarcodeSqlite]),
            Some("all") => Ok(ALL.to_vec()),
            Some(name) => ALL
                .into_iter()
                .find(|t| t.name() == name)
                .map(|t| vec![t])
                .ok_or_else(|| {
                    let names: Vec<&str> = ALL.iter().map(|t| t.name()).collect();
                    format!("--target {name:?}: expected all or one of {names:?}")
                }),
        }
    }

    /// Its name on the command line.
    fn name(self) -> &'static str {
        match self {
            Target::StarcodeSqlite => "starcode-sqlite",
            Target::Kamailio => "kamailio",
            Target::StarcodePostgres1 => "starcode-postgres-1",
            Target::StarcodePostgres2 => "starcode-postgres-2",
            Target::KamailioPostgres => "kamailio-postgres",
        }
    }

    /// Kamailio, on either database.
    fn is_kamailio(self) -> bool {
        matches!(self, Target::Kamailio | Target::KamailioPostgres)
    }

    /// Starts the servers under test; `binary` is starcode's.
    fn start(self, binary: &Path) -> Result<Servers, String> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/kamailio/run.sh");
        let database = match self {
            Target::StarcodeSqlite | Target::Kamailio => None,
            _ => Some(Database::fresh()?),
        };
        let nodes = match (self, &database) {
            (Target::StarcodeSqlite, _) => vec![start_engine(binary, None)?],
            (Target::Kamailio, _) => {
                std::env::remove_var("KAMAILIO_DB_URL");
                vec![Engine::start_script(&script)?]
            }
            (Target::StarcodePostgres1, Some(db)) => {
                vec![start_engine(binary, Some((&db.url(), "node-1")))?]
            }
            (Target::StarcodePostgres2, Some(db)) => vec![
                start_engine(binary, Some((&db.url(), "node-1")))?,
                start_engine(binary, Some((&db.url(), "node-2")))?,
            ],
            (Target::KamailioPostgres, Some(db)) => {
                // benches/kamailio/run.sh reads it.
                std::env::set_var("KAMAILIO_DB_URL", db.url());
                vec![Engine::start_script(&script)?]
            }
            _ => return Err("no database".to_string()),
        };
        Ok(Servers { nodes, database })
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

/// The engine under test, trusting every loopback peer, with expiries the watchers accept;
/// on its SQLite file, or on PostgreSQL as `(url, node name)`.
fn start_engine(binary: &Path, postgres: Option<(&str, &str)>) -> Result<Engine, String> {
    let store =
        postgres.map(|(url, node)| format!("url = \"{url}\"\n[cluster]\nnode = \"{node}\""));
    let configured = Configured::with_store(
        100,
        store.as_deref(),
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
    /// NOTIFYs received by the watchers of each node (watcher i is on node i % nodes).
    per_node: Vec<u64>,
}

impl Watchers {
    /// Counts a new NOTIFY to `watcher`.
    fn told(&mut self, watcher: usize, shown: Shown, at: Instant) {
        self.notifies += 1;
        let nodes = self.per_node.len().max(1);
        if let Some(count) = self.per_node.get_mut(watcher % nodes) {
            *count += 1;
        }
        if let Some(slot) = self.latest.get_mut(watcher) {
            *slot = Some((shown, at));
        }
    }

    /// The next event, or None at `deadline`.
    async fn next(&mut self, deadline: Instant) -> Option<Seen> {
        let seen = tokio::time::timeout_at(deadline.into(), self.seen.recv())
            .await
            .ok()
            .flatten()?;
        match &seen {
            Seen::Notify { watcher, at, shown } => self.told(*watcher, *shown, *at),
            Seen::Repeat => self.repeats += 1,
            Seen::Subscribed | Seen::Refused(_) => {}
        }
        Some(seen)
    }

    /// Takes in what already arrived.
    fn drain(&mut self) {
        while let Ok(seen) = self.seen.try_recv() {
            if let Seen::Notify { watcher, at, shown } = seen {
                self.told(watcher, shown, at);
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
    /// Each node's CPU over the sustained window, and the NOTIFYs its watchers received then.
    node_cpu_burst: Vec<(Duration, u64)>,
    /// What the database counted over the timed rounds and over the sustained window, and over
    /// an idle second (the nodes' polls, take-over checks, lease renewals).
    db_rounds: DbCounts,
    db_burst: DbCounts,
    db_idle_per_s: DbCounts,
}

/// The sum of `after - before`, node by node.
fn used(before: &[Duration], after: &[Duration]) -> Duration {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| a.saturating_sub(*b))
        .sum()
}

async fn run(settings: &Settings, target: Target, servers: &Servers) -> Result<Report, String> {
    let engine = servers.nodes.first().ok_or("no server")?;
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
        per_node: vec![0; servers.nodes.len()],
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
    if target.is_kamailio() {
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
            // Watchers alternate between the nodes.
            let node = &servers.nodes[index % servers.nodes.len()];
            tokio::spawn(watcher(index, socket, node.sip, run_id, tx.clone()));
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
    servers.quiesce(Duration::from_secs(30)).await;
    let idle0 = servers.db_counts().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = servers.db_counts().await.since(idle0);
    // Two seconds plus the 1.5 s db_counts waits for the statistics.
    report.db_idle_per_s = DbCounts {
        commits: idle.commits * 10 / 35,
        statements: idle.statements * 10 / 35,
    };

    // Timed rounds: one change at a time, every watcher told before the next.
    let db0 = servers.db_counts().await;
    let cpu0 = servers.cpu();
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
    report.engine_cpu_rounds = used(&cpu0, &servers.cpu());
    servers.quiesce(Duration::from_secs(30)).await;
    report.db_rounds = servers.db_counts().await.since(db0);

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
    let per_node0 = watchers.per_node.clone();
    let db0 = servers.db_counts().await;
    let cpu0 = servers.cpu();
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
    let cpu1 = servers.cpu();
    report.engine_cpu_burst = used(&cpu0, &cpu1);
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
    report.node_cpu_burst = cpu0
        .iter()
        .zip(&cpu1)
        .zip(watchers.per_node.iter().zip(&per_node0))
        .map(|((b, a), (n, n0))| (a.saturating_sub(*b), n - n0))
        .collect();
    report.db_burst = servers.db_counts().await.since(db0);
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
        Target::StarcodeSqlite | Target::StarcodePostgres1 | Target::StarcodePostgres2 => (
            Command::new(binary)
                .arg("--version")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default(),
            binary.to_path_buf(),
        ),
        Target::Kamailio | Target::KamailioPostgres => (
            Command::new("/usr/sbin/kamailio")
                .arg("-v")
                .output()
                .map(|o| {
                    let out = String::from_utf8_lossy(&o.stdout).to_string();
                    let first = out.lines().next().unwrap_or_default().trim().to_string();
                    // benches/kamailio/run.sh reads the same variable.
                    let mode =
                        std::env::var("KAMAILIO_SUBS_DB_MODE").unwrap_or_else(|_| "1".to_string());
                    let db = if target == Target::Kamailio {
                        "SQLite"
                    } else {
                        "PostgreSQL"
                    };
                    format!(
                        "{first}, presence + presence_xml on {db} \
                         (subs_db_mode={mode}, publ_cache=1)"
                    )
                })
                .unwrap_or_default(),
            Path::new("benches/kamailio/presence.cfg").to_path_buf(),
        ),
    };
    println!("\n=== --target {}", target.name());
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
    if report.node_cpu_burst.len() > 1 {
        for (i, (cpu, notifies)) in report.node_cpu_burst.iter().enumerate() {
            println!(
                "  node {}: {:.2} s CPU, {notifies} NOTIFYs to its watchers ({:.1} us per NOTIFY){}",
                i + 1,
                cpu.as_secs_f64(),
                cpu.as_secs_f64() * 1e6 / (*notifies).max(1) as f64,
                if i == 0 { ", takes the PUBLISHes" } else { ", learns of them through the database" }
            );
        }
    }
    if target != Target::StarcodeSqlite && target != Target::Kamailio {
        let changes = (settings.warmup + settings.rounds) as f64;
        let per = |count: u64, of: f64| count as f64 / of.max(1.0);
        println!(
            "database: timed rounds {} commits, {} statements ({:.1} / {:.1} per change); \
             sustained {} commits, {} statements ({:.1} / {:.1} per change); \
             idle (background) {} commits/s, {} statements/s",
            report.db_rounds.commits,
            report.db_rounds.statements,
            per(report.db_rounds.commits, changes),
            per(report.db_rounds.statements, changes),
            report.db_burst.commits,
            report.db_burst.statements,
            per(report.db_burst.commits, report.burst_changes as f64),
            per(report.db_burst.statements, report.burst_changes as f64),
            report.db_idle_per_s.commits,
            report.db_idle_per_s.statements
        );
    }
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
    let targets = match Target::from_args() {
        Ok(targets) => targets,
        Err(error) => {
            eprintln!("presence_fanout: {error}");
            std::process::exit(2);
        }
    };
    let binary = bench_engine::engine_binary(Some("FANOUT_ENGINE"));
    let mut failed = false;
    for target in targets {
        if let Err(error) = bench(&settings, target, &binary) {
            eprintln!("presence_fanout --target {}: {error}", target.name());
            failed = true;
        }
    }
    // std::process::exit runs the exit hook that stops the bench's PostgreSQL.
    std::process::exit(i32::from(failed));
}

/// Starts `target`'s servers, measures them, stops them and prints the figures.
fn bench(settings: &Settings, target: Target, binary: &Path) -> Result<(), String> {
    let load_before = load_average();
    let mut servers = target.start(binary)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("a tokio runtime: {e}"))?;
    let result = runtime.block_on(run(settings, target, &servers));
    runtime.shutdown_background();
    let warnings = servers
        .log()
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .count();
    servers.stop();
    let log = servers.log();
    // For a closer look (e.g. with RUST_LOG=info,starcode::runtime=debug): keep the log.
    if let Some(keep) = std::env::var_os("FANOUT_ENGINE_LOG") {
        let mut keep = PathBuf::from(keep);
        keep.as_mut_os_string().push(format!(".{}", target.name()));
        let _ = std::fs::write(&keep, &log);
    }
    match result {
        Ok(report) => {
            print(settings, target, binary, &report, &load_before, &log);
            println!("engine log: {warnings} warnings or errors");
            let complete =
                report.incomplete_rounds == 0 && report.burst_final_told == settings.watchers;
            if settings.smoke && !complete {
                return Err("some watcher was not told a change".to_string());
            }
            Ok(())
        }
        Err(error) => {
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(20)..].join("\n");
            Err(format!("{error}\nengine log tail:\n{tail}"))
        }
    }
}
