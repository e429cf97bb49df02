//! A throwaway PostgreSQL for the tests: Debian's `initdb` + `pg_ctl` in a temp dir, on a
//! free loopback port, one server per test process and one fresh database per test, so the
//! PostgreSQL backend is tested against the real server rather than a mock.
//!
//! The server is stopped (`pg_ctl stop -m immediate`) and its directory removed by a libc
//! `atexit` hook, because statics are never dropped. PostgreSQL refuses to run as root, so
//! as root the commands run as the `postgres` system user the Debian package creates. Without
//! the binaries the tests skip with a message, except in CI (`CI` set), where that fails.
//!
//! Tests that stop and restart a server (the database going away) get a second server of
//! their own through [`stoppable_database`], one such test at a time, so the tests on the
//! shared server never see it go away.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, Once, OnceLock};

/// A running throwaway server.
struct Server {
    port: u16,
    /// The `pg_ctl stop` command line and the dir to remove, for the exit hook.
    bin: PathBuf,
    dir: PathBuf,
    as_postgres: bool,
    /// fsync on (a benchmark's server, where a commit must really reach the disk); the tests'
    /// servers run with fsync off.
    durable: bool,
}

static SERVER: OnceLock<Option<Server>> = OnceLock::new();
/// The benchmarks' server (fsync on), see [`durable_database`].
#[allow(dead_code)] // the fan-out bench's only, not the unit tests'
static DURABLE: OnceLock<Option<Server>> = OnceLock::new();
/// The server only the stop-and-restart tests use, and their turns on it.
static STOPPABLE: OnceLock<Option<Server>> = OnceLock::new();
static STOPPABLE_TURN: Mutex<()> = Mutex::new(());
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);
/// Serialises `CREATE DATABASE` (PostgreSQL copies template1 under a lock anyway).
static CREATING: Mutex<()> = Mutex::new(());

/// The superuser `initdb` creates; trust auth on loopback only.
const USER: &str = "starcode";

/// A URL of a fresh, empty database on the shared server, or `None` (after saying why) when
/// PostgreSQL is not installed and this is not CI.
pub(crate) fn fresh_database() -> Option<String> {
    let server = SERVER.get_or_init(|| start(false)).as_ref()?;
    Some(create_database(server))
}

/// For a benchmark that compares durable setups: a fresh database on a server of its own with
/// PostgreSQL's durable defaults (fsync and synchronous_commit on), and the URL of that
/// server's `postgres` database (for `pg_stat_database`). Stopped at exit like the others.
#[allow(dead_code)] // the fan-out bench's only, not the unit tests'
pub(crate) fn durable_database() -> Option<(String, String)> {
    let server = DURABLE.get_or_init(|| start(true)).as_ref()?;
    let admin = format!("postgres://{USER}@127.0.0.1:{}/postgres", server.port);
    Some((create_database(server), admin))
}

/// Like [`fresh_database`], on a server the test may stop and restart (same port, same
/// data) through the returned handle; the handle is the test's turn on that server, and
/// restarts it when dropped if the test left it stopped.
pub(crate) fn stoppable_database() -> Option<(StoppableServer, String)> {
    let turn = STOPPABLE_TURN.lock().unwrap_or_else(|p| p.into_inner());
    let server = STOPPABLE.get_or_init(|| start(false)).as_ref()?;
    let url = create_database(server);
    Some((
        StoppableServer {
            server,
            stopped: std::cell::Cell::new(false),
            _turn: turn,
        },
        url,
    ))
}

/// One test's turn on the stoppable server.
pub(crate) struct StoppableServer {
    server: &'static Server,
    stopped: std::cell::Cell<bool>,
    _turn: MutexGuard<'static, ()>,
}

impl StoppableServer {
    /// Stops the server the way a crash would (`-m immediate`: no goodbye to clients).
    pub(crate) fn stop(&self) {
        self.server.pg_ctl(&["-m", "immediate", "-w", "stop"]);
        self.stopped.set(true);
    }

    /// Starts the server again on the same port and data directory.
    pub(crate) fn restart(&self) {
        launch(self.server);
        self.stopped.set(false);
    }
}

impl Drop for StoppableServer {
    fn drop(&mut self) {
        if self.stopped.get() && !std::thread::panicking() {
            self.restart();
        }
    }
}

