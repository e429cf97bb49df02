//! What the harnesses' own SIP peers need (watchers, publishers, flooders and phones in
//! `tests/crash_safety.rs`, `benches/presence_fanout.rs`, `benches/flood.rs` and
//! `benches/auth.rs`): a light message reader and the `200 OK` a request gets, the status a
//! PIDF body shows, a request's exchange over UDP, free loopback ports, and stopping the
//! engine they started.
//! `tests/e2e.rs` takes its ports from here too.
//! Included by `#[path]`, so each harness uses only part of it.
#![allow(dead_code)]

use std::fmt::{Display, Write as _};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A SIP message split into start line, headers and body; enough for these peers.
pub struct Message<'a> {
    pub start: &'a str,
    pub headers: Vec<(&'a str, &'a str)>,
    pub body: &'a str,
}

impl<'a> Message<'a> {
    pub fn parse(bytes: &'a [u8]) -> Option<Message<'a>> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
        let mut lines = head.split("\r\n");
        let start = lines.next()?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim(), v.trim()))
            .collect();
        Some(Message {
            start,
            headers,
            body,
        })
    }

    /// Every value of a header, by full or compact name.
    pub fn all(&self, name: &'a str, compact: &'a str) -> impl Iterator<Item = &'a str> + '_ {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name) || n.eq_ignore_ascii_case(compact))
            .map(|(_, v)| *v)
    }

    pub fn header(&self, name: &'a str, compact: &'a str) -> Option<&'a str> {
        self.all(name, compact).next()
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        self.start
            .strip_prefix("SIP/2.0 ")?
            .get(..3)
            .and_then(|c| c.parse().ok())
    }

    pub fn cseq(&self) -> Option<(u32, &'a str)> {
        let (n, method) = self.header("CSeq", "CSeq")?.split_once(' ')?;
        Some((n.trim().parse().ok()?, method.trim()))
    }

    /// The top Via's branch.
    pub fn branch(&self) -> Option<&'a str> {
        let via = self.header("Via", "v")?;
        let at = via.find("branch=")? + "branch=".len();
        via.get(at..)?.split([';', ',', ' ']).next()
    }

    /// The To tag of a response.
    pub fn to_tag(&self) -> Option<&'a str> {
        let to = self.header("To", "t")?;
        Some(to.split("tag=").nth(1)?.split(';').next()?.trim())
    }

    /// The 200 OK that answers this request (RFC 3261 §8.2.6.2: Via, From, To, Call-ID, CSeq).
    pub fn ok(&self) -> String {
        let mut out = String::from("SIP/2.0 200 OK\r\n");
        for via in self.all("Via", "v") {
            let _ = write!(out, "Via: {via}\r\n");
        }
        for (name, compact) in [
            ("From", "f"),
            ("To", "t"),
            ("Call-ID", "i"),
            ("CSeq", "CSeq"),
        ] {
            if let Some(value) = self.header(name, compact) {
                let _ = write!(out, "{name}: {value}\r\n");
            }
        }
        out.push_str("Content-Length: 0\r\n\r\n");
        out
    }
}

/// A new presence SUBSCRIBE (CSeq 1, Expires 3600) from `watcher` at `local` to `ext` at
/// `engine`; `id`, unique per subscription, makes its branch, From tag and Call-ID.
pub fn subscribe(
    local: SocketAddr,
    engine: SocketAddr,
    ext: impl Display,
    watcher: impl Display,
    id: &str,
) -> String {
    format!(
        "SUBSCRIBE sip:{ext}@{engine} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-{id};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{watcher}@{local}>;tag=w-{id}\r\n\
         To: <sip:{ext}@{engine}>\r\n\
         Call-ID: {id}@127.0.0.1\r\n\
         CSeq: 1 SUBSCRIBE\r\n\
         Contact: <sip:{watcher}@{local}>\r\n\
         Event: presence\r\n\
         Accept: application/pidf+xml\r\n\
         Expires: 3600\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// The status a NOTIFY's PIDF body shows under the default mapping (RFC 3863 `basic`, then
/// the first RPID activity of RFC 4480): `available`, `away`, `dnd`, `unavailable`, or `other`.
pub fn shown(body: &str) -> &'static str {
    let basic = between(body, "<basic>", "</basic>").map(str::trim);
    let activity = body.find("activities>").and_then(|at| {
        let rest = body.get(at + "activities>".len()..)?.trim_start();
        let name = rest.strip_prefix('<')?;
        let end = name.find(['/', '>', ' '])?;
        let name = name.get(..end)?;
        Some(name.rsplit(':').next().unwrap_or(name))
    });
    match (basic, activity) {
        (Some("closed"), _) => "unavailable",
        (Some("open"), None) => "available",
        (Some("open"), Some("away")) => "away",
        (Some("open"), Some("busy")) => "dnd",
        _ => "other",
    }
}

/// The text between the first `open` and the `close` after it.
pub fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let len = text.get(start..)?.find(close)?;
    text.get(start..start + len)
}

