//! What SIP digest costs (issue 10, item 6). One release engine on loopback, with accounts for
//! the bench's phones, trusts 127.0.0.1 and makes everyone else authenticate. In the same run,
//! round after round, the same phones make feature-code calls and subscriptions from the
//! trusted source (127.0.0.1, no challenge) and from an untrusted one (127.0.0.2, answering a
//! SHA-256 challenge the way phones do):
//! - a call: INVITE -> 200 -> ACK -> BYE -> 200, no IVR wait (hung up as soon as answered);
//!   with digest the INVITE first gets 401 (ACKed) and is sent again with an Authorization,
//!   and the BYE carries one for the same nonce (nc=2), as phones pre-authenticate;
//! - a subscription: SUBSCRIBE -> 200 + NOTIFY (answered), then an unsubscribe (Expires 0)
//!   -> 200 + the final NOTIFY (answered); with digest the first SUBSCRIBE gets 401 and the
//!   unsubscribe is pre-authenticated (nc=2).
//!
//! Each phone is a task on its own UDP socket; each phase runs every phone through its cycles
//! back to back and reports cycles per second and the engine's CPU time per cycle (from
//! /proc, so the bench's own CPU on the same cores is not counted); the figures are medians over
//! the rounds and the ratio digest/trusted. Measured, never asserted. Every phase is bounded in
//! count and time.
//! The bench is the client: it answers with the harnesses' digest client
//! (`tests/support/digest_client.rs`, checked against the RFCs' examples).
//!
//! Run: `benches/auth.sh [PHONES=16] [CYCLES=40] [ROUNDS=5]`, or
//! `cargo bench --bench auth -- PHONES CYCLES ROUNDS`. Under `cargo test` it runs a small smoke
//! round (2 phones, 3 cycles, debug engine) that fails only when a cycle did not complete.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use starcode::accounts::DigestAlgorithm;
use tokio::net::UdpSocket;

#[path = "../tests/support/peer.rs"]
mod peer;
use peer::Message;
#[path = "../tests/support/bench_engine.rs"]
mod bench_engine;
use bench_engine::{Configured, Engine, Launch, Ready};
#[path = "../tests/support/digest_client.rs"]
mod digest_client;
use digest_client::Challenge;

/// The trusted source (the PBX).
const TRUSTED: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
/// The untrusted source, whose phones authenticate.
const UNTRUSTED: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// Phone `i` is extension `PHONE_BASE + i`.
const PHONE_BASE: usize = 7000;
/// The extension every subscription watches.
const WATCHED: &str = "6999";

/// What one run does; from the command line under `cargo bench`, small under `cargo test`.
#[derive(Debug, Clone, Copy)]
struct Settings {
    phones: usize,
    cycles: usize,
    rounds: usize,
    smoke: bool,
}

impl Settings {
    fn from_args() -> Settings {
        let Some(numbers) = bench_engine::bench_numbers() else {
            return Settings {
                phones: 2,
                cycles: 3,
                rounds: 1,
                smoke: true,
            };
        };
        Settings {
            phones: numbers.first().copied().unwrap_or(16).clamp(1, 500),
            cycles: numbers.get(1).copied().unwrap_or(40).clamp(1, 10_000),
            rounds: numbers.get(2).copied().unwrap_or(5).clamp(1, 100),
            smoke: false,
        }
    }
}

/// Phone `index`'s digest secret (the bench's own accounts).
fn secret_of(index: usize) -> String {
    format!("bench-secret-{index}-pw")
}

/// One phone: its socket (on the trusted or the untrusted address), a discard socket for the
/// engine's RTP, and counters that make every branch, tag and Call-ID unique.
struct Phone {
    index: usize,
    socket: UdpSocket,
    media_port: u16,
    _media: UdpSocket,
    engine: SocketAddr,
    digest: bool,
    run: String,
    next: u64,
}

/// Which request [`Phone::authenticated`] sends: its CSeq, method and Request-URI.
#[derive(Clone, Copy)]
struct Outgoing<'a> {
    cseq: u32,
    method: &'a str,
    uri: &'a str,
}

impl<'a> Outgoing<'a> {
    fn new(cseq: u32, method: &'a str, uri: &'a str) -> Outgoing<'a> {
        Outgoing { cseq, method, uri }
    }
}

/// Why a cycle did not complete.
type CycleError = String;

