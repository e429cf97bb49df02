//! In-dialog requests routed by their dialog, and each dialog speaking from its own flow:
//! watchers that refresh and unsubscribe to our Contact (sipp, baresip, linphonec with a short
//! expiry), and watchers on raw sockets that check which of two listen addresses each NOTIFY
//! comes from, before and after a restart, over UDP and TCP.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use super::*;

impl Engine {
    /// An engine listening on UDP and TCP on the same free port of every address in `ips`;
    /// sipp runs against the first.
    fn start_on_each(ips: &[&str], extra_sip: &str) -> Engine {
        require_sipp();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let listen: Vec<String> = ips
            .iter()
            .map(|ip| match ip.contains(':') {
                true => format!("[{ip}]"),
                false => ip.to_string(),
            })
            .flat_map(|host| {
                [
                    format!("\"udp:{host}:{port}\""),
                    format!("\"tcp:{host}:{port}\""),
                ]
            })
            .collect();
        let rtp = 20_000 + (free_port() % 20_000) / 100 * 100;
        let root = env!("CARGO_MANIFEST_DIR");
        let config = format!(
            "[prompts]\ndir = \"{root}/prompts\"\n[store]\npath = \"{}/presence.db\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
             [media]\nrtp_ports = \"{rtp}-{}\"\n\
             [sip]\nlisten = [{}]\n{extra_sip}\n",
            dir.path().display(),
            rtp + 99,
            listen.join(", ")
        );
        std::fs::write(dir.path().join("starcode.toml"), config).unwrap();
        Engine::spawn(dir, port, ips[0])
    }

    /// Waits until `n` log lines contain every one of `needles`; panics with the log after
    /// `limit`.
    pub(crate) fn wait_for_logs(&mut self, needles: &[&str], n: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        let count = |lines: &[String]| {
            lines
                .iter()
                .filter(|l| needles.iter().all(|n| l.contains(n)))
                .count()
        };
        while count(&self.lines) < n {
            assert!(
                Instant::now() < deadline,
                "fewer than {n} log lines with {needles:?}; log:\n{}",
                self.lines.join("\n")
            );
            match self.log.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => self.lines.push(line),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("the engine exited; log:\n{}", self.lines.join("\n"))
                }
            }
        }
    }
}

/// Runs `starcode status set EXT ARGS` on `engine`'s database after `delay`, from a thread,
/// as an admin would while a watcher's sipp scenario runs.
fn set_later(
    engine: &Engine,
    delay: Duration,
    ext: &str,
    status: &str,
) -> std::thread::JoinHandle<()> {
    let db = engine.db();
    let (ext, status) = (ext.to_string(), status.to_string());
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        let out = Command::new(env!("CARGO_BIN_EXE_starcode"))
            .args(["status", "--db"])
            .arg(db)
            .args(["set", &ext, &status])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    })
}

fn sipp_refreshes_to_our_contact(transport: &str, ext: &str) {
    let mut engine = Engine::start("");
    let setter = set_later(&engine, Duration::from_secs(3), ext, "dnd");
    let out = engine.call(
        "watcher_refresh.xml",
        &[],
        &[("ext", ext), ("watcher", "2030")],
        transport,
    );
    setter.join().unwrap();
    assert!(
        out.status.success(),
        "both refreshes and the unsubscribe, sent to our Contact, got 200 and a NOTIFY"
    );
    engine.wait_for_logs(
        &["presence subscription", "\"new\":false"],
        2,
        Duration::from_secs(2),
    );
    engine.wait_for_log("unsubscribed", Duration::from_secs(2));
    // The stored record goes by the engine's ordered writer, a moment after the answer.
    let deadline = Instant::now() + Duration::from_secs(5);
    while engine.watchers(ext) != Some(serde_json::json!(0)) {
        assert!(
            Instant::now() < deadline,
            "the stored subscription is still there"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_sipp_watcher_refreshes_and_unsubscribes_to_our_contact() {
    sipp_refreshes_to_our_contact("u1", "1030");
}

#[test]
fn a_sipp_watcher_over_tcp_refreshes_and_unsubscribes_to_our_contact() {
    sipp_refreshes_to_our_contact("t1", "1031");
}

#[test]
fn a_caller_whose_ack_and_info_go_to_our_contact_sets_its_status() {
    let engine = Engine::start("");
    let out = engine.call(
        "caller_to_contact.xml",
        &[("CHOICE", "3"), ("CONFIRM", "1")],
        &caller("1037", "*46", "8", "PCMA"),
        "u1",
    );
    assert!(
        out.status.success(),
        "the ACK and both INFO keys reached the call"
    );
    assert_eq!(engine.status("1037")["status"], "away");
}

/// One SIP message as text, from the raw watcher's point of view.
struct Message {
    from: SocketAddr,
    text: String,
}

impl Message {
    fn header(&self, name: &str) -> &str {
        self.text
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(':')))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name} in {}", self.text))
    }

    fn is_notify(&self) -> bool {
        self.text.starts_with("NOTIFY ")
    }

    /// The 200 OK a watcher sends back for this request.
    fn ok(&self) -> String {
        let mut out = String::from("SIP/2.0 200 OK\r\n");
        for line in self.text.lines().take_while(|l| !l.is_empty()) {
            if ["Via:", "From:", "To:", "Call-ID:", "CSeq:"]
                .iter()
                .any(|h| line.starts_with(h))
            {
                out.push_str(line);
                out.push_str("\r\n");
            }
        }
        out.push_str("Content-Length: 0\r\n\r\n");
        out
    }
}

