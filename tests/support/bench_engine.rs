//! The engine a process-level bench measures (`benches/auth.rs`, `benches/flood.rs`,
//! `benches/presence_fanout.rs`, `benches/web_api.rs`): the binary Cargo built, started on loopback UDP with a temp
//! config and store, awaited until it serves, watched through `/proc` (CPU time, memory) and
//! stopped by its PID, also on a panic. Beside it what those benches read the same way: their
//! sizes from the command line and the machine's load average.
//! Included by `#[path]` beside `peer.rs` (it uses `super::peer`).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::peer;

/// The engine binary: `override_var`'s path if it is set (e.g. an older build, to compare on
/// the same machine at the same time), else the one Cargo built for the bench (release under
/// `cargo bench`).
pub fn engine_binary(override_var: Option<&str>) -> PathBuf {
    override_var
        .and_then(std::env::var_os)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_starcode")))
}

/// The numbers on the command line under `cargo bench` (which passes `--bench`), in order;
/// None under `cargo test`, where a bench runs its small smoke round instead.
pub fn bench_numbers() -> Option<Vec<usize>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    args.iter()
        .any(|a| a == "--bench")
        .then(|| args.iter().filter_map(|a| a.parse().ok()).collect())
}

/// The 1, 5 and 15 minute load averages, to print beside figures measured on shared cores.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// CPU time (utime + stime) of the process whose `/proc/PID/stat` is `stat`; /proc counts in
/// 1/100 s. Zero when it cannot be read.
pub fn cpu_of(stat: &str) -> Duration {
    let text = std::fs::read_to_string(stat).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
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

/// How the bench knows the engine serves.
#[derive(Debug, Clone, Copy)]
pub enum Ready {
    /// Its log says `starcode ready` (needs info level for `starcode::runtime`).
    Logged,
    /// It answers an OPTIONS from 127.0.0.1 (any log level).
    AnswersOptions,
}

/// How the engine is started: global arguments before `run`, `RUST_LOG` (inherited when
/// None), and how readiness is seen.
pub struct Launch<'a> {
    pub global_args: &'a [&'a str],
    pub rust_log: Option<&'a str>,
    pub ready: Ready,
}

/// An engine configured in a temp dir but not started yet, so a bench can prepare its store
/// (e.g. import accounts) with the same config first.
pub struct Configured {
    dir: tempfile::TempDir,
    port: u16,
}

impl Configured {
    /// A config with the bundled prompts, a store in the temp dir, `rtp_ports` RTP ports from a
    /// random hundred above 40000, and `[sip]` listening on a free UDP port of 127.0.0.1;
    /// `rest` follows the `listen` line (more `[sip]` keys, then whole sections).
    pub fn new(rtp_ports: u16, rest: &str) -> Result<Configured, String> {
        Configured::with_store(rtp_ports, None, rest)
    }

    /// Like [`Configured::new`], with `store` as the `[store]` section's lines instead of the
    /// SQLite file in the temp dir (e.g. `url = "postgres://..."` and more sections after it).
    pub fn with_store(
        rtp_ports: u16,
        store: Option<&str>,
        rest: &str,
    ) -> Result<Configured, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = peer::free_port();
        let rtp = 40_000 + (peer::free_port() % 10_000) / 100 * 100;
        let root = env!("CARGO_MANIFEST_DIR");
        let store = store.map_or_else(
            || format!("path = \"{}/presence.db\"", dir.path().display()),
            str::to_string,
        );
        let config = format!(
            "[prompts]\ndir = \"{root}/prompts\"\n\
             [store]\n{store}\n[http]\nlisten = \"127.0.0.1:0\"\n\
             [media]\nrtp_ports = \"{rtp}-{}\"\n\
             [sip]\nlisten = [\"udp:127.0.0.1:{port}\"]\n{rest}",
            rtp + rtp_ports - 1
        );
        let configured = Configured { dir, port };
        std::fs::write(configured.config_path(), config).map_err(|e| e.to_string())?;
        Ok(configured)
    }

    /// Its `starcode.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("starcode.toml")
    }

    /// A file in the engine's temp dir.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts `binary` with this config (stderr to `engine.log` in the temp dir) and waits up
    /// to 60 s until it serves; the error holds its log.
    pub fn start(self, binary: &Path, launch: &Launch) -> Result<Engine, String> {
        let log = std::fs::File::create(self.file("engine.log")).map_err(|e| e.to_string())?;
        let mut command = Command::new(binary);
        command
            .args(launch.global_args)
            .args(["run", "--config"])
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(filter) = launch.rust_log {
            command.env("RUST_LOG", filter);
        }
        let child = command
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let engine = Engine {
            child,
            dir: self.dir,
            sip: SocketAddr::from(([127, 0, 0, 1], self.port)),
        };
        engine.until_ready(launch.ready)
    }
}