impl Phone {
    async fn new(
        index: usize,
        source: IpAddr,
        engine: SocketAddr,
        run: &str,
    ) -> Result<Phone, String> {
        let socket = UdpSocket::bind((source, 0))
            .await
            .map_err(|e| format!("bind {source}: {e}"))?;
        let media = UdpSocket::bind((source, 0))
            .await
            .map_err(|e| format!("bind {source}: {e}"))?;
        let media_port = media.local_addr().map_err(|e| e.to_string())?.port();
        Ok(Phone {
            index,
            socket,
            media_port,
            _media: media,
            engine,
            digest: source != TRUSTED,
            run: run.to_string(),
            next: 0,
        })
    }

    fn unique(&mut self) -> String {
        self.next += 1;
        format!(
            "{}-{}-{}-{}",
            self.run, self.digest as u8, self.index, self.next
        )
    }

    fn local(&self) -> Result<SocketAddr, CycleError> {
        self.socket.local_addr().map_err(|e| e.to_string())
    }

    /// Sends `request` and returns the final response to it (see [`peer::transact`]).
    async fn transact(&self, request: &str) -> Result<String, CycleError> {
        let answer = peer::transact(&self.socket, self.engine, request).await?;
        Ok(String::from_utf8_lossy(&answer).into_owned())
    }

    /// `Authorization: ...` (with its line end) answering `challenge` for `method` to `uri`.
    fn authorization(&self, challenge: &Challenge, method: &str, uri: &str, nc: u32) -> String {
        let user = (PHONE_BASE + self.index).to_string();
        let cnonce = format!("bench{:x}{}", self.index, challenge.nonce.len());
        let (value, _) = challenge.answer(&user, &secret_of(self.index), method, uri, nc, &cnonce);
        format!("Authorization: {value}\r\n")
    }

