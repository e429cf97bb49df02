//! What the web API costs with a big board (benchmark, not a test). One release engine on
//! loopback, its store seeded before start with EXTENSIONS accounts (`starcode ext import` of a
//! generated CSV, as an admin loads a PBX export) of which nine in ten have a status (written
//! through the library's store on the engine's SQLite file, as `starcode status set` would),
//! and an admin API token from the real CLI (`starcode admin add`, `starcode token create`),
//! sent as `Authorization: Bearer`. Then:
//! - `GET /api/v1/extensions`: (a) the first page of the default size, (b) every page of the
//!   board walked at the largest page size, (c) a filtered query (status=dnd and a search),
//!   REPS times each, one request at a time on one keep-alive connection: p50/p99 latency and
//!   requests per second;
//! - CLIENTS concurrent SSE clients on `GET /api/v1/events` (plain TCP, lines parsed by hand),
//!   then PUTS sequential `PUT /api/v1/extensions/{ext}/presence`: for each, the time from
//!   sending the PUT to the event's arrival at the first client and at the last one (all of
//!   them): p50/p99 of both.
//!
//! Beside the figures: the command, the load average and the engine's CPU time per phase (from
//! /proc, so the bench's own CPU on the same cores is not counted). Measured, never asserted;
//! every loop is bounded in count and time, and only 127.0.0.1 is ever a target.
//!
//! Run: `benches/web_api.sh [EXTENSIONS=10000] [REPS=50] [CLIENTS=1000] [PUTS=50]`, or
//! `cargo bench --bench web_api -- EXTENSIONS REPS CLIENTS PUTS`. Under `cargo test` it runs a
//! small smoke round that fails only when a request or an event did not arrive.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use starcode::presence::sqlite::SqliteStore;
use starcode::presence::{ChangeSource, PresenceStore, StatusKind, StatusUpdate};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

#[path = "../tests/support/bench_engine.rs"]
mod bench_engine;
#[path = "../tests/support/peer.rs"]
mod peer;
use bench_engine::{Configured, Engine, Launch, Ready};

/// Extension `i` of the board is `EXT_BASE + i`.
const EXT_BASE: usize = 100_000;
/// The extension the PUTs change.
const PUT_EXT: &str = "99999";
/// The largest page the API serves (`limit`), used to walk the board.
const WALK_PAGE: usize = 1000;
/// The marker in the custom text of PUT k: `bench-put-k`.
const MARKER: &str = "bench-put-";
/// How long one request, one event or the clients' connecting may take at most.
const BOUND: Duration = Duration::from_secs(30);

/// What one run does; from the command line under `cargo bench`, small under `cargo test`.
#[derive(Debug, Clone, Copy)]
struct Settings {
    extensions: usize,
    reps: usize,
    clients: usize,
    puts: usize,
}

impl Settings {
    fn from_args() -> Settings {
        let Some(numbers) = bench_engine::bench_numbers() else {
            return Settings {
                extensions: 300,
                reps: 3,
                clients: 20,
                puts: 3,
            };
        };
        Settings {
            extensions: numbers.first().copied().unwrap_or(10_000).clamp(1, 200_000),
            reps: numbers.get(1).copied().unwrap_or(50).clamp(1, 10_000),
            clients: numbers.get(2).copied().unwrap_or(1000).clamp(1, 10_000),
            puts: numbers.get(3).copied().unwrap_or(50).clamp(1, 10_000),
        }
    }
}

/// The status seeded for extension `i`: none for one in ten, else a mix with one in five DND.
fn seeded_status(i: usize) -> Option<(StatusKind, Option<String>)> {
    match i % 10 {
        0 => None,
        1 | 2 => Some((StatusKind::DoNotDisturb, None)),
        3 | 4 => Some((StatusKind::Away, None)),
        5 => Some((StatusKind::Chat, None)),
        6 => Some((StatusKind::Custom, Some(format!("Meeting room {}", i % 40)))),
        7 => Some((StatusKind::Unavailable, None)),
        _ => Some((StatusKind::Available, None)),
    }
}