/// A SUBSCRIBE for `ext`'s presence to `engine`, with `contact` as the watcher's Contact.
fn subscribe_text(
    via: &str,
    engine: SocketAddr,
    ext: &str,
    call_id: &str,
    contact: &str,
) -> String {
    format!(
        "SUBSCRIBE sip:{ext}@{engine} SIP/2.0\r\nVia: SIP/2.0/{via};branch=z9hG4bK{call_id};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:2040@127.0.0.1>;tag=w{call_id}\r\nTo: <sip:{ext}@{engine}>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 SUBSCRIBE\r\nContact: <{contact}>\r\nEvent: presence\r\n\
         Accept: application/pidf+xml\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
    )
}

/// A watcher on a raw UDP socket, so the test sees where each NOTIFY comes from.
struct UdpWatcher {
    socket: UdpSocket,
    /// The engine address it subscribed to.
    engine: SocketAddr,
}

impl UdpWatcher {
    fn subscribe(engine: SocketAddr, ext: &str, call_id: &str) -> UdpWatcher {
        let own = if engine.is_ipv6() {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        };
        let socket = UdpSocket::bind(own).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let me = socket.local_addr().unwrap();
        let text = subscribe_text(
            &format!("UDP {me}"),
            engine,
            ext,
            call_id,
            &format!("sip:2040@{me}"),
        );
        socket.send_to(text.as_bytes(), engine).unwrap();
        UdpWatcher { socket, engine }
    }

    /// The next message; panics after 10 s.
    fn recv(&self) -> Message {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 65_535];
        while Instant::now() < deadline {
            if let Ok((n, from)) = self.socket.recv_from(&mut buf) {
                return Message {
                    from,
                    text: String::from_utf8_lossy(&buf[..n]).into_owned(),
                };
            }
        }
        panic!("no message for the watcher of {} within 10 s", self.engine)
    }

    /// Answers NOTIFYs until one whose body contains `wanted`; checks that every message
    /// comes from, and names, the address this watcher subscribed to.
    fn notify_with(&self, wanted: &str) -> Message {
        for _ in 0..20 {
            let msg = self.recv();
            self.check_flow(&msg);
            if msg.is_notify() {
                self.socket.send_to(msg.ok().as_bytes(), msg.from).unwrap();
                if msg.text.contains(wanted) {
                    return msg;
                }
            }
        }
        panic!(
            "no NOTIFY with {wanted:?} for the watcher of {}",
            self.engine
        )
    }

    fn check_flow(&self, msg: &Message) {
        assert_eq!(
            msg.from, self.engine,
            "sent from the address subscribed to: {}",
            msg.text
        );
        if msg.is_notify() {
            let engine = self.engine.to_string();
            assert!(
                msg.header("Via")
                    .starts_with(&format!("SIP/2.0/UDP {engine};")),
                "{}",
                msg.text
            );
            assert!(msg.header("Contact").contains(&engine), "{}", msg.text);
            assert!(
                msg.text.contains(&format!("@{engine}\">")),
                "entity: {}",
                msg.text
            );
        }
    }
}

