//! Live reload of the config file, on SIGHUP or through a [`ReloadHandle`] (the HTTP API's
//! `POST /reload`, after it wrote new feature codes with `config::edit`). The SIP task re-reads
//! and validates the file: an invalid file changes nothing (the engine runs on, and the error
//! names every problem); a valid one has its live settings applied at once, and the keys that
//! changed but only take effect after a restart are logged and reported.
//!
//! What is live is decided in one place, [`live_settings`]; [`plan`] is pure, so what a reload
//! would do is tested without an engine.

use std::path::PathBuf;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::{now, policy, watcher_policy, Engine};
use crate::config::{Config, ConfigError, FeatureCode};
use crate::sip::auth::AuthSettings;

/// Asks the running engine to reload its config file. Cheap to clone; every clone reaches the
/// same engine. The HTTP layer holds one, the SIGHUP listener another.
#[derive(Debug, Clone)]
pub struct ReloadHandle {
    requests: mpsc::Sender<Reply>,
}

/// Where the engine sends one reload's outcome.
type Reply = oneshot::Sender<Result<ReloadReport, ReloadError>>;

/// The engine's end of the reload requests, and the file it reloads.
pub(super) struct Reloads {
    path: PathBuf,
    requests: mpsc::Receiver<Reply>,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReloadReport {
    /// Changed keys now in force (dotted, e.g. `feature_codes`, `menu.away`).
    pub applied: Vec<String>,
    /// Changed keys that take effect only after a restart (e.g. `sip.listen`, `store.path`);
    /// the engine keeps running on their old values.
    pub needs_restart: Vec<String>,
    /// The feature codes calls are served on now.
    pub feature_codes: Vec<String>,
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file cannot be read or does not load; the error names every problem.
    #[error("config not reloaded, the engine keeps its settings: {0}")]
    Config(#[from] ConfigError),
    /// The engine has stopped (or is not running yet).
    #[error("the engine is not running")]
    Stopped,
}

/// A handle and the engine's end, for the config file at `path`.
pub(super) fn channel(path: PathBuf) -> (ReloadHandle, Reloads) {
    // A few at most: reloads are handled one by one, and each is quick.
    let (tx, rx) = mpsc::channel(8);
    (
        ReloadHandle { requests: tx },
        Reloads { path, requests: rx },
    )
}

impl ReloadHandle {
    /// A handle with no engine behind it: each reload only loads and validates the file and
    /// reports the feature codes it enables. For the web side on its own (its tests, tools);
    /// needs a tokio runtime.
    pub fn validate_only(path: PathBuf) -> ReloadHandle {
        let (requests, mut incoming) = mpsc::channel::<Reply>(8);
        tokio::spawn(async move {
            while let Some(reply) = incoming.recv().await {
                let path = path.clone();
                let loaded = tokio::task::spawn_blocking(move || Config::load(&path)).await;
                let result = match loaded {
                    Ok(Ok(config)) => Ok(ReloadReport {
                        applied: Vec::new(),
                        needs_restart: Vec::new(),
                        feature_codes: config.enabled_feature_codes(),
                    }),
                    Ok(Err(error)) => Err(ReloadError::Config(error)),
                    Err(_) => Err(ReloadError::Stopped),
                };
                let _ = reply.send(result);
            }
        });
        ReloadHandle { requests }
    }

    /// Re-reads the config file and applies what can change while running; waits for the
    /// engine's answer.
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(reply)
            .await
            .map_err(|_| ReloadError::Stopped)?;
        answer.await.map_err(|_| ReloadError::Stopped)?
    }
}

/// The next reload request, or never when this engine takes none (the shell tests).
pub(super) async fn next(reloads: &mut Option<Reloads>) -> Option<Reply> {
    match reloads {
        Some(reloads) => reloads.requests.recv().await,
        None => std::future::pending().await,
    }
}

/// Reloads on every SIGHUP until the engine stops. The handler is installed before this
/// returns, so a SIGHUP after start-up never takes the default action (ending the process).
#[cfg(unix)]
pub(super) fn spawn_sighup_listener(handle: ReloadHandle) -> anyhow::Result<()> {
    use anyhow::Context;
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the config file");
            // The engine logs the outcome; only its end stops the listener.
            if let Err(ReloadError::Stopped) = handle.reload().await {
                break;
            }
        }
    });
    Ok(())
}