/// A name for extension `i`: surnames and first names repeat, so a search matches several.
fn name_of(i: usize) -> String {
    const FIRST: [&str; 8] = ["Ann", "Bo", "Cy", "Di", "Ed", "Flo", "Gus", "Hal"];
    const LAST: [&str; 10] = [
        "Lee", "Arbus", "Twombly", "Okafor", "Novak", "Silva", "Tanaka", "Berg", "Moreau", "Kim",
    ];
    format!(
        "{} {} {i}",
        FIRST[i % FIRST.len()],
        LAST[(i / FIRST.len()) % LAST.len()]
    )
}

/// Runs `starcode SECTION --config C ARGS` with `stdin`; its stdout, or its stderr as the error.
fn cli(
    binary: &Path,
    configured: &Configured,
    section: &str,
    args: &[&str],
    stdin: &str,
) -> Result<String, String> {
    let mut child = Command::new(binary)
        .args([section, "--config"])
        .arg(configured.config_path())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starcode {section}: {e}"))?;
    if let Some(mut input) = child.stdin.take() {
        use std::io::Write as _;
        input
            .write_all(stdin.as_bytes())
            .map_err(|e| format!("starcode {section}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("starcode {section}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "starcode {section} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The seeded engine, its web address and an admin token.
struct Board {
    engine: Engine,
    web: SocketAddr,
    bearer: String,
    seeding: Duration,
}

fn start_engine(binary: &Path, extensions: usize) -> Result<Board, String> {
    let seeding_started = Instant::now();
    let configured = Configured::new(100, "")?;
    let mut csv = String::from("extension,name,secret\n");
    for i in 0..extensions {
        let _ = writeln!(csv, "{},{},bench-secret-{i}", EXT_BASE + i, name_of(i));
    }
    let csv_path = configured.file("board.csv");
    std::fs::write(&csv_path, csv).map_err(|e| e.to_string())?;
    let csv_arg = csv_path.to_string_lossy().into_owned();
    cli(binary, &configured, "ext", &["import", &csv_arg], "")?;
    {
        let store =
            SqliteStore::open(&configured.file("presence.db")).map_err(|e| e.to_string())?;
        for i in 0..extensions {
            let Some((status, custom_text)) = seeded_status(i) else {
                continue;
            };
            store
                .set(&StatusUpdate {
                    extension: (EXT_BASE + i).to_string(),
                    status,
                    custom_text,
                    source: ChangeSource::Cli,
                    at: SystemTime::now(),
                    actor: None,
                    expected_version: None,
                })
                .map_err(|e| format!("seeding {}: {e}", EXT_BASE + i))?;
        }
    }
    cli(
        binary,
        &configured,
        "admin",
        &["add", "bench", "--password-stdin"],
        "bench-admin-pass-1\n",
    )?;
    let created = cli(
        binary,
        &configured,
        "token",
        &["create", "--name", "web bench", "--admin"],
        "",
    )?;
    let token = created
        .split_whitespace()
        .find(|w| w.starts_with("sc_"))
        .ok_or_else(|| format!("no token in {created}"))?;
    let seeding = seeding_started.elapsed();
    let launch = Launch {
        global_args: &[],
        rust_log: Some("warn,starcode::runtime=info"),
        ready: Ready::Logged,
    };
    let engine = configured.start(binary, &launch)?;
    let log = engine.log();
    // `url=http://127.0.0.1:PORT/` (the field may be coloured, so only the URL is looked for).
    let web = log
        .split("http://127.0.0.1:")
        .nth(1)
        .map(|rest| format!("127.0.0.1:{rest}"))
        .as_deref()
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse().ok())
        .ok_or_else(|| format!("no web URL in the log:\n{log}"))?;
    Ok(Board {
        engine,
        web,
        bearer: format!("Bearer {token}"),
        seeding,
    })
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// One request; its status and body, bounded by [`BOUND`].
async fn request(
    client: &HttpClient,
    board: &Board,
    method: Method,
    path: &str,
    body: Option<String>,
) -> Result<(StatusCode, Bytes), String> {
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", board.web))
        .header("Authorization", &board.bearer);
    if body.is_some() {
        builder = builder.header("Content-Type", "application/json");
    }
    let req = builder
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let response = client.request(req).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<_, String>((status, bytes))
    };
    tokio::time::timeout(BOUND, exchange)
        .await
        .map_err(|_| format!("{path}: no answer in {BOUND:?}"))?
}

/// A GET that must answer 200 with a page; the page's `total`.
async fn get_page(client: &HttpClient, board: &Board, path: &str) -> Result<u64, String> {
    let (status, body) = request(client, board, Method::GET, path, None).await?;
    if status != StatusCode::OK {
        return Err(format!(
            "{path}: {status} {}",
            String::from_utf8_lossy(&body)
        ));
    }
    let page: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    page.get("total")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| format!("{path}: no total"))
}

/// Latencies (ms) and what one series of requests cost.
struct Series {
    name: String,
    latencies_ms: Vec<f64>,
    wall: Duration,
    engine_cpu: Duration,
    note: String,
}

/// The GET series: first page, the whole board walked, a filtered query.
async fn list_series(
    client: &HttpClient,
    board: &Board,
    settings: Settings,
) -> Result<Vec<Series>, String> {
    // Warm the connection and the store's pages.
    let total = get_page(client, board, "/api/v1/extensions").await?;
    let mut out = Vec::new();
    let filtered = "/api/v1/extensions?status=dnd&search=tanaka";
    let walk_pages = (total as usize).div_ceil(WALK_PAGE).max(1);
    let kinds: [(&str, usize); 3] = [
        ("GET /extensions (first page, 100 rows)", 1),
        ("GET /extensions (walk all, limit=1000)", walk_pages),
        ("GET /extensions?status=dnd&search=tanaka", 1),
    ];
    for (index, (name, pages)) in kinds.into_iter().enumerate() {
        let mut latencies_ms = Vec::with_capacity(settings.reps * pages);
        let mut note = String::new();
        let cpu_before = board.engine.cpu();
        let started = Instant::now();
        for _ in 0..settings.reps {
            let walk_started = Instant::now();
            for page in 0..pages {
                let path = match index {
                    0 => "/api/v1/extensions".to_string(),
                    1 => format!(
                        "/api/v1/extensions?limit={WALK_PAGE}&offset={}",
                        page * WALK_PAGE
                    ),
                    _ => filtered.to_string(),
                };
                let sent = Instant::now();
                let matched = get_page(client, board, &path).await?;
                latencies_ms.push(sent.elapsed().as_secs_f64() * 1e3);
                if index == 2 {
                    note = format!("{matched} of {total} match");
                }
            }
            if index == 1 {
                let whole = walk_started.elapsed().as_secs_f64() * 1e3;
                note = format!("{pages} pages per walk, last walk {whole:.1} ms");
            }
        }
        out.push(Series {
            name: name.to_string(),
            latencies_ms,
            wall: started.elapsed(),
            engine_cpu: board.engine.cpu().saturating_sub(cpu_before),
            note,
        });
    }
    Ok(out)
}

/// One SSE client: connects, then reports (client, k, arrival) for every event whose custom
/// text is `bench-put-k`, until the stream ends or `stop` passes.
async fn sse_client(
    index: usize,
    web: SocketAddr,
    bearer: Arc<str>,
    connected: mpsc::UnboundedSender<Result<usize, String>>,
    arrivals: mpsc::UnboundedSender<(usize, usize, Instant)>,
    stop: Instant,
) {
    let stream = match TcpStream::connect(web).await {
        Ok(s) => s,
        Err(e) => {
            let _ = connected.send(Err(format!("client {index}: {e}")));
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream);
    let head = format!(
        "GET /api/v1/events HTTP/1.1\r\nHost: {web}\r\nAuthorization: {bearer}\r\n\
         Accept: text/event-stream\r\n\r\n"
    );
    if let Err(e) = reader.get_mut().write_all(head.as_bytes()).await {
        let _ = connected.send(Err(format!("client {index}: {e}")));
        return;
    }
    let mut line = String::new();
    // The response head, up to its blank line.
    let mut status_ok = None;
    loop {
        line.clear();
        let read = tokio::time::timeout_at(stop.into(), reader.read_line(&mut line)).await;
        match read {
            Ok(Ok(n)) if n > 0 => {}
            _ => {
                let _ = connected.send(Err(format!("client {index}: no response head")));
                return;
            }
        }
        if status_ok.is_none() {
            status_ok = Some(line.split_whitespace().nth(1) == Some("200"));
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
    }
    if status_ok != Some(true) {
        let _ = connected.send(Err(format!("client {index}: not 200")));
        return;
    }
    let _ = connected.send(Ok(index));
    // The body: chunk-size lines and SSE lines; only `data:` lines with the marker count.
    loop {
        line.clear();
        match tokio::time::timeout_at(stop.into(), reader.read_line(&mut line)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        }
        let at = Instant::now();
        if !line.starts_with("data:") {
            continue;
        }
        let Some(k) = line
            .split(MARKER)
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|digits| digits.parse().ok())
        else {
            continue;
        };
        let _ = arrivals.send((index, k, at));
    }
}

/// First-client and last-client arrival (ms) per PUT, and the CPU it cost the engine.
struct Fanout {
    first_ms: Vec<f64>,
    last_ms: Vec<f64>,
    put_ms: Vec<f64>,
    connect: Duration,
    engine_cpu_connect: Duration,
    engine_cpu_puts: Duration,
    rss_kib: u64,
}

async fn sse_fanout(
    client: &HttpClient,
    board: &Board,
    settings: Settings,
) -> Result<Fanout, String> {
    let stop = Instant::now() + BOUND * 2 + Duration::from_secs(settings.puts as u64);
    let bearer: Arc<str> = Arc::from(board.bearer.as_str());
    let (connected_tx, mut connected_rx) = mpsc::unbounded_channel();
    let (arrival_tx, mut arrival_rx) = mpsc::unbounded_channel();
    let cpu_before = board.engine.cpu();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(settings.clients);
    for index in 0..settings.clients {
        tasks.push(tokio::spawn(sse_client(
            index,
            board.web,
            bearer.clone(),
            connected_tx.clone(),
            arrival_tx.clone(),
            stop,
        )));
    }
    drop(connected_tx);
    drop(arrival_tx);
    let connect_deadline = tokio::time::Instant::now() + BOUND;
    for _ in 0..settings.clients {
        match tokio::time::timeout_at(connect_deadline, connected_rx.recv()).await {
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => return Err(e),
            _ => return Err("the SSE clients did not all connect in time".into()),
        }
    }
    let connect = started.elapsed();
    let engine_cpu_connect = board.engine.cpu().saturating_sub(cpu_before);
    // The streams are open; let the engine subscribe each to the live changes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu_before = board.engine.cpu();
    let mut fanout = Fanout {
        first_ms: Vec::new(),
        last_ms: Vec::new(),
        put_ms: Vec::new(),
        connect,
        engine_cpu_connect,
        engine_cpu_puts: Duration::ZERO,
        rss_kib: 0,
    };
    for k in 0..settings.puts {
        let body = format!(r#"{{"status":"custom","text":"{MARKER}{k}"}}"#);
        let path = format!("/api/v1/extensions/{PUT_EXT}/presence");
        let sent = Instant::now();
        let (status, answer) = request(client, board, Method::PUT, &path, Some(body)).await?;
        fanout.put_ms.push(sent.elapsed().as_secs_f64() * 1e3);
        if status != StatusCode::OK {
            return Err(format!(
                "PUT: {status} {}",
                String::from_utf8_lossy(&answer)
            ));
        }
        let mut seen = vec![false; settings.clients];
        let mut count = 0;
        let mut first = None;
        let mut last = sent;
        let deadline = tokio::time::Instant::now() + BOUND;
        while count < settings.clients {
            match tokio::time::timeout_at(deadline, arrival_rx.recv()).await {
                Ok(Some((index, got, at))) if got == k => {
                    if let Some(slot) = seen.get_mut(index).filter(|s| !**s) {
                        *slot = true;
                        count += 1;
                        first = Some(first.map_or(at, |f: Instant| f.min(at)));
                        last = last.max(at);
                    }
                }
                Ok(Some(_)) => {}
                _ => {
                    return Err(format!(
                        "PUT {k}: {count} of {} clients got the event in {BOUND:?}",
                        settings.clients
                    ))
                }
            }
        }
        let first = first.unwrap_or(last);
        fanout
            .first_ms
            .push(first.saturating_duration_since(sent).as_secs_f64() * 1e3);
        fanout
            .last_ms
            .push(last.saturating_duration_since(sent).as_secs_f64() * 1e3);
    }
    fanout.engine_cpu_puts = board.engine.cpu().saturating_sub(cpu_before);
    fanout.rss_kib = board.engine.memory_kib("VmRSS");
    for task in tasks {
        task.abort();
    }
    Ok(fanout)
}

/// The `q` quantile (0..=1) of `values`, nearest rank.
fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The soft limit on open files of this process (the engine inherits it).
fn open_files_limit() -> Option<u64> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

fn main() {
    let settings = Settings::from_args();
    let smoke = bench_engine::bench_numbers().is_none();
    let binary = bench_engine::engine_binary(Some("WEB_BENCH_ENGINE"));
    let load_before = bench_engine::load_average();
    let needed = settings.clients as u64 + 200;
    if let Some(limit) = open_files_limit().filter(|l| *l < needed) {
        panic!(
            "{} SSE clients need about {needed} open files in the bench and in the engine; \
             the limit is {limit}: raise it (`ulimit -n {needed}`; benches/web_api.sh does)",
            settings.clients
        );
    }
    let board = match start_engine(&binary, settings.extensions) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("tokio: {e}"));
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1)
        .build(HttpConnector::new());
    let series = runtime.block_on(list_series(&client, &board, settings));
    let series = series.unwrap_or_else(|e| panic!("{e}\n{}", board.engine.log()));
    let fanout = runtime.block_on(sse_fanout(&client, &board, settings));
    let fanout = fanout.unwrap_or_else(|e| panic!("{e}\n{}", board.engine.log()));
    let load_after = bench_engine::load_average();

    println!(
        "web API bench: {}, {} extensions ({} with a status), {} reps, {} SSE clients, \
         {} PUTs{}",
        binary.display(),
        settings.extensions,
        (0..settings.extensions)
            .filter(|i| seeded_status(*i).is_some())
            .count(),
        settings.reps,
        settings.clients,
        settings.puts,
        if smoke { " (smoke round)" } else { "" }
    );
    println!(
        "command: cargo bench --bench web_api -- {} {} {} {}",
        settings.extensions, settings.reps, settings.clients, settings.puts
    );
    println!(
        "seeding (ext import + statuses + admin + token): {:.1} s; open files limit: {}",
        board.seeding.as_secs_f64(),
        open_files_limit().map_or("?".into(), |l| l.to_string())
    );
    println!("load average before: {load_before}; after: {load_after}");
    println!();
    println!(
        "{:<44} {:>9} {:>9} {:>9} {:>12}  note",
        "request", "p50 ms", "p99 ms", "req/s", "engine CPU"
    );
    for s in &series {
        println!(
            "{:<44} {:>9.2} {:>9.2} {:>9.1} {:>9.2} ms  {}",
            s.name,
            quantile(&s.latencies_ms, 0.5),
            quantile(&s.latencies_ms, 0.99),
            s.latencies_ms.len() as f64 / s.wall.as_secs_f64(),
            s.engine_cpu.as_secs_f64() * 1e3 / s.latencies_ms.len().max(1) as f64,
            s.note
        );
    }
    println!("(engine CPU: per request)");
    println!();
    println!(
        "SSE: {} clients connected in {:.0} ms (engine CPU {:.0} ms); engine RSS {} MiB",
        settings.clients,
        fanout.connect.as_secs_f64() * 1e3,
        fanout.engine_cpu_connect.as_secs_f64() * 1e3,
        fanout.rss_kib / 1024
    );
    println!("{:<44} {:>9} {:>9}", "PUT -> event", "p50 ms", "p99 ms");
    for (name, values) in [
        ("PUT answered", &fanout.put_ms),
        ("event at the first client", &fanout.first_ms),
        ("event at the last client (all)", &fanout.last_ms),
    ] {
        println!(
            "{:<44} {:>9.2} {:>9.2}",
            name,
            quantile(values, 0.5),
            quantile(values, 0.99)
        );
    }
    println!(
        "engine CPU per PUT (with its fan-out to {} clients): {:.2} ms",
        settings.clients,
        fanout.engine_cpu_puts.as_secs_f64() * 1e3 / settings.puts.max(1) as f64
    );
    drop(client);
    drop(board);
}