#[test]
fn each_watcher_hears_from_the_address_it_subscribed_to_also_after_a_restart() {
    const EXT: &str = "1032";
    let mut engine = Engine::start_on_each(&["127.0.0.1", "127.0.0.2"], "");
    let first: SocketAddr = format!("127.0.0.1:{}", engine.port).parse().unwrap();
    let second: SocketAddr = format!("127.0.0.2:{}", engine.port).parse().unwrap();
    let watchers = [
        UdpWatcher::subscribe(first, EXT, "flow-a"),
        UdpWatcher::subscribe(second, EXT, "flow-b"),
    ];
    for w in &watchers {
        let ok = w.recv();
        assert!(ok.text.starts_with("SIP/2.0 200 OK"), "{}", ok.text);
        w.check_flow(&ok);
        assert!(
            ok.header("Contact").contains(&w.engine.to_string()),
            "{}",
            ok.text
        );
        w.notify_with("<basic>open</basic>");
    }
    engine.cli(&["set", EXT, "dnd"]);
    for w in &watchers {
        w.notify_with("busy");
    }

    engine.restart();
    let resumed = engine.wait_for_log("presence subscriptions resumed", Duration::from_secs(5));
    assert!(resumed.contains("\"restored\":2"), "{resumed}");
    engine.cli(&["set", EXT, "away"]);
    for w in &watchers {
        w.notify_with("<rpid:away/>");
    }
}

#[test]
fn an_ipv4_and_an_ipv6_watcher_each_hear_from_their_own_address() {
    const EXT: &str = "1036";
    let engine = Engine::start_on_each(&["127.0.0.1", "::1"], "");
    let v4: SocketAddr = format!("127.0.0.1:{}", engine.port).parse().unwrap();
    let v6: SocketAddr = format!("[::1]:{}", engine.port).parse().unwrap();
    // Both subscribe before either NOTIFY is built: a NOTIFY that took the last message's
    // address instead of its own flow's would name the other family.
    let watchers = [
        UdpWatcher::subscribe(v4, EXT, "fam-a"),
        UdpWatcher::subscribe(v6, EXT, "fam-b"),
    ];
    for w in &watchers {
        let ok = w.recv();
        assert!(ok.text.starts_with("SIP/2.0 200 OK"), "{}", ok.text);
        w.check_flow(&ok);
        w.notify_with("<basic>open</basic>");
    }
    engine.cli(&["set", EXT, "chat"]);
    for w in &watchers {
        w.notify_with("Chat");
    }
}