/// Creates a new empty database on `server` and returns its URL.
fn create_database(server: &Server) -> String {
    let n = NEXT_DB.fetch_add(1, Ordering::Relaxed);
    let name = format!("t_{n}");
    let admin = format!("postgres://{USER}@127.0.0.1:{}/postgres", server.port);
    let _guard = CREATING.lock().unwrap_or_else(|p| p.into_inner());
    let mut client = postgres::Client::connect(&admin, postgres::NoTls)
        .unwrap_or_else(|e| panic!("connecting to the test PostgreSQL: {e}"));
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap_or_else(|e| panic!("creating database {name}: {e}"));
    format!("postgres://{USER}@127.0.0.1:{}/{name}", server.port)
}

/// The directory holding `initdb` and `pg_ctl` of the newest installed major version.
fn bin_dir() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((major, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn start(durable: bool) -> Option<Server> {
    let Some(bin) = bin_dir() else {
        let why =
            "PostgreSQL binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin; \
                   install Debian's postgresql package (scripts/bootstrap.sh does)";
        if std::env::var_os("CI").is_some() {
            panic!("{why}");
        }
        eprintln!("skipping the PostgreSQL tests: {why}");
        return None;
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let as_postgres = unsafe { libc::geteuid() } == 0;
    let dir = tempfile::Builder::new()
        .prefix("starcode-pg-")
        .tempdir()
        .expect("creating the PostgreSQL temp dir")
        .keep();
    if as_postgres {
        chown_to_postgres(&dir);
    }
    let data = dir.join("data");
    run(
        as_postgres,
        &bin.join("initdb"),
        &[
            "-D",
            path_str(&data),
            "-U",
            USER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        ],
    );
    let server = Server {
        port: free_port(),
        bin,
        dir,
        as_postgres,
        durable,
    };
    launch(&server);
    register_exit_hook(&server);
    Some(server)
}

impl Server {
    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Runs `pg_ctl -D <data> args...`, failing the test if it fails.
    fn pg_ctl(&self, args: &[&str]) {
        let data = self.data();
        let mut all = vec!["-D", path_str(&data)];
        all.extend_from_slice(args);
        run(self.as_postgres, &self.bin.join("pg_ctl"), &all);
    }
}

/// Starts `server`'s postmaster on its port and waits until it accepts connections.
fn launch(server: &Server) {
    let options = format!(
        "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync={} -c max_connections=200",
        server.port,
        path_str(&server.dir),
        // Durable: fsync on, and pg_stat_statements for the bench's statement counts.
        if server.durable {
            "on -c shared_preload_libraries=pg_stat_statements"
        } else {
            "off"
        }
    );
    let log = server.dir.join("server.log");
    server.pg_ctl(&["-o", &options, "-l", path_str(&log), "-w", "start"]);
}

/// What the exit hook needs for each server started.
static STOP: Mutex<Vec<(bool, PathBuf, PathBuf)>> = Mutex::new(Vec::new());
static HOOK: Once = Once::new();

fn register_exit_hook(server: &Server) {
    STOP.lock().unwrap_or_else(|p| p.into_inner()).push((
        server.as_postgres,
        server.bin.join("pg_ctl"),
        server.dir.clone(),
    ));
    extern "C" fn stop_servers() {
        let servers = STOP.lock().unwrap_or_else(|p| p.into_inner());
        for (as_postgres, pg_ctl, dir) in servers.iter() {
            let data = dir.join("data");
            let _ = command(*as_postgres, pg_ctl)
                .args(["-D", path_str(&data), "-m", "immediate", "-t", "10", "stop"])
                .output();
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    HOOK.call_once(|| {
        // SAFETY: registers a plain extern "C" fn with no arguments; it only reads a static.
        let rc = unsafe { libc::atexit(stop_servers) };
        assert_eq!(rc, 0, "registering the PostgreSQL stop hook");
    });
}

fn command(as_postgres: bool, program: &Path) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(as_postgres: bool, program: &Path, args: &[&str]) {
    let out = command(as_postgres, program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}\n{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn chown_to_postgres(dir: &Path) {
    let out = Command::new("chown")
        .args(["postgres:postgres", path_str(dir)])
        .output()
        .expect("running chown");
    assert!(
        out.status.success(),
        "chown postgres {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A port nobody listens on now (the server binds it a moment later), below the kernel's
/// ephemeral range (32768-60999 on Linux): an outgoing connection never takes it meanwhile,
/// nor while a stoppable server is down between its stop and its restart on the same port.
/// (The e2e tests' own ports come from 12000-19999, tests/support/peer.rs.)
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const PORTS: std::ops::Range<u32> = 24_000..28_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let count = PORTS.end - PORTS.start;
    let start = std::process::id().wrapping_mul(7919) % count;
    for _ in 0..count {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let Ok(port) = u16::try_from(PORTS.start + (start + n) % count) else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {PORTS:?}")
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}