/// What to do with a new config on an engine running on `old`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReloadPlan {
    /// The engine's config from now on: `old` with the live settings of `new`.
    pub effective: Config,
    pub report: ReloadReport,
}

/// Which of `new`'s changes can be applied to an engine running on `old`, and which wait for
/// a restart.
pub fn plan(old: &Config, new: &Config) -> ReloadPlan {
    let effective = live_settings(old, new);
    let report = ReloadReport {
        applied: changed_keys(old, &effective),
        needs_restart: changed_keys(&effective, new),
        feature_codes: effective.enabled_feature_codes(),
    };
    ReloadPlan { effective, report }
}

/// `old` with every setting of `new` that a running engine can take: the feature codes and
/// trusted peers (the user agent's admission policy), `[menu]` and the per-call settings the
/// SIP task reads at each new call, SIP digest authentication but its realm (accounts keep
/// their HA1 for it), who may watch whom, and the web sessions' lifetimes and login limits. The rest is bound at start-up: sockets, the
/// store, the prompts encoded for the codecs and ptime, SIP timers, abuse limits, the
/// presence server's intervals and bodies.
fn live_settings(old: &Config, new: &Config) -> Config {
    let mut live = old.clone();
    live.feature_codes = new.feature_codes.clone();
    live.menu = new.menu.clone();
    live.sip.trusted_peers = new.sip.trusted_peers.clone();
    live.sip.answer_delay = new.sip.answer_delay;
    live.sip.auth = new.sip.auth;
    live.sip.nonce_lifetime = new.sip.nonce_lifetime;
    live.sip.digest_algorithms = new.sip.digest_algorithms.clone();
    live.sip.auth_methods = new.sip.auth_methods.clone();
    live.limits.auth = new.limits.auth.clone();
    live.media.dtmf_end_timeout = new.media.dtmf_end_timeout;
    live.media.rtp_ports = new.media.rtp_ports;
    live.media.symmetric_rtp = new.media.symmetric_rtp;
    live.media.rtp_timeout = new.media.rtp_timeout;
    live.media.inband = new.media.inband;
    live.presence.watchers = new.presence.watchers.clone();
    live.http.session_idle = new.http.session_idle;
    live.http.session_lifetime = new.http.session_lifetime;
    live.limits.http_login = new.limits.http_login.clone();
    live
}