/// Reads one Content-Length framed SIP message from a TCP stream; panics after 10 s.
fn read_framed(stream: &mut TcpStream, pending: &mut Vec<u8>) -> String {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(text) = super::take_message(pending) {
            return text;
        }
        assert!(Instant::now() < deadline, "no whole message within 10 s");
        let mut buf = [0u8; 16 * 1024];
        match stream.read(&mut buf) {
            Ok(0) => panic!("connection closed"),
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
}

/// Reads messages from `stream` until a NOTIFY, answering it; returns it.
fn tcp_notify(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Message {
    let from = stream.peer_addr().unwrap();
    for _ in 0..10 {
        let text = read_framed(stream, pending);
        let msg = Message { from, text };
        if msg.is_notify() {
            stream.write_all(msg.ok().as_bytes()).unwrap();
            return msg;
        }
    }
    panic!("no NOTIFY on the connection")
}

#[test]
fn a_tcp_watcher_is_notified_on_its_connection_then_on_new_ones_from_the_same_address() {
    const EXT: &str = "1033";
    let mut engine = Engine::start_on_each(&["127.0.0.1", "127.0.0.2"], "");
    let engine_addr: SocketAddr = format!("127.0.0.2:{}", engine.port).parse().unwrap();
    // Where the watcher takes new connections: its Contact.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let contact = format!("sip:2040@{};transport=tcp", listener.local_addr().unwrap());
    let mut stream = TcpStream::connect(engine_addr).unwrap();
    let me = stream.local_addr().unwrap();
    let text = subscribe_text(&format!("TCP {me}"), engine_addr, EXT, "tcp-a", &contact);
    stream.write_all(text.as_bytes()).unwrap();
    let mut pending = Vec::new();
    let ok = read_framed(&mut stream, &mut pending);
    assert!(ok.starts_with("SIP/2.0 200 OK"), "{ok}");
    assert!(
        ok.contains(&format!("{engine_addr};transport=tcp>")),
        "{ok}"
    );
    let first = tcp_notify(&mut stream, &mut pending);
    assert!(
        first
            .header("Via")
            .starts_with(&format!("SIP/2.0/TCP {engine_addr};")),
        "{}",
        first.text
    );

    // The watcher hangs up its connection: the next NOTIFY comes over a new one to its
    // Contact, from the address it subscribed to.
    drop(stream);
    engine.wait_for_log("TCP connection closed; its dialogs", Duration::from_secs(5));
    engine.cli(&["set", EXT, "dnd"]);
    let back = notify_on_new_connection(&listener, engine_addr, "busy");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(engine.watchers(EXT), Some(serde_json::json!(1)));

    // A restart closes that connection too; the restored subscription opens another.
    engine.restart();
    drop(back);
    engine.cli(&["set", EXT, "away"]);
    notify_on_new_connection(&listener, engine_addr, "<rpid:away/>");
}

/// Accepts the engine's next connection to the watcher's Contact (`listener`) and answers
/// the NOTIFY on it, which must say `wanted`; checks the connection and the NOTIFY come from,
/// and name, `engine_addr`. Returns the connection.
fn notify_on_new_connection(
    listener: &TcpListener,
    engine_addr: SocketAddr,
    wanted: &str,
) -> TcpStream {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut back, from) = loop {
        match listener.accept() {
            Ok(accepted) => break accepted,
            Err(_) => {
                assert!(Instant::now() < deadline, "no new connection within 10 s");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    back.set_nonblocking(false).unwrap();
    assert_eq!(
        from.ip(),
        engine_addr.ip(),
        "connected from the address subscribed to"
    );
    let mut pending = Vec::new();
    let notify = tcp_notify(&mut back, &mut pending);
    assert!(notify.text.contains(wanted), "{}", notify.text);
    assert!(
        notify
            .header("Via")
            .starts_with(&format!("SIP/2.0/TCP {engine_addr};")),
        "{}",
        notify.text
    );
    assert!(notify.header("Contact").contains(&engine_addr.to_string()));
    back
}

#[test]
fn a_baresip_watcher_with_a_short_expiry_refreshes_and_sees_the_next_change() {
    let Some(modules) = require_baresip() else {
        return;
    };
    const EXT: &str = "1034";
    // baresip asks for 600 s; granted 5 s, it refreshes after 90 % of them (libre's
    // sipevent subscriber), to the Contact of our 200 OK.
    let mut engine = Engine::start("[presence]\nmin_expires = 1\nmax_expires = 5");
    let mut baresip = Baresip::watch(&modules, &engine, EXT, "2034");
    let contact = format!("sip:{EXT}@127.0.0.1:{}", engine.port);
    engine.wait_for_log("subscription created", Duration::from_secs(10));
    baresip.wait_for_notify_answered(1);
    engine.wait_for_logs(
        &["presence subscription", "\"new\":false"],
        1,
        Duration::from_secs(15),
    );
    engine.cli(&["set", EXT, "dnd"]);
    assert_eq!(
        baresip.wait_for_change(&contact, 1),
        ("Online".to_string(), "Busy".to_string())
    );
    assert_eq!(engine.watchers(EXT), Some(serde_json::json!(1)));
}

#[test]
fn a_linphone_watcher_with_a_short_expiry_refreshes_and_sees_the_next_change() {
    if !require_linphonec() {
        return;
    }
    const EXT: &str = "1035";
    let mut engine = Engine::start("[presence]\nmin_expires = 1\nmax_expires = 5");
    let mut linphone = Linphone::watch(&engine, EXT, "2035");
    let contact = format!("sip:{EXT}@127.0.0.1:{}", engine.port);
    engine.wait_for_log("subscription created", Duration::from_secs(10));
    assert_eq!(linphone.wait_for_report(&contact, 1), "Online");
    engine.wait_for_logs(
        &["presence subscription", "\"new\":false"],
        1,
        Duration::from_secs(15),
    );
    engine.cli(&["set", EXT, "dnd"]);
    // linphonec prints on every NOTIFY, refreshes' included: the last report must be Busy.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 2;
    loop {
        let report = linphone.wait_for_report(&contact, n);
        if report == "Busy" {
            break;
        }
        assert!(Instant::now() < deadline, "linphone never showed Busy");
        n += 1;
    }
    assert_eq!(engine.watchers(EXT), Some(serde_json::json!(1)));
}
