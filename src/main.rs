//! The `starcode` command line: the engine, QA replay and key detection, config checks and
//! status and account admin.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use starcode::accounts_cli::{self, ExtCommand};
use starcode::config::{self, Config, InbandSettings};
use starcode::detect;
use starcode::presence::StatusKind;
use starcode::replay::{self, ReplayOptions};
use starcode::status_cli::{self, StatusCommand};
use starcode::stores::Stores;
use starcode::web_auth_cli::{self, AdminCommand, TokenCommand, WebCliContext};

/// SIP presence engine built around a voice feature code.
#[derive(Parser)]
#[command(name = "starcode", version, about)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the engine.
    Run {
        #[arg(long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Print the effective config, or every problem in it (exit code 1).
    CheckConfig {
        #[arg(default_value = config::DEFAULT_PATH)]
        path: PathBuf,
    },
    /// Read or change statuses in the store.
    Status {
        #[arg(long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Use this SQLite file instead of the config's store (store.path or store.url).
        #[arg(long)]
        db: Option<PathBuf>,
        #[command(subcommand)]
        command: StatusCommand,
    },
    /// Manage extensions' accounts: SIP digest secrets (kept as HA1) and portal passwords.
    Ext {
        #[arg(long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Use this SQLite file instead of the config's store (store.path or store.url).
        #[arg(long)]
        db: Option<PathBuf>,
        #[command(subcommand)]
        command: ExtCommand,
    },
    /// Manage the admins of the web interface and the API (passwords kept as argon2id).
    Admin {
        #[arg(long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Use this SQLite file instead of the config's store (store.path or store.url).
        #[arg(long)]
        db: Option<PathBuf>,
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Manage API tokens for scripts (shown once, kept only hashed, revocable).
    Token {
        #[arg(long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Use this SQLite file instead of the config's store (store.path or store.url).
        #[arg(long)]
        db: Option<PathBuf>,
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Replay a recorded call (pcap/pcapng) through the engine offline; prints a JSON-lines transcript.
    Replay {
        /// The capture file.
        capture: PathBuf,
        #[arg(long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Compare with this expectation file; exit code 1 on any difference.
        #[arg(long)]
        expect: Option<PathBuf>,
        /// The caller's extension, when the capture has no INVITE (or to override it).
        #[arg(long)]
        caller: Option<String>,
        /// The dialled feature code, when the capture has no INVITE.
        #[arg(long)]
        code: Option<String>,
        /// A payload type mapping, e.g. `101=telephone-event/8000` or `0=PCMU/8000` (repeatable).
        #[arg(long = "pt")]
        payload_types: Vec<String>,
        /// The caller's status before the call (default: available).
        #[arg(long)]
        initial_status: Option<StatusKind>,
        /// The caller's stored custom text before the call.
        #[arg(long)]
        custom_text: Option<String>,
        /// Make the store refuse the commit, to test the "could not be saved" path.
        #[arg(long)]
        store_fails: bool,
    },
    /// List every key a recording holds, per source (RFC 4733, in-band, SIP INFO), without the
    /// IVR: what a phone or gateway really sends. Reads WAV/FLAC/Ogg/MP3 audio or a pcap/pcapng
    /// (RTP audio in PCMU, PCMA, Opus or G.722).
    Detect {
        /// The audio file or capture.
        file: PathBuf,
        /// Print JSON lines (key, source, start_ms, duration_ms, stream) instead of text.
        #[arg(long)]
        json: bool,
        /// A payload type mapping, e.g. `101=telephone-event/8000` or `96=opus/48000/2`
        /// (repeatable); overrides the capture's SDP.
        #[arg(long = "pt")]
        payload_types: Vec<String>,
        /// Use this config's `[media.inband]` thresholds (default: config/starcode.toml when
        /// it exists, else the built-in defaults).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Only the engine logs its work; the one-shot commands print results and problems.
    let is_engine = matches!(cli.command, Command::Run { .. });
    init_logging(cli.log_format, if is_engine { "info" } else { "warn" });
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(error) if is_engine => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run { config: path } => {
            let config = load_config(&path)?;
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            // The engine re-reads `path` on SIGHUP.
            runtime.block_on(starcode::runtime::run(config, path))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { path } => match Config::load(&path) {
            Ok(mut config) => {
                // What is printed may end up in a ticket: the database password never does.
                config.store.url = config
                    .store
                    .url
                    .as_deref()
                    .map(starcode::presence::postgres::redact_url);
                print!("{}", config.to_toml());
                Ok(ExitCode::SUCCESS)
            }
            Err(error) => {
                eprintln!("{error}");
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Status {
            config,
            db,
            command,
        } => {
            let stores = match db {
                Some(db) => open_sqlite(&db)?,
                None => open_stores(&load_config(&config)?)?,
            };
            let mut out = std::io::stdout().lock();
            status_cli::run(&*stores.presence, command, SystemTime::now(), &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ext {
            config,
            db,
            command,
        } => {
            // The config is always read: HA1s are computed for its sip.realm.
            let config = load_config(&config)?;
            let stores = match db {
                Some(db) => open_sqlite(&db)?,
                None => open_stores(&config)?,
            };
            let ctx = accounts_cli::ExtContext {
                realm: config.sip.realm,
                interactive: std::io::IsTerminal::is_terminal(&std::io::stdin()),
            };
            let mut input = std::io::stdin().lock();
            let mut out = std::io::stdout().lock();
            accounts_cli::run(
                &*stores.presence,
                &*stores.accounts,
                command,
                &ctx,
                &mut input,
                &mut out,
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin {
            config,
            db,
            command,
        } => {
            let stores = open_store(&config, db)?;
            let mut input = std::io::stdin().lock();
            let mut out = std::io::stdout().lock();
            web_auth_cli::run_admin(
                &*stores.web_auth,
                &*stores.accounts,
                command,
                &web_cli_context(),
                &mut input,
                &mut out,
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            config,
            db,
            command,
        } => {
            let stores = open_store(&config, db)?;
            let mut out = std::io::stdout().lock();
            web_auth_cli::run_token(
                &*stores.web_auth,
                &*stores.accounts,
                command,
                &web_cli_context(),
                &mut out,
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay {
            capture,
            config,
            expect,
            caller,
            code,
            payload_types,
            initial_status,
            custom_text,
            store_fails,
        } => {
            let config = load_config(&config)?;
            let catalog = starcode::runtime::load_catalog_for_calls(&config)?;
            let expectation = expect
                .as_deref()
                .map(replay::Expectation::load)
                .transpose()?;
            // The expectation's [given] set-up applies unless the command line says otherwise.
            let given = expectation
                .as_ref()
                .and_then(|e| e.given.clone())
                .unwrap_or_default();
            let payload_types = if payload_types.is_empty() {
                given.pt.unwrap_or_default()
            } else {
                payload_types
            };
            let options = ReplayOptions::from_cli(
                caller.or(given.caller),
                code.or(given.code),
                &payload_types,
                initial_status
                    .or(given.initial_status)
                    .unwrap_or(StatusKind::Available),
                custom_text.or(given.custom_text),
                store_fails || given.store_fails.unwrap_or(false),
            )?;
            let bytes = std::fs::read(&capture)
                .with_context(|| format!("reading capture {}", capture.display()))?;
            let report = replay::replay(&bytes, &config, catalog, &options)
                .with_context(|| format!("replaying {}", capture.display()))?;
            let mut out = String::new();
            for line in &report.lines {
                out.push_str(&line.to_json());
                out.push('\n');
            }
            print!("{out}");
            // How the replay read the capture (stderr: the transcript stays clean JSON).
            for note in &report.notes {
                eprintln!("note: {note}");
            }
            if let (Some(expect), Some(expectation)) = (expect, expectation) {
                let differences = expectation.differences(&report.lines);
                if !differences.is_empty() {
                    eprintln!("replay differs from {}:", expect.display());
                    for d in &differences {
                        eprintln!("  - {d}");
                    }
                    return Ok(ExitCode::FAILURE);
                }
                eprintln!("replay matches {}", expect.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Detect {
            file,
            json,
            payload_types,
            config,
        } => {
            let mut options = detect::DetectOptions::from_cli(&payload_types)?;
            let default = Path::new(config::DEFAULT_PATH);
            let path = config.or_else(|| default.exists().then(|| default.to_path_buf()));
            if let Some(path) = path {
                let settings = load_config(&path)?.media.inband;
                // Whether the engine listens for tones or not, detect shows what the audio
                // holds, with that engine's thresholds.
                options.inband = InbandSettings {
                    enabled: true,
                    ..settings
                }
                .detector_config()
                .unwrap_or_default();
            }
            let detection = detect::detect_path(&file, &options)
                .with_context(|| format!("detecting keys in {}", file.display()))?;
            let mut out = String::new();
            for key in &detection.keys {
                out.push_str(&if json {
                    detect::json_line(key)
                } else {
                    detect::text_line(key)
                });
                out.push('\n');
            }
            print!("{out}");
            for line in detect::summary_lines(&detection) {
                eprintln!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The SQLite file `--db` names, else the store of the config at `config`.
fn open_store(config: &Path, db: Option<PathBuf>) -> anyhow::Result<Stores> {
    match db {
        Some(db) => open_sqlite(&db),
        None => open_stores(&load_config(config)?),
    }
}

/// The store `[store]` names: `store.url` (PostgreSQL) or `store.path` (SQLite). Its errors
/// name the file or the database (without its password) already.
fn open_stores(config: &Config) -> anyhow::Result<Stores> {
    Stores::open(&config.store).context("opening the store")
}

/// The SQLite file `--db` names, whatever the config says.
fn open_sqlite(db: &Path) -> anyhow::Result<Stores> {
    Stores::open_sqlite(db).with_context(|| format!("opening the store {}", db.display()))
}

fn web_cli_context() -> WebCliContext {
    WebCliContext {
        interactive: std::io::IsTerminal::is_terminal(&std::io::stdin()),
        now: SystemTime::now(),
    }
}

fn load_config(path: &Path) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}

fn init_logging(format: LogFormat, default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
