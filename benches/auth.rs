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
//! The bench is the client: it computes its answers with `sha2` itself.
//!
//! Run: `benches/auth.sh [PHONES=16] [CYCLES=40] [ROUNDS=5]`, or
//! `cargo bench --bench auth -- PHONES CYCLES ROUNDS`. Under `cargo test` it runs a small smoke
//! round (2 phones, 3 cycles, debug engine) that fails only when a cycle did not complete.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::net::UdpSocket;

#[path = "../tests/support/peer.rs"]
mod peer;
use peer::Message;

/// The trusted source (the PBX).
const TRUSTED: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
/// The untrusted source, whose phones authenticate.
const UNTRUSTED: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// Phone `i` is extension `PHONE_BASE + i`.
const PHONE_BASE: usize = 7000;
/// The extension every subscription watches.
const WATCHED: &str = "6999";
/// The digest realm (the engine's default `sip.realm`).
const REALM: &str = "starcode";

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
        let args: Vec<String> = std::env::args().skip(1).collect();
        let numbers: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
        if !args.iter().any(|a| a == "--bench") {
            return Settings {
                phones: 2,
                cycles: 3,
                rounds: 1,
                smoke: true,
            };
        }
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

fn hex_sha256(data: &str) -> String {
    Sha256::digest(data.as_bytes())
        .iter()
        .fold(String::with_capacity(64), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// The SHA-256 challenge of a 401: nonce and opaque (RFC 7616 §3.3).
struct Challenge {
    nonce: String,
    opaque: Option<String>,
}

impl Challenge {
    /// The SHA-256 one of a 401's challenges, if it has one.
    fn sha256(msg: &Message) -> Option<Challenge> {
        msg.all("WWW-Authenticate", "WWW-Authenticate")
            .find(|v| param(v, "algorithm").is_some_and(|a| a.eq_ignore_ascii_case("SHA-256")))
            .and_then(|v| {
                Some(Challenge {
                    nonce: param(v, "nonce")?,
                    opaque: param(v, "opaque"),
                })
            })
    }

    /// `Authorization: ...` (with its line end) for `method` to `uri` as phone `index`.
    fn authorization(&self, index: usize, method: &str, uri: &str, nc: u32) -> String {
        let user = PHONE_BASE + index;
        let ha1 = hex_sha256(&format!("{user}:{REALM}:{}", secret_of(index)));
        let ha2 = hex_sha256(&format!("{method}:{uri}"));
        let nc = format!("{nc:08x}");
        let cnonce = format!("bench{index:x}{}", self.nonce.len());
        let response = hex_sha256(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", self.nonce));
        let opaque = self
            .opaque
            .as_ref()
            .map(|o| format!(", opaque=\"{o}\""))
            .unwrap_or_default();
        format!(
            "Authorization: Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{}\", \
             uri=\"{uri}\", response=\"{response}\", algorithm=SHA-256, qop=auth, nc={nc}, \
             cnonce=\"{cnonce}\"{opaque}\r\n",
            self.nonce
        )
    }
}

/// A parameter of a challenge (`name=value` or `name="value"`), found by name.
fn param(header: &str, name: &str) -> Option<String> {
    header
        .split(',')
        .map(|p| p.trim().trim_start_matches("Digest").trim())
        .find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().trim_matches('"').to_string())
        })
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

/// Which request [`Phone::authenticated`] sends: its dialog, CSeq, method and Request-URI.
#[derive(Clone, Copy)]
struct Outgoing<'a> {
    call_id: &'a str,
    cseq: u32,
    method: &'a str,
    uri: &'a str,
}