    /// Waits (bounded) for the NOTIFY of `call_id` whose Subscription-State starts with
    /// `state`, answering every NOTIFY.
    async fn notified(&self, call_id: &str, state: &str) -> Result<(), CycleError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(received) =
            tokio::time::timeout_at(deadline, self.socket.recv_from(&mut buf)).await
        {
            let Ok((len, from)) = received else { continue };
            let Some(msg) = buf.get(..len).and_then(Message::parse) else {
                continue;
            };
            if !msg.start.starts_with("NOTIFY ") {
                continue;
            }
            let _ = self.socket.send_to(msg.ok().as_bytes(), from).await;
            let state_ok = msg
                .header("Subscription-State", "Subscription-State")
                .is_some_and(|s| s.starts_with(state));
            if msg.header("Call-ID", "i") == Some(call_id) && state_ok {
                return Ok(());
            }
        }
        Err(format!("no {state} NOTIFY"))
    }

    /// Sends the request `req` names, built by `build(cseq, authorization)`; with digest,
    /// answers a 401 once (with a fresh Authorization, CSeq + 1) after `ack_401` ACKs it.
    /// Returns the final response, the CSeq it answered and the challenge used (if any).
    async fn authenticated(
        &self,
        req: Outgoing<'_>,
        pre: Option<(&Challenge, u32)>,
        build: &(dyn Fn(u32, &str) -> String + Sync),
        ack_401: &(dyn Fn(&Message) -> Option<String> + Sync),
    ) -> Result<(String, u32, Option<Challenge>), CycleError> {
        let Outgoing { cseq, method, uri } = req;
        let auth = match pre {
            Some((ch, nc)) if self.digest => self.authorization(ch, method, uri, nc),
            _ => String::new(),
        };
        let first = self.transact(&build(cseq, &auth)).await?;
        let msg = Message::parse(first.as_bytes()).ok_or("unreadable answer")?;
        if msg.status() != Some(401) || !self.digest {
            return Ok((first, cseq, None));
        }
        if let Some(ack) = ack_401(&msg) {
            self.socket
                .send_to(ack.as_bytes(), self.engine)
                .await
                .map_err(|e| e.to_string())?;
        }
        let challenge = Challenge::offered(&msg, DigestAlgorithm::Sha256)
            .ok_or("a 401 without a SHA-256 challenge")?;
        let auth = self.authorization(&challenge, method, uri, 1);
        let again = self.transact(&build(cseq + 1, &auth)).await?;
        Ok((again, cseq + 1, Some(challenge)))
    }

    /// One feature-code call: INVITE (401 answered), 200, ACK, BYE, 200.
    async fn call(&mut self) -> Result<(), CycleError> {
        let id = self.unique();
        let local = self.local()?;
        let engine = self.engine;
        let user = PHONE_BASE + self.index;
        let call_id = format!("call-{id}@bench");
        let uri = format!("sip:*46@{engine}");
        let from = format!("<sip:{user}@{}>;tag=f{id}", local.ip());
        let media = self.media_port;
        let sdp = format!(
            "v=0\r\no=bench 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
             m=audio {media} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\n",
            ip = local.ip()
        );
        let invite = |cseq: u32, auth: &str| {
            format!(
                "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-i{cseq}-{id};rport\r\n\
                 Max-Forwards: 70\r\nFrom: {from}\r\nTo: <{uri}>\r\nCall-ID: {call_id}\r\n\
                 CSeq: {cseq} INVITE\r\nContact: <sip:{user}@{local}>\r\n{auth}\
                 Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            )
        };
        // The ACK of a 401: the INVITE's branch and CSeq number, the 401's To.
        let ack_401 = |msg: &Message| {
            let to = msg.header("To", "t")?;
            let (cseq, _) = msg.cseq()?;
            Some(format!(
                "ACK {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-i{cseq}-{id};rport\r\n\
                 Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
                 CSeq: {cseq} ACK\r\nContent-Length: 0\r\n\r\n"
            ))
        };
        let (answer, cseq, challenge) = self
            .authenticated(Outgoing::new(1, "INVITE", &uri), None, &invite, &ack_401)
            .await?;
        let msg = Message::parse(answer.as_bytes()).ok_or("unreadable answer")?;
        if msg.status() != Some(200) {
            return Err(format!("INVITE answered {:?}", msg.status()));
        }
        let to = msg.header("To", "t").ok_or("200 without To")?.to_string();
        // The remote target: the 200's Contact, else the engine.
        let target = msg
            .header("Contact", "m")
            .and_then(|c| c.split('<').nth(1)?.split('>').next())
            .map(str::to_string)
            .unwrap_or_else(|| uri.clone());
        let ack = format!(
            "ACK {target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-a{cseq}-{id};rport\r\n\
             Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
             CSeq: {cseq} ACK\r\nContent-Length: 0\r\n\r\n"
        );
        self.socket
            .send_to(ack.as_bytes(), engine)
            .await
            .map_err(|e| e.to_string())?;
        let bye = |cseq: u32, auth: &str| {
            format!(
                "BYE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-b{cseq}-{id};rport\r\n\
                 Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
                 CSeq: {cseq} BYE\r\n{auth}Content-Length: 0\r\n\r\n"
            )
        };
        let pre = challenge.as_ref().map(|c| (c, 2));
        let (answer, _, _) = self
            .authenticated(Outgoing::new(cseq + 1, "BYE", &target), pre, &bye, &|_| {
                None
            })
            .await?;
        match Message::parse(answer.as_bytes()).and_then(|m| m.status()) {
            Some(200) => Ok(()),
            other => Err(format!("BYE answered {other:?}")),
        }
    }

    /// One subscription: SUBSCRIBE (401 answered), 200 + NOTIFY, unsubscribe, 200 + NOTIFY.
    async fn subscription(&mut self) -> Result<(), CycleError> {
        let id = self.unique();
        let local = self.local()?;
        let engine = self.engine;
        let user = PHONE_BASE + self.index;
        let call_id = format!("sub-{id}@bench");
        let uri = format!("sip:{WATCHED}@{engine}");
        let from = format!("<sip:{user}@{}>;tag=f{id}", local.ip());
        let subscribe = |to: String, expires: u32| {
            let uri = uri.clone();
            let from = from.clone();
            let call_id = call_id.clone();
            let id = id.clone();
            move |cseq: u32, auth: &str| {
                format!(
                    "SUBSCRIBE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-s{cseq}-{id};rport\r\n\
                     Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
                     CSeq: {cseq} SUBSCRIBE\r\nContact: <sip:{user}@{local}>\r\n{auth}\
                     Event: presence\r\nAccept: application/pidf+xml\r\nExpires: {expires}\r\n\
                     Content-Length: 0\r\n\r\n"
                )
            }
        };
        let first = subscribe(format!("<{uri}>"), 600);
        let (answer, cseq, challenge) = self
            .authenticated(Outgoing::new(1, "SUBSCRIBE", &uri), None, &first, &|_| None)
            .await?;
        let msg = Message::parse(answer.as_bytes()).ok_or("unreadable answer")?;
        if msg.status() != Some(200) {
            return Err(format!("SUBSCRIBE answered {:?}", msg.status()));
        }
        let to = msg.header("To", "t").ok_or("200 without To")?.to_string();
        self.notified(&call_id, "active").await?;
        // Unsubscribe in the dialog, to the engine (it routes by dialog).
        let last = subscribe(to, 0);
        let pre = challenge.as_ref().map(|c| (c, 2));
        let (answer, _, _) = self
            .authenticated(
                Outgoing::new(cseq + 1, "SUBSCRIBE", &uri),
                pre,
                &last,
                &|_| None,
            )
            .await?;
        match Message::parse(answer.as_bytes()).and_then(|m| m.status()) {
            Some(200..=299) => self.notified(&call_id, "terminated").await,
            other => Err(format!("unsubscribe answered {other:?}")),
        }
    }
}

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Calls,
    Subscriptions,
}