/// Sends `request` from `socket` to `to` and returns the final response with its Call-ID and
/// CSeq, resending it every 500 ms (up to 8 times, as a phone's timer would) while unanswered.
/// NOTIFYs meanwhile are answered 200 so the peer's subscriptions stay; provisionals and
/// anything else are skipped.
pub async fn transact(
    socket: &tokio::net::UdpSocket,
    to: SocketAddr,
    request: &str,
) -> Result<Vec<u8>, String> {
    let sent = Message::parse(request.as_bytes()).ok_or("an unreadable request")?;
    let call_id = sent.header("Call-ID", "i");
    let cseq = sent.cseq().ok_or("a request without a CSeq")?;
    let mut buf = vec![0u8; 16 * 1024];
    for _ in 0..8 {
        socket
            .send_to(request.as_bytes(), to)
            .await
            .map_err(|e| e.to_string())?;
        let retry = tokio::time::Instant::now() + Duration::from_millis(500);
        while let Ok(received) = tokio::time::timeout_at(retry, socket.recv_from(&mut buf)).await {
            let Ok((len, from)) = received else { continue };
            let Some(msg) = buf.get(..len).and_then(Message::parse) else {
                continue;
            };
            if msg.start.starts_with("NOTIFY ") {
                let _ = socket.send_to(msg.ok().as_bytes(), from).await;
                continue;
            }
            let ours = msg.header("Call-ID", "i") == call_id && msg.cseq() == Some(cseq);
            if ours && msg.status().is_some_and(|c| c >= 200) {
                return Ok(buf[..len].to_vec());
            }
        }
    }
    Err(format!("{} {} never answered", cseq.1, cseq.0))
}

/// Stops a child by its PID: SIGTERM, up to `grace` for it to exit, then SIGKILL.
pub fn stop_child(child: &mut Child, grace: Duration) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The ports [`free_port`] hands out, one at a time: below the kernel's ephemeral range
/// (Linux's default is 32768-60999), so an outgoing connection (to PostgreSQL, a browser's, a
/// CLI's) can never take a port between the test checking it and the engine binding it. Both
/// happened in CI.
const TEST_PORTS: std::ops::Range<u32> = 12_000..16_000;

/// The media ports [`free_media_port`] hands out, four at a time (sipp's RTP, RTCP, and its
/// video pair), apart from [`TEST_PORTS`] so a media block never covers a SIP port.
const MEDIA_PORTS: std::ops::Range<u32> = 16_000..20_000;

/// A port free on loopback for UDP and for TCP alike (bound and released), from
/// [`TEST_PORTS`]: each call in a test process takes the next one (from a start that differs
/// per process), so two tests of one process never get the same port.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    take_ports(&NEXT, TEST_PORTS, 1, |port| {
        UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
    })
}

/// An even free port with the three above it free too (sipp's RTP and RTCP at +1, video at
/// +2 and +3), from [`MEDIA_PORTS`].
pub fn free_media_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    take_ports(&NEXT, MEDIA_PORTS, 4, |port| {
        (port..port + 4).all(|p| UdpSocket::bind(("127.0.0.1", p)).is_ok())
    })
}

/// The first block of `step` ports in `range` (from this process's next one) that `free`
/// accepts; its first port.
fn take_ports(
    next: &AtomicU32,
    range: std::ops::Range<u32>,
    step: u32,
    free: impl Fn(u16) -> bool,
) -> u16 {
    let blocks = (range.end - range.start) / step;
    let start = std::process::id().wrapping_mul(7919) % blocks;
    for _ in 0..blocks {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let Ok(port) = u16::try_from(range.start + (start + n) % blocks * step) else {
            continue;
        };
        if free(port) {
            return port;
        }
    }
    panic!("no {step} free port(s) in {range:?}")
}