impl<'a> Outgoing<'a> {
    fn new(call_id: &'a str, cseq: u32, method: &'a str, uri: &'a str) -> Outgoing<'a> {
        Outgoing {
            call_id,
            cseq,
            method,
            uri,
        }
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

    /// Sends `request` (resent every 500 ms, up to 8 times) and returns the final response to
    /// it; NOTIFYs meanwhile are answered 200, provisionals and other answers skipped.
    async fn transact(
        &self,
        request: &str,
        call_id: &str,
        cseq: u32,
    ) -> Result<String, CycleError> {
        let method = request.split(' ').next().unwrap_or_default().to_string();
        let mut buf = vec![0u8; 16 * 1024];
        for _ in 0..8 {
            self.socket
                .send_to(request.as_bytes(), self.engine)
                .await
                .map_err(|e| e.to_string())?;
            let retry = tokio::time::Instant::now() + Duration::from_millis(500);
            while let Ok(received) =
                tokio::time::timeout_at(retry, self.socket.recv_from(&mut buf)).await
            {
                let Ok((len, from)) = received else { continue };
                let Some(msg) = buf.get(..len).and_then(Message::parse) else {
                    continue;
                };
                if msg.start.starts_with("NOTIFY ") {
                    let _ = self.socket.send_to(msg.ok().as_bytes(), from).await;
                    continue;
                }
                let ours = msg.header("Call-ID", "i") == Some(call_id)
                    && msg.cseq() == Some((cseq, method.as_str()));
                if ours && msg.status().is_some_and(|c| c >= 200) {
                    return Ok(String::from_utf8_lossy(&buf[..len]).into_owned());
                }
            }
        }
        Err(format!("{method} {cseq} never answered"))
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
        let Outgoing {
            call_id,
            cseq,
            method,
            uri,
        } = req;
        let auth = match pre {
            Some((ch, nc)) if self.digest => ch.authorization(self.index, method, uri, nc),
            _ => String::new(),
        };
        let first = self.transact(&build(cseq, &auth), call_id, cseq).await?;
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
        let challenge = Challenge::sha256(&msg).ok_or("a 401 without a SHA-256 challenge")?;
        let auth = challenge.authorization(self.index, method, uri, 1);
        let again = self
            .transact(&build(cseq + 1, &auth), call_id, cseq + 1)
            .await?;
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
            .authenticated(
                Outgoing::new(&call_id, 1, "INVITE", &uri),
                None,
                &invite,
                &ack_401,
            )
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
            .authenticated(
                Outgoing::new(&call_id, cseq + 1, "BYE", &target),
                pre,
                &bye,
                &|_| None,
            )
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
            .authenticated(
                Outgoing::new(&call_id, 1, "SUBSCRIBE", &uri),
                None,
                &first,
                &|_| None,
            )
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
                Outgoing::new(&call_id, cseq + 1, "SUBSCRIBE", &uri),
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

/// The engine under test; stopped by its PID when dropped, also on a panic.
struct Engine {
    child: Child,
    dir: tempfile::TempDir,
    sip: SocketAddr,
}

impl Engine {
    fn start(binary: &Path, phones: usize) -> Result<Engine, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = peer::free_port();
        let rtp = 40_000 + (peer::free_port() % 10_000) / 100 * 100;
        let root = env!("CARGO_MANIFEST_DIR");
        // Limits out of the way (both sources exempt, many calls): the bench measures the
        // cost of digest, not the abuse limits.
        let config = format!(
            "[prompts]\ndir = \"{root}/prompts\"\n\
             [store]\npath = \"{}/presence.db\"\n\
             [media]\nrtp_ports = \"{rtp}-{}\"\n\
             [sip]\nlisten = [\"udp:127.0.0.1:{port}\"]\ntrusted_peers = [\"127.0.0.1/32\"]\n\
             auth = \"untrusted\"\n\
             [limits]\nexempt = [\"127.0.0.0/8\"]\nmax_calls = 20000\nmax_calls_per_source = 20000\n\
             max_subscriptions_per_watcher = 10000\n\
             [limits.auth]\nfailures_per_source = 10000\nfailures_per_extension = 10000\n",
            dir.path().display(),
            rtp + 1999
        );
        let config_path = dir.path().join("starcode.toml");
        std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
        // The phones' accounts, from a CSV as an admin would load them.
        let mut csv = String::from("extension,name,secret\n");
        for i in 0..phones {
            let _ = writeln!(csv, "{},Bench phone {i},{}", PHONE_BASE + i, secret_of(i));
        }
        let csv_path = dir.path().join("phones.csv");
        std::fs::write(&csv_path, csv).map_err(|e| e.to_string())?;
        let import = Command::new(binary)
            .args(["ext", "--config"])
            .arg(&config_path)
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
        let log =
            std::fs::File::create(dir.path().join("engine.log")).map_err(|e| e.to_string())?;
        let child = Command::new(binary)
            .args(["run", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let mut engine = Engine {
            child,
            dir,
            sip: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        // Ready when it answers an OPTIONS (the log is at warn level).
        let deadline = Instant::now() + Duration::from_secs(60);
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        probe
            .set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        let me = probe.local_addr().map_err(|e| e.to_string())?;
        let options = format!(
            "OPTIONS sip:starcode@{} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKready;rport\r\n\
             From: <sip:bench@127.0.0.1>;tag=r\r\nTo: <sip:starcode@127.0.0.1>\r\nCall-ID: ready@bench\r\n\
             CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            engine.sip
        );
        let mut buf = [0u8; 4096];
        loop {
            if Instant::now() > deadline || engine.child.try_wait().ok().flatten().is_some() {
                return Err(format!("the engine did not start:\n{}", engine.log()));
            }
            let _ = probe.send_to(options.as_bytes(), engine.sip);
            if probe.recv(&mut buf).is_ok() {
                break;
            }
        }
        // Give the accounts loader its first pass.
        std::thread::sleep(Duration::from_millis(500));
        Ok(engine)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("engine.log")).unwrap_or_default()
    }

    /// CPU time the engine has used so far (utime + stime of /proc/PID/stat, in 1/100 s).
    fn cpu(&self) -> Duration {
        let text =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // The fields after the command name (in parentheses, which may hold spaces).
        let fields: Vec<&str> = text
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|i| fields.get(*i).and_then(|f| f.parse::<u64>().ok()))
            .sum();
        Duration::from_millis(ticks * 10)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        peer::stop_child(&mut self.child, Duration::from_secs(5));
    }
}

/// The engine binary: the one Cargo built for this bench (release under `cargo bench`).
fn engine_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_starcode"))
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
    let binary = engine_binary();
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let engine = match Engine::start(&binary, settings.phones) {
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
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
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