/// The dotted keys whose values differ between `a` and `b`, sorted; a list counts as one
/// value (`feature_codes`, `sip.listen`).
fn changed_keys(a: &Config, b: &Config) -> Vec<String> {
    let table = |c: &Config| match toml::Value::try_from(c) {
        Ok(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    };
    let mut out = Vec::new();
    diff_tables("", &table(a), &table(b), &mut out);
    out.sort();
    out
}

fn diff_tables(prefix: &str, a: &toml::Table, b: &toml::Table, out: &mut Vec<String>) {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for key in keys {
        let dotted = match prefix {
            "" => key.clone(),
            _ => format!("{prefix}.{key}"),
        };
        match (a.get(key), b.get(key)) {
            (Some(toml::Value::Table(x)), Some(toml::Value::Table(y))) => {
                diff_tables(&dotted, x, y, out)
            }
            (x, y) if x != y => out.push(dotted),
            _ => {}
        }
    }
}

impl Engine {
    /// Tells the other nodes sharing our store about new feature codes (in the background:
    /// the change stands here whatever the store says).
    fn share_feature_codes(&self) {
        let Some(cluster) = self.cluster_store.clone() else {
            return;
        };
        let json = match serde_json::to_string(&self.config.feature_codes) {
            Ok(json) => json,
            Err(error) => {
                tracing::warn!(%error, "feature codes not shared");
                return;
            }
        };
        tokio::spawn(async move {
            let shared = tokio::task::spawn_blocking(move || {
                cluster.share_setting(crate::presence::cluster::FEATURE_CODES, &json)
            })
            .await;
            match shared {
                Ok(Ok(Some(version))) => {
                    tracing::info!(version, "feature codes shared with the other nodes")
                }
                Ok(Ok(None)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(%error, "feature codes not shared with the other nodes")
                }
                Err(_) => {}
            }
        });
    }

    /// Re-reads the config file and applies it (see the module docs); answers `reply`.
    pub(super) async fn reload(&mut self, reply: Reply) {
        let Some(path) = self.reloads.as_ref().map(|r| r.path.clone()) else {
            return;
        };
        let shown = path.clone();
        let loaded = tokio::task::spawn_blocking(move || Config::load(&path))
            .await
            .unwrap_or_else(|_| {
                Err(ConfigError::Read {
                    path: shown.clone(),
                    source: std::io::Error::other("the reading task failed"),
                })
            });
        let outcome = match loaded {
            Ok(new) => Ok(self.apply(new)),
            Err(error) => {
                tracing::warn!(path = %shown.display(), "config not reloaded, the engine keeps its settings: {error}");
                Err(ReloadError::Config(error))
            }
        };
        // The asker may have given up; the reload stands anyway.
        let _ = reply.send(outcome);
    }

    /// Feature codes another node changed: written into our config file (which stays the
    /// source of truth, comments kept) and applied like a reload. Nothing changes if they
    /// are ours already, or if the file would not load with them (logged).
    pub(super) async fn apply_shared_codes(&mut self, codes: Vec<FeatureCode>) {
        if codes == self.config.feature_codes {
            return;
        }
        let Some(path) = self.reloads.as_ref().map(|r| r.path.clone()) else {
            return;
        };
        let shown = path.clone();
        let written = tokio::task::spawn_blocking(move || {
            crate::config::edit::write_feature_codes(&path, &codes)
        })
        .await;
        match written {
            Ok(Ok(new)) => {
                tracing::info!(path = %shown.display(), "feature codes changed on another node; written here");
                self.apply(new);
            }
            Ok(Err(error)) => {
                tracing::warn!(path = %shown.display(), %error, "feature codes from another node not applied")
            }
            Err(_) => tracing::warn!("the feature-code writing task failed"),
        }
    }

    /// Applies the live settings of a valid `new` config.
    fn apply(&mut self, new: Config) -> ReloadReport {
        let ReloadPlan { effective, report } = plan(&self.config, &new);
        let old = std::mem::replace(&mut self.config, effective);
        let config = &self.config;
        if old.feature_codes != config.feature_codes
            || old.sip.trusted_peers != config.sip.trusted_peers
        {
            self.ua.set_policy(policy(config));
        }
        if old.feature_codes != config.feature_codes {
            self.share_feature_codes();
        }
        if AuthSettings::from_config(&old) != AuthSettings::from_config(config) {
            // The nonce key is kept by a running authenticator; this one is never used.
            self.ua
                .set_auth(AuthSettings::from_config(config), rand::random(), now());
        }
        if old.presence.watchers != config.presence.watchers {
            self.ua.set_watchers(watcher_policy(config));
        }
        if let Some(web_auth) = &self.web_auth {
            if (
                old.http.session_idle,
                old.http.session_lifetime,
                &old.limits.http_login,
            ) != (
                config.http.session_idle,
                config.http.session_lifetime,
                &config.limits.http_login,
            ) {
                web_auth.set_config(&config.http, &config.limits.http_login);
            }
        }
        tracing::info!(
            applied = ?report.applied,
            feature_codes = ?report.feature_codes,
            "config reloaded"
        );
        if !report.needs_restart.is_empty() {
            tracing::warn!(
                keys = ?report.needs_restart,
                "config changes that take effect only after a restart"
            );
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FeatureCode;
    use std::net::SocketAddr;
    use std::path::Path;

    fn load(text: &str) -> Config {
        Config::from_toml(text, Path::new("t.toml")).unwrap()
    }

    #[test]
    fn an_unchanged_file_changes_nothing() {
        let c = load("");
        let p = plan(&c, &c.clone());
        assert_eq!(p.effective, c);
        assert!(p.report.applied.is_empty() && p.report.needs_restart.is_empty());
        assert_eq!(p.report.feature_codes, ["*46", "*48"]);
    }

    #[test]
    fn feature_codes_menu_auth_and_watchers_apply_live() {
        let old = load("");
        let new = load(
            "feature_codes = [\"*47\", { code = \"*46\", enabled = false }]\n\
             [menu]\naway = \"7\"\n[sip]\nauth = \"always\"\ntrusted_peers = [\"10.0.0.0/8\"]\n\
             [presence.watchers]\n1001 = [\"2001\"]\n[limits.auth]\nlockout = \"30s\"\n\
             [http]\nsession_idle = \"5m\"\n[limits.http_login]\nfailures_per_user = 3\n",
        );
        let p = plan(&old, &new);
        assert_eq!(p.effective, new, "everything changed is live");
        assert_eq!(
            p.report.applied,
            [
                "feature_codes",
                "http.session_idle",
                "limits.auth.lockout",
                "limits.http_login.failures_per_user",
                "menu.away",
                "presence.watchers.1001",
                "sip.auth",
                "sip.trusted_peers",
            ]
        );
        assert!(p.report.needs_restart.is_empty());
        assert_eq!(p.report.feature_codes, ["*47"]);
        assert_eq!(
            p.effective.feature_codes,
            [FeatureCode::enabled("*47"), FeatureCode::disabled("*46")]
        );
    }

    #[test]
    fn bound_settings_wait_for_a_restart_and_keep_their_old_values() {
        let old = load("");
        let new = load(
            "feature_codes = [\"*47\"]\n[store]\npath = \"other.db\"\n\
             [sip]\nlisten = [\"udp:127.0.0.1:5070\"]\nrealm = \"office\"\nt1 = \"1s\"\n\
             [media]\nptime = 40\n[limits]\nmax_sources = 100\n",
        );
        let p = plan(&old, &new);
        assert_eq!(p.report.applied, ["feature_codes"]);
        assert_eq!(
            p.report.needs_restart,
            [
                "limits.max_sources",
                "media.ptime",
                "sip.listen",
                "sip.realm",
                "sip.t1",
                "store.path"
            ]
        );
        assert_eq!(p.effective.store.path, old.store.path);
        assert_eq!(p.effective.sip.listen, old.sip.listen);
        assert_eq!(p.effective.sip.realm, old.sip.realm);
        assert_eq!(p.effective.media.ptime, 20);
        // A second reload of the same file still reports them: they are still not in force.
        let again = plan(&p.effective, &new);
        assert!(again.report.applied.is_empty());
        assert_eq!(again.report.needs_restart, p.report.needs_restart);
    }

    /// INVITE to `code` from extension 1001 at `phone`.
    fn invite(code: &str, phone: SocketAddr, call_id: &str) -> String {
        let sdp = "v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                   m=audio 9 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";
        format!(
            "INVITE sip:{code}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {phone};branch=z9hG4bK{call_id}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:1001@127.0.0.1>;tag=t{call_id}\r\nTo: <sip:{code}@127.0.0.1>\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:1001@{phone}>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        )
    }

    /// The status line of the engine's first answer to an INVITE to `code` (messages of
    /// earlier calls are skipped).
    async fn answer(
        phone: &tokio::net::UdpSocket,
        engine: SocketAddr,
        code: &str,
        call_id: &str,
    ) -> String {
        let me = phone.local_addr().unwrap();
        phone
            .send_to(invite(code, me, call_id).as_bytes(), engine)
            .await
            .unwrap();
        let mut buf = vec![0u8; 8192];
        loop {
            let (n, _) =
                tokio::time::timeout(std::time::Duration::from_secs(5), phone.recv_from(&mut buf))
                    .await
                    .expect("an answer")
                    .unwrap();
            let message = String::from_utf8_lossy(&buf[..n]);
            if message.contains(&format!("Call-ID: {call_id}\r\n")) {
                return message.lines().next().unwrap_or_default().to_string();
            }
        }
    }

    /// The real engine over loopback UDP, reloaded through its handle: the report, then the
    /// next INVITEs meet the new codes; a broken file changes nothing.
    #[tokio::test]
    async fn the_engine_reloads_through_its_handle() {
        use crate::media::Codec;
        use crate::presence::sqlite::SqliteStore;
        use crate::presence::PresenceStore;
        use crate::runtime::transport::{self, Inbound, Outbound};
        use crate::sip::ua::UserAgent;
        use std::sync::Arc;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("starcode.toml");
        let text = format!(
            "# kept\nfeature_codes = [\"*46\"]\n[store]\npath = \"{}\"\n[media]\ncodecs = [\"PCMU\"]\n",
            dir.path().join("presence.db").display()
        );
        std::fs::write(&path, &text).unwrap();
        let config = Config::load(&path).unwrap();
        let store = Arc::new(SqliteStore::open(&config.store.path).unwrap());
        let web_auth = Arc::new(
            crate::web_auth::service::WebAuth::new(
                store.clone(),
                store.clone(),
                &config.http,
                &config.limits.http_login,
            )
            .unwrap(),
        );
        let prompts = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
        let catalog = Arc::new(
            crate::media::PromptCatalog::load(&prompts, "en", &[Codec::Pcmu], 20).unwrap(),
        );
        let (inbound_tx, inbound) = mpsc::channel::<Inbound>(64);
        let socket = Arc::new(transport::bind_udp("127.0.0.1:0".parse().unwrap()).unwrap());
        let engine_addr: SocketAddr = socket.local_addr().unwrap();
        let mut outbound = Outbound::new(inbound_tx.clone());
        outbound.add_udp(socket.clone());
        tokio::spawn(transport::udp_loop(socket, inbound_tx));
        let mut ua = UserAgent::new(super::super::ua_settings(&config), 7).unwrap();
        ua.set_auth(AuthSettings::from_config(&config), [7; 32], now());
        let changes = store.subscribe();
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let mut engine = Engine::new(config, catalog, store, ua, outbound, metrics);
        let (handle, reloads) = channel(path.clone());
        engine.reloads = Some(reloads);
        engine.web_auth = Some(web_auth.clone());
        let running = tokio::spawn(engine.serve(inbound, changes, std::future::pending()));

        let phone = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        assert_eq!(
            answer(&phone, engine_addr, "*47", "h1").await,
            "SIP/2.0 404 Not Found"
        );

        // As the web layer does: write the file, then ask for the reload.
        crate::config::edit::write_feature_codes(
            &path,
            &[FeatureCode::enabled("*47"), FeatureCode::disabled("*46")],
        )
        .unwrap();
        let report = handle.reload().await.unwrap();
        assert_eq!(report.applied, ["feature_codes"]);
        assert!(report.needs_restart.is_empty());
        assert_eq!(report.feature_codes, ["*47"]);
        assert_eq!(
            answer(&phone, engine_addr, "*46", "h2").await,
            "SIP/2.0 404 Not Found"
        );
        assert_eq!(
            answer(&phone, engine_addr, "*47", "h3").await,
            "SIP/2.0 100 Trying"
        );

        // Browser sessions take new lifetimes at once.
        let mut edited = std::fs::read_to_string(&path).unwrap();
        edited.push_str("[http]\nsession_idle = \"5m\"\n");
        std::fs::write(&path, edited).unwrap();
        let report = handle.reload().await.unwrap();
        assert_eq!(report.applied, ["http.session_idle"]);
        assert_eq!(
            web_auth.session_settings().idle,
            std::time::Duration::from_secs(300)
        );

        std::fs::write(&path, "feature_codes = [\"*4A\"]\n[media]\nptime = 25\n").unwrap();
        match handle.reload().await {
            Err(ReloadError::Config(ConfigError::Invalid { problems, .. })) => {
                let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
                assert_eq!(keys, ["feature_codes[0]", "media.ptime"]);
            }
            other => panic!("expected the problems, got {other:?}"),
        }
        assert_eq!(
            answer(&phone, engine_addr, "*46", "h4").await,
            "SIP/2.0 404 Not Found"
        );
        running.abort();
    }

    #[tokio::test]
    async fn a_handle_without_an_engine_says_so() {
        let (handle, reloads) = channel(PathBuf::from("x.toml"));
        drop(reloads);
        assert!(matches!(handle.reload().await, Err(ReloadError::Stopped)));
    }
}
