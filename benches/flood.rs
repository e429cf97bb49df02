//! The abuse limits under a flood (issue 9, item 6). The release engine runs on loopback with
//! its default `[limits]`. Source A (127.0.0.2) sends garbage datagrams and SUBSCRIBEs as fast
//! as it can and answers nothing; meanwhile source B (127.0.0.1) has watchers that SUBSCRIBE
//! and answer their NOTIFYs, and makes feature-code calls (keys by SIP INFO: Away, confirm).
//!
//! Measured, never asserted (figures go in the README): the engine's peak resident memory
//! (VmHWM) idle and after the flood, B's calls that saved Away and the watchers told so, and
//! what A got back (503s, other answers) against what the engine reports it refused/dropped.
//!
//! Run: `benches/flood.sh [GARBAGE=100000] [SUBSCRIBES=20000] [CALLS=20]`, or
//! `cargo bench --bench flood -- GARBAGE SUBSCRIBES CALLS`. Under `cargo test` it runs a small
//! smoke round (2,000 garbage, 500 SUBSCRIBEs, 2 calls, debug engine) and fails only when a
//! legitimate call or watcher was not served.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

#[path = "../tests/support/peer.rs"]
mod peer;
use peer::{subscribe, Message};
#[path = "../tests/support/bench_engine.rs"]
mod bench_engine;
use bench_engine::{Configured, Engine, Launch, Ready};

/// Source A, the flooder.
const FLOODER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// Source B, the PBX with legitimate calls and watchers.
const LEGIT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
/// First caller extension; call `i` is made by `CALLER_BASE + i`, watched by one watcher.
const CALLER_BASE: u32 = 6000;

/// What one run does; from the command line under `cargo bench`, small under `cargo test`.
#[derive(Debug, Clone, Copy)]
struct Settings {
    garbage: usize,
    subscribes: usize,
    calls: usize,
    smoke: bool,
}

impl Settings {
    fn from_args() -> Settings {
        let Some(numbers) = bench_engine::bench_numbers() else {
            return Settings {
                garbage: 2000,
                subscribes: 500,
                calls: 2,
                smoke: true,
            };
        };
        Settings {
            garbage: numbers.first().copied().unwrap_or(100_000),
            subscribes: numbers.get(1).copied().unwrap_or(20_000),
            calls: numbers.get(2).copied().unwrap_or(20).max(1),
            smoke: false,
        }
    }
}

/// What source A got back.
#[derive(Debug, Default)]
struct FloodReport {
    sent_garbage: usize,
    sent_subscribes: usize,
    answers_503: usize,
    answers_200: usize,
    answers_other: usize,
    notifies: usize,
    took: Duration,
}