impl Engine {
    /// Another SIP server to measure the same way (e.g. Kamailio's presence server for the
    /// fan-out bench): `script PORT DIR` must start it in the foreground on UDP
    /// 127.0.0.1:PORT and `exec` it, so that the child's PID is the server's; its stderr goes
    /// to `engine.log` in DIR (a temp dir). Ready when it answers an OPTIONS.
    pub fn start_script(script: &Path) -> Result<Engine, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = peer::free_port();
        let log =
            std::fs::File::create(dir.path().join("engine.log")).map_err(|e| e.to_string())?;
        let child = Command::new(script)
            .arg(port.to_string())
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", script.display()))?;
        let engine = Engine {
            child,
            dir,
            sip: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        engine.until_ready(Ready::AnswersOptions)
    }

    /// Waits up to 60 s until the server serves (`ready`); the error holds its log.
    fn until_ready(mut self, ready: Ready) -> Result<Engine, String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut probe = match ready {
            Ready::Logged => None,
            Ready::AnswersOptions => Some(OptionsProbe::new(self.sip)?),
        };
        loop {
            if Instant::now() > deadline || self.child.try_wait().ok().flatten().is_some() {
                let log = self.log();
                self.stop();
                return Err(format!("the engine did not start:\n{log}"));
            }
            let ready = match probe.as_mut() {
                None => self.log().contains("starcode ready"),
                Some(probe) => probe.answered(),
            };
            if ready {
                return Ok(self);
            }
            if probe.is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// An OPTIONS sent again and again until the engine answers (200 ms per try).
struct OptionsProbe {
    socket: std::net::UdpSocket,
    engine: SocketAddr,
    request: String,
}

impl OptionsProbe {
    fn new(engine: SocketAddr) -> Result<OptionsProbe, String> {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        let me = socket.local_addr().map_err(|e| e.to_string())?;
        let request = format!(
            "OPTIONS sip:starcode@{engine} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKready;rport\r\n\
             From: <sip:bench@127.0.0.1>;tag=r\r\nTo: <sip:starcode@127.0.0.1>\r\nCall-ID: ready@bench\r\n\
             CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        Ok(OptionsProbe {
            socket,
            engine,
            request,
        })
    }

    /// Sends the OPTIONS and waits one try for any answer.
    fn answered(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        let _ = self.socket.send_to(self.request.as_bytes(), self.engine);
        self.socket.recv(&mut buf).is_ok()
    }
}

/// The engine under test; stopped by its PID when dropped, also on a panic.
pub struct Engine {
    child: Child,
    dir: tempfile::TempDir,
    /// Where it listens for SIP (UDP on 127.0.0.1).
    pub sip: SocketAddr,
}

impl Engine {
    /// Its log so far (stderr), empty if unreadable.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("engine.log")).unwrap_or_default()
    }

    /// CPU time the engine has used so far (utime + stime), with that of its child processes
    /// still running (starcode has none; Kamailio's workers are children of its main process).
    pub fn cpu(&self) -> Duration {
        let pid = self.child.id();
        let children: Duration =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default()
                .split_whitespace()
                .map(|child| cpu_of(&format!("/proc/{child}/stat")))
                .sum();
        cpu_of(&format!("/proc/{pid}/stat")) + children
    }

    /// A field of /proc/PID/status in KiB (VmHWM: peak resident, VmRSS: resident now).
    pub fn memory_kib(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// SIGTERM, then up to 10 s for it to exit (its shutdown summaries reach the log); killed
    /// by its PID if it does not stop.
    pub fn stop(&mut self) {
        peer::stop_child(&mut self.child, Duration::from_secs(10));
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}
