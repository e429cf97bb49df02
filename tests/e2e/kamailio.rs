//! A real SIP proxy in front of the engine: Kamailio (Debian `kamailio`) with
//! `tests/kamailio/dispatcher.cfg`, its dispatcher module spreading new dialogs over the nodes
//! in a list file and record-routing them. sipp talks only to Kamailio; what the engine sends
//! back (the 200s, its NOTIFYs and its BYE) must come through Kamailio too, which the
//! scenarios check by Kamailio's Via (`watcher_proxied.xml`, `caller_proxied.xml`), and the
//! in-dialog requests (ACK, unsubscribe) follow the route set from the engine's answers.
//!
//! Kamailio runs as the current user from a temp dir (`-Y`, `-P`, `-w`; nothing under /etc or
//! /run), in the foreground (`-DD -E`), on a free loopback port, and is stopped by its PID.
//! Without Kamailio the tests are skipped, unless `CI` is set: then they fail.

use super::*;

/// The proxy config under test.
const CONFIG: &str = "tests/kamailio/dispatcher.cfg";

/// Kamailio's binary (Debian installs it in /usr/sbin, not on every user's PATH), or `None` to
/// skip: CI (`CI` set) must have it (scripts/bootstrap.sh installs `kamailio`).
fn require_kamailio() -> Option<PathBuf> {
    let found = ["kamailio", "/usr/sbin/kamailio"]
        .iter()
        .map(PathBuf::from)
        .find(|bin| Command::new(bin).arg("-v").output().is_ok());
    if found.is_none() {
        assert!(
            !in_ci(),
            "kamailio is missing: install the kamailio package (scripts/bootstrap.sh does)"
        );
        eprintln!("skipped: kamailio is not installed (apt-get install kamailio)");
    }
    found
}

/// A running Kamailio with `dispatcher.cfg` in front of some nodes.
pub(crate) struct Kamailio {
    child: Child,
    /// Its runtime and working dir: pid file, list file, sipp's scenario copies and logs.
    dir: tempfile::TempDir,
    pub(crate) port: u16,
    log: mpsc::Receiver<String>,
    lines: Vec<String>,
}