/// Source A: SUBSCRIBEs then garbage, as fast as the socket takes them; then it keeps reading
/// what comes back for a moment. Bounded in count and time.
async fn flood(engine: SocketAddr, settings: &Settings) -> Result<FloodReport, String> {
    let socket = UdpSocket::bind(SocketAddr::new(FLOODER, 0))
        .await
        .map_err(|e| format!("binding {FLOODER}: {e}"))?;
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let mut report = FloodReport::default();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    let garbage: Vec<Vec<u8>> = vec![
        b"\x00\x01\x02\x03 not SIP at all".to_vec(),
        b"INVITE sip:*46@127.0.0.1 SIP/2.0\r\n\r\n".to_vec(),
        vec![0x80; 200],
        b"OPTIONS nonsense\r\n\r\n".to_vec(),
    ];
    let total = settings.garbage + settings.subscribes;
    let mut buf = vec![0u8; 16 * 1024];
    let mut read_answers = |socket: &UdpSocket, report: &mut FloodReport| {
        while let Ok((len, _)) = socket.try_recv_from(&mut buf) {
            match Message::parse(buf.get(..len).unwrap_or_default()) {
                Some(m) if m.status() == Some(503) => report.answers_503 += 1,
                Some(m) if m.status() == Some(200) => report.answers_200 += 1,
                Some(m) if m.start.starts_with("NOTIFY") => report.notifies += 1,
                _ => report.answers_other += 1,
            }
        }
    };
    // The SUBSCRIBEs first, then the garbage: interleaved, the garbage would mute the source
    // at once and the SUBSCRIBE limits would never be reached.
    for i in 0..total {
        if Instant::now() > deadline {
            break;
        }
        let bytes = if i < settings.subscribes {
            let n = i as u32;
            report.sent_subscribes += 1;
            // Many extensions and watchers: the per-watcher cap alone cannot stop it.
            subscribe(local, engine, 7000 + n % 500, 20_000 + n, &format!("a{n}")).into_bytes()
        } else {
            report.sent_garbage += 1;
            garbage[i % garbage.len()].clone()
        };
        if socket.send_to(&bytes, engine).await.is_err() {
            // A full socket buffer: the flood goes on.
            tokio::task::yield_now().await;
        }
        if i % 256 == 0 {
            read_answers(&socket, &mut report);
            tokio::task::yield_now().await;
        }
    }
    report.took = started.elapsed();
    let linger = Instant::now() + Duration::from_secs(2);
    while Instant::now() < linger {
        read_answers(&socket, &mut report);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(report)
}

/// One legitimate watcher on source B: SUBSCRIBEs (retransmitted while unanswered) to `ext`,
/// answers every NOTIFY, and returns whether it was told Away before `deadline`.
async fn watcher(engine: SocketAddr, ext: u32, deadline: Instant) -> Result<bool, String> {
    let socket = UdpSocket::bind(SocketAddr::new(LEGIT, 0))
        .await
        .map_err(|e| e.to_string())?;
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let request = subscribe(
        local,
        engine,
        ext,
        9000 + (ext - CALLER_BASE),
        &format!("b{ext}"),
    );
    let mut subscribed = false;
    let mut resend = Instant::now();
    let mut tries = 0;
    let mut buf = vec![0u8; 16 * 1024];
    while Instant::now() < deadline {
        if !subscribed && Instant::now() >= resend && tries < 10 {
            tries += 1;
            let _ = socket.send_to(request.as_bytes(), engine).await;
            resend = Instant::now() + Duration::from_millis(500);
        }
        let wait = tokio::time::timeout(Duration::from_millis(100), socket.recv_from(&mut buf));
        let Ok(Ok((len, from))) = wait.await else {
            continue;
        };
        let Some(m) = Message::parse(buf.get(..len).unwrap_or_default()) else {
            continue;
        };
        if m.cseq().map(|c| c.1) == Some("SUBSCRIBE") && m.status().is_some_and(|s| s >= 200) {
            // A 503 here would be a limit hitting source B: try again after Retry-After.
            subscribed = m.status() == Some(200);
            if !subscribed {
                resend = Instant::now() + Duration::from_secs(1);
            }
        }
        if m.start.starts_with("NOTIFY") {
            let _ = socket.send_to(m.ok().as_bytes(), from).await;
            if m.body.contains("away/>") {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// One legitimate feature-code call on source B: INVITE, ACK, INFO 3 (Away), INFO 1 (confirm),
/// then the engine's BYE. Requests are retransmitted like a phone would (every 500 ms, up to
/// 7 times; after a 503, again after its Retry-After). Returns whether every step worked.
async fn call(engine: SocketAddr, index: usize, deadline: Instant) -> Result<bool, String> {
    let socket = UdpSocket::bind(SocketAddr::new(LEGIT, 0))
        .await
        .map_err(|e| e.to_string())?;
    // Where the engine's RTP goes; never read (its buffer just fills).
    let rtp = UdpSocket::bind(SocketAddr::new(LEGIT, 0))
        .await
        .map_err(|e| e.to_string())?;
    let rtp_port = rtp.local_addr().map_err(|e| e.to_string())?.port();
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let caller = CALLER_BASE + index as u32;
    let call_id = format!("call-{index}-{}@flood", std::process::id());
    let sdp = format!(
        "v=0\r\no=flood 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-15\r\na=ptime:20\r\n"
    );
    let invite = format!(
        "INVITE sip:*46@{engine} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-inv{index};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{caller}@127.0.0.1>;tag=c{index}\r\nTo: <sip:*46@{engine}>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:{caller}@{local}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    let mut buf = vec![0u8; 16 * 1024];
    let Some(ok) = transact(&socket, engine, &invite, "INVITE", deadline, &mut buf).await else {
        return Ok(false);
    };
    let (tag, target) = {
        let Some(m) = Message::parse(&ok) else {
            return Ok(false);
        };
        let contact = m.header("Contact", "m").unwrap_or_default();
        let target = contact
            .trim_start_matches('<')
            .split('>')
            .next()
            .unwrap_or_default()
            .to_string();
        (m.to_tag().unwrap_or_default().to_string(), target)
    };
    let in_dialog = |method: &str, cseq: u32, extra: &str, body: &str| {
        format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{method}{index}-{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{caller}@127.0.0.1>;tag=c{index}\r\n\
             To: <sip:*46@{engine}>;tag={tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
             {extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let ack = in_dialog("ACK", 1, "", "");
    let _ = socket.send_to(ack.as_bytes(), engine).await;
    for (cseq, key) in [(2, 3), (3, 1)] {
        let info = in_dialog(
            "INFO",
            cseq,
            "Content-Type: application/dtmf-relay\r\n",
            &format!("Signal={key}\r\nDuration=160\r\n"),
        );
        if transact(&socket, engine, &info, "INFO", deadline, &mut buf)
            .await
            .is_none()
        {
            return Ok(false);
        }
        // The confirm prompt starts; the next key barges in.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The engine says "saved", "goodbye" and hangs up.
    while Instant::now() < deadline {
        let wait = tokio::time::timeout(Duration::from_millis(200), socket.recv_from(&mut buf));
        let Ok(Ok((len, from))) = wait.await else {
            continue;
        };
        let Some(m) = Message::parse(buf.get(..len).unwrap_or_default()) else {
            continue;
        };
        if m.start.starts_with("BYE") {
            let _ = socket.send_to(m.ok().as_bytes(), from).await;
            return Ok(true);
        }
        if m.status() == Some(200) && m.cseq().map(|c| c.1) == Some("INVITE") {
            // Our ACK was lost in the flood: the 200 came again.
            let _ = socket.send_to(ack.as_bytes(), engine).await;
        }
    }
    Ok(false)
}

/// Sends a request until its final response; returns a 2xx, or None on an error or timeout.
async fn transact(
    socket: &UdpSocket,
    engine: SocketAddr,
    request: &str,
    method: &str,
    deadline: Instant,
    buf: &mut [u8],
) -> Option<Vec<u8>> {
    let mut tries = 0;
    let mut resend = Instant::now();
    while Instant::now() < deadline && tries <= 20 {
        if Instant::now() >= resend {
            tries += 1;
            let _ = socket.send_to(request.as_bytes(), engine).await;
            resend = Instant::now() + Duration::from_millis(500);
        }
        let wait = tokio::time::timeout(Duration::from_millis(50), socket.recv_from(buf));
        let Ok(Ok((len, _))) = wait.await else {
            continue;
        };
        let bytes = buf.get(..len)?.to_vec();
        let m = Message::parse(&bytes)?;
        let status = match m.status() {
            Some(s) if m.cseq().map(|c| c.1) == Some(method) => s,
            _ => continue,
        };
        match status {
            100..=199 => resend = Instant::now() + Duration::from_secs(5),
            200..=299 => return Some(bytes),
            503 => {
                // A limit hit source B: a phone waits Retry-After and tries again.
                let secs = m
                    .header("Retry-After", "Retry-After")
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(1);
                resend = Instant::now() + Duration::from_secs(secs);
            }
            _ => return None,
        }
    }
    None
}

/// The engine under test, trusting both sources, with its default `[limits]`; its JSON log at
/// info level says what it kept and refused.
fn start_engine(binary: &std::path::Path) -> Result<Engine, String> {
    let configured = Configured::new(100, "trusted_peers = [\"127.0.0.0/8\"]\n")?;
    let launch = Launch {
        global_args: &["--log-format", "json"],
        rust_log: Some("info"),
        ready: Ready::Logged,
    };
    configured.start(binary, &launch)
}

/// A number from the engine's JSON shutdown line about the limits.
fn summary_field(log: &str, key: &str) -> Option<u64> {
    let line = log.lines().find(|l| l.contains("stopped; abuse limits"))?;
    let at = line.find(&format!("\"{key}\":"))? + key.len() + 3;
    line.get(at..)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// What B got: calls that saved Away, and watchers told so.
struct Legit {
    calls_ok: usize,
    watchers_told: usize,
}

async fn run(settings: &Settings, engine: &Engine) -> Result<(FloodReport, Legit), String> {
    let deadline = Instant::now() + Duration::from_secs(90);
    let watchers: Vec<_> = (0..settings.calls)
        .map(|i| tokio::spawn(watcher(engine.sip, CALLER_BASE + i as u32, deadline)))
        .collect();
    // The watchers subscribe before the flood; the calls start once it is under way.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let flood_settings = *settings;
    let sip = engine.sip;
    let flooder = tokio::spawn(async move { flood(sip, &flood_settings).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let calls: Vec<_> = (0..settings.calls)
        .map(|i| tokio::spawn(call(engine.sip, i, deadline)))
        .collect();
    let mut calls_ok = 0;
    for c in calls {
        if matches!(c.await, Ok(Ok(true))) {
            calls_ok += 1;
        }
    }
    let mut watchers_told = 0;
    for w in watchers {
        if matches!(w.await, Ok(Ok(true))) {
            watchers_told += 1;
        }
    }
    let report = flooder.await.map_err(|e| e.to_string())??;
    Ok((
        report,
        Legit {
            calls_ok,
            watchers_told,
        },
    ))
}

fn main() {
    let settings = Settings::from_args();
    let binary = bench_engine::engine_binary(Some("FLOOD_ENGINE"));
    let mut engine = match start_engine(&binary) {
        Ok(engine) => engine,
        Err(error) => {
            eprintln!("flood: {error}");
            std::process::exit(1);
        }
    };
    std::thread::sleep(Duration::from_millis(300));
    let idle_hwm = engine.memory_kib("VmHWM");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("flood: no tokio runtime: {error}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(run(&settings, &engine));
    runtime.shutdown_background();
    let peak_hwm = engine.memory_kib("VmHWM");
    let rss_after = engine.memory_kib("VmRSS");
    engine.stop();
    let log = engine.log();
    if let Some(keep) = std::env::var_os("FLOOD_ENGINE_LOG") {
        let _ = std::fs::write(&keep, &log);
    }
    let (flood, legit) = match result {
        Ok(r) => r,
        Err(error) => {
            eprintln!("flood: {error}");
            std::process::exit(1);
        }
    };
    let warn_lines = log
        .lines()
        .filter(|l| l.contains("\"WARN\"") || l.contains("\"ERROR\""))
        .count();
    // The engine's own count of what it kept: subscriptions created (B's watchers included).
    let created = log
        .lines()
        .filter(|l| l.contains("subscription created"))
        .count();
    println!(
        "flood: engine {} ({})",
        binary.display(),
        if settings.smoke { "smoke" } else { "bench" }
    );
    println!(
        "source A {FLOODER}: {} garbage + {} SUBSCRIBEs sent in {:.2} s; got back {} x 503, {} x 200, {} other, {} NOTIFYs",
        flood.sent_garbage,
        flood.sent_subscribes,
        flood.took.as_secs_f64(),
        flood.answers_503,
        flood.answers_200,
        flood.answers_other,
        flood.notifies
    );
    println!(
        "engine: {} subscriptions created ({} from B); limits refused_503={} dropped={} garbage={} (its shutdown summary)",
        created,
        settings.calls,
        summary_field(&log, "refused_503").unwrap_or(0),
        summary_field(&log, "dropped").unwrap_or(0),
        summary_field(&log, "garbage").unwrap_or(0),
    );
    println!(
        "source B {LEGIT}: calls saved Away {}/{}; watchers told {}/{}",
        legit.calls_ok, settings.calls, legit.watchers_told, settings.calls
    );
    println!(
        "engine memory: peak resident (VmHWM) idle {} KiB, after the flood {} KiB (+{} KiB); resident at the end {} KiB",
        idle_hwm,
        peak_hwm,
        peak_hwm.saturating_sub(idle_hwm),
        rss_after
    );
    println!("engine log: {warn_lines} WARN lines");
    if legit.calls_ok < settings.calls || legit.watchers_told < settings.calls {
        eprintln!("flood: a legitimate call or watcher was not served");
        std::process::exit(1);
    }
}