/// One phase: every phone runs `cycles` of `kind` back to back; cycles per second.
struct Phase {
    rate: f64,
    done: usize,
    failures: Vec<String>,
}

async fn phase(phones: &mut Vec<Phone>, kind: Kind, cycles: usize) -> Phase {
    let started = Instant::now();
    let limit = Duration::from_secs(120);
    let tasks: Vec<_> = std::mem::take(phones)
        .into_iter()
        .map(|mut phone| {
            tokio::spawn(async move {
                let mut done = 0;
                let mut failures = Vec::new();
                let deadline = Instant::now() + limit;
                for _ in 0..cycles {
                    if Instant::now() > deadline {
                        failures.push("phase time limit".to_string());
                        break;
                    }
                    let result = match kind {
                        Kind::Calls => phone.call().await,
                        Kind::Subscriptions => phone.subscription().await,
                    };
                    match result {
                        Ok(()) => done += 1,
                        Err(e) => failures.push(e),
                    }
                }
                (phone, done, failures)
            })
        })
        .collect();
    let mut done = 0;
    let mut failures = Vec::new();
    for task in tasks {
        if let Ok((phone, d, f)) = task.await {
            phones.push(phone);
            done += d;
            failures.extend(f);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    Phase {
        rate: if elapsed > 0.0 {
            done as f64 / elapsed
        } else {
            0.0
        },
        done,
        failures,
    }
}

/// The engine under test, with an account for each of `phones`; trusts 127.0.0.1 only.
fn start_engine(binary: &Path, phones: usize) -> Result<Engine, String> {
    // Limits out of the way (both sources exempt, many calls): the bench measures the cost of
    // digest, not the abuse limits.
    let configured = Configured::new(
        2000,
        "trusted_peers = [\"127.0.0.1/32\"]\nauth = \"untrusted\"\n\
         [limits]\nexempt = [\"127.0.0.0/8\"]\nmax_calls = 20000\nmax_calls_per_source = 20000\n\
         max_subscriptions_per_watcher = 10000\n\
         [limits.auth]\nfailures_per_source = 10000\nfailures_per_extension = 10000\n",
    )?;
    // The phones' accounts, from a CSV as an admin would load them.
    let mut csv = String::from("extension,name,secret\n");
    for i in 0..phones {
        let _ = writeln!(csv, "{},Bench phone {i},{}", PHONE_BASE + i, secret_of(i));
    }
    let csv_path = configured.file("phones.csv");
    std::fs::write(&csv_path, csv).map_err(|e| e.to_string())?;
    let import = Command::new(binary)
        .args(["ext", "--config"])
        .arg(configured.config_path())
        .arg("import")
        .arg(&csv_path)
        .output()
        .map_err(|e| format!("starcode ext import: {e}"))?;
    if !import.status.success() {
        return Err(format!(
            "starcode ext import: {}",
            String::from_utf8_lossy(&import.stderr)
        ));
    }
    // Ready when it answers an OPTIONS: the log is at warn level.
    let launch = Launch {
        global_args: &[],
        rust_log: Some("warn"),
        ready: Ready::AnswersOptions,
    };
    let engine = configured.start(binary, &launch)?;
    // Give the accounts loader its first pass.
    std::thread::sleep(Duration::from_millis(500));
    Ok(engine)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn main() {
    let settings = Settings::from_args();
    let binary = bench_engine::engine_binary(None);
    let load_before = bench_engine::load_average();
    let engine = match start_engine(&binary, settings.phones) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("auth bench: {e}");
            std::process::exit(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("auth bench: tokio: {e}");
            std::process::exit(1);
        }
    };
    let run = format!("{:x}", std::process::id());
    // Per kind and source: rates and engine CPU ms per cycle, per round; cycles completed;
    // failures.
    type Results = Vec<(Kind, bool, Vec<f64>, Vec<f64>, usize, Vec<String>)>;
    let outcome: Result<Results, String> = runtime.block_on(async {
        let mut trusted = Vec::new();
        let mut untrusted = Vec::new();
        for i in 0..settings.phones {
            trusted.push(Phone::new(i, TRUSTED, engine.sip, &run).await?);
            untrusted.push(Phone::new(i, UNTRUSTED, engine.sip, &run).await?);
        }
        let mut results = Vec::new();
        for kind in [Kind::Calls, Kind::Subscriptions] {
            for digest in [false, true] {
                results.push((kind, digest, Vec::new(), Vec::new(), 0, Vec::new()));
            }
        }
        // A warm-up cycle each (not counted), then the rounds, kinds and sources
        // interleaved so that drift in the machine's load hits both alike.
        for kind in [Kind::Calls, Kind::Subscriptions] {
            phase(&mut trusted, kind, 1).await;
            phase(&mut untrusted, kind, 1).await;
        }
        for _ in 0..settings.rounds {
            for (kind, digest, rates, cpu, done, failures) in results.iter_mut() {
                let phones = if *digest {
                    &mut untrusted
                } else {
                    &mut trusted
                };
                let before = engine.cpu();
                let p = phase(phones, *kind, settings.cycles).await;
                let used = engine.cpu().saturating_sub(before);
                rates.push(p.rate);
                cpu.push(used.as_secs_f64() * 1e3 / p.done.max(1) as f64);
                *done += p.done;
                failures.extend(p.failures);
            }
        }
        Ok(results)
    });
    let results = match outcome {
        Ok(r) => r,
        Err(e) => {
            eprintln!("auth bench: {e}");
            std::process::exit(1);
        }
    };
    let version = Command::new(&binary)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!(
        "auth bench: {} ({}), {} phones x {} cycles per phase, {} rounds; load before: {}",
        version,
        binary.display(),
        settings.phones,
        settings.cycles,
        settings.rounds,
        load_before
    );
    println!(
        "{:<14} {:<26} {:>12} {:>16} {:>10} {:>9}",
        "", "source", "median /s", "engine CPU ms/op", "completed", "failed"
    );
    let mut medians = Vec::new();
    let mut failed_total = 0;
    for (kind, digest, mut rates, mut cpu, done, failures) in results {
        let m = median(&mut rates);
        let c = median(&mut cpu);
        let source = if digest {
            "127.0.0.2, SHA-256 digest"
        } else {
            "127.0.0.1, trusted"
        };
        println!(
            "{:<14} {:<26} {:>12.1} {:>16.3} {:>10} {:>9}",
            format!("{kind:?}"),
            source,
            m,
            c,
            done,
            failures.len()
        );
        if let Some(first) = failures.first() {
            println!("    first failure: {first}");
        }
        failed_total += failures.len();
        medians.push((kind, digest, m));
    }
    for kind in [Kind::Calls, Kind::Subscriptions] {
        let get = |d: bool| {
            medians
                .iter()
                .find(|(k, dg, _)| *k == kind && *dg == d)
                .map_or(f64::NAN, |m| m.2)
        };
        println!("{kind:?}: digest/trusted = {:.2}", get(true) / get(false));
    }
    let errors: Vec<String> = engine
        .log()
        .lines()
        .filter(|l| l.contains("ERROR"))
        .take(5)
        .map(str::to_string)
        .collect();
    if !errors.is_empty() {
        println!("engine errors:\n{}", errors.join("\n"));
    }
    if settings.smoke && failed_total > 0 {
        eprintln!("auth bench smoke run: {failed_total} cycles failed");
        std::process::exit(1);
    }
}