impl Kamailio {
    /// Starts Kamailio on a free loopback UDP port with dispatcher set 1 = `nodes` (UDP ports
    /// on 127.0.0.1, in this order), and waits until an OPTIONS through it is answered by a
    /// node. `None` when Kamailio is not installed (and `CI` is not set).
    pub(crate) fn start(nodes: &[u16]) -> Option<Kamailio> {
        let binary = require_kamailio()?;
        let dir = tempfile::tempdir().unwrap();
        let list: String = nodes
            .iter()
            .map(|port| format!("1 sip:127.0.0.1:{port}\n"))
            .collect();
        let list_path = dir.path().join("dispatcher.list");
        std::fs::write(&list_path, list).unwrap();
        let port = free_port();
        let mut child = Command::new(binary)
            .arg("-f")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(CONFIG))
            .args(["-DD", "-E", "-m", "32", "-M", "4"])
            .args(["-l", &format!("udp:127.0.0.1:{port}")])
            .arg("-Y")
            .arg(dir.path())
            .arg("-P")
            .arg(dir.path().join("kamailio.pid"))
            .arg("-w")
            .arg(dir.path())
            .arg("-A")
            .arg(format!("DS_LIST=\"{}\"", list_path.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kamailio starts");
        let log = stderr_lines(&mut child);
        let mut kamailio = Kamailio {
            child,
            dir,
            port,
            log,
            lines: Vec::new(),
        };
        kamailio.until_a_node_answers();
        Some(kamailio)
    }

    /// What sipp needs to call through this proxy; its files go to the proxy's folder.
    pub(crate) fn target(&self) -> Target {
        Target {
            dir: self.dir.path().to_path_buf(),
            ip: "127.0.0.1".to_string(),
            port: self.port,
        }
    }

    /// `@PROXY@` in the proxied scenarios: the proxy's `host:port` as its Via shows it.
    pub(crate) fn fill(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Sends OPTIONS through the proxy until a node's `200` comes back (Kamailio answers
    /// nothing itself but errors): the proxy is up and dispatches. Panics after 20 s.
    fn until_a_node_answers(&mut self) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let local = socket.local_addr().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut tries = 0;
        while Instant::now() < deadline {
            tries += 1;
            let options = format!(
                "OPTIONS sip:starcode@127.0.0.1:{port} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {local};branch=z9hG4bK-ready-{tries};rport\r\n\
                 Max-Forwards: 70\r\n\
                 From: <sip:probe@{local}>;tag=ready\r\n\
                 To: <sip:starcode@127.0.0.1:{port}>\r\n\
                 Call-ID: ready-{tries}@127.0.0.1\r\n\
                 CSeq: 1 OPTIONS\r\n\
                 Content-Length: 0\r\n\r\n",
                port = self.port
            );
            let _ = socket.send_to(options.as_bytes(), ("127.0.0.1", self.port));
            let mut buf = [0u8; 4096];
            while let Ok((len, _)) = socket.recv_from(&mut buf) {
                if buf[..len].starts_with(b"SIP/2.0 200") {
                    return;
                }
            }
            self.take_log();
        }
        self.take_log();
        panic!(
            "no node answered OPTIONS through kamailio; its log:\n{}",
            self.lines.join("\n")
        );
    }

    /// Moves what Kamailio logged so far into `lines`.
    fn take_log(&mut self) {
        while let Ok(line) = self.log.try_recv() {
            self.lines.push(line);
        }
    }

    /// Waits until a log line contains `needle`; panics with the log after `limit`.
    pub(crate) fn wait_for_log(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            self.take_log();
            if let Some(line) = self.lines.iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            if Instant::now() >= deadline {
                panic!(
                    "no kamailio log line with {needle:?}; log:\n{}",
                    self.lines.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Kamailio {
    /// SIGTERM to the main process (by its PID), which stops its children; SIGKILL after 10 s.
    fn drop(&mut self) {
        peer::stop_child(&mut self.child, Duration::from_secs(10));
    }
}

/// Through `proxy`: a sipp watcher of `ext` (as `watcher`) while a sipp caller `ext` sets Do
/// Not Disturb with `*46`. Both scenarios check that the engine's messages came through the
/// proxy; the watcher unsubscribes along the route set of the engine's `200`.
fn dnd_call_with_a_watcher_through(proxy: &Kamailio, ext: &'static str, watcher: &'static str) {
    let scenarios = DndScenarios {
        watcher: "watcher_proxied.xml",
        caller: "caller_proxied.xml",
        fill: vec![("PROXY", proxy.fill())],
        // -aa: sipp answers a NOTIFY that overtook the 200 (see the scenario).
        watcher_args: &["-aa"],
    };
    dnd_call_with_a_watcher_to(&proxy.target(), &scenarios, ext, watcher);
}

#[test]
fn a_watcher_and_a_feature_code_call_through_kamailio() {
    let engine = Engine::start("");
    let Some(mut proxy) = Kamailio::start(&[engine.port]) else {
        return;
    };
    dnd_call_with_a_watcher_through(&proxy, "1001", "2001");
    assert_eq!(engine.status("1001")["status"], "dnd");
    // The dispatcher chose the node for both new dialogs (and not for the in-dialog ones).
    let node = format!("to sip:127.0.0.1:{}", engine.port);
    for method in ["SUBSCRIBE", "INVITE"] {
        let line = proxy.wait_for_log(&format!("dispatch {method} "), Duration::from_secs(5));
        assert!(line.contains(&node), "{line}");
    }
    // The unsubscribe went along the route set: the engine counts no watcher left.
    assert_eq!(engine.watchers("1001"), Some(serde_json::json!(0)));
}

#[test]
fn a_dead_node_is_failed_over_and_probed_out() {
    let engine = Engine::start("");
    // A loopback port nobody answers on, first in the set.
    let dead = free_port();
    let Some(mut proxy) = Kamailio::start(&[dead, engine.port]) else {
        return;
    };
    // New dialogs hashed to the dead node time out there (tm's fr_timer) and go on to the
    // next node (ds_next_dst); meanwhile the OPTIONS probes mark the dead node down.
    for (ext, watcher) in [("1002", "2002"), ("1003", "2003")] {
        dnd_call_with_a_watcher_through(&proxy, ext, watcher);
        assert_eq!(engine.status(ext)["status"], "dnd");
    }
    proxy.wait_for_log(
        &format!("starcode node down: sip:127.0.0.1:{dead}"),
        Duration::from_secs(10),
    );
}
