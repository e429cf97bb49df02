//! Typed configuration, validated at load so a typo is caught before the first call, with
//! errors that name the key and say what is wrong.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::dtmf::inband::{InbandConfig, InbandDetector, ANALYSIS_RATE};
use crate::dtmf::Key;
use crate::media::Codec;
use crate::presence::StatusKind;

mod auth;
pub mod edit;
mod feature_codes;
mod http;
mod limits;
mod login_limits;
mod store_url;
pub use auth::{AuthLimitsConfig, AuthMode, AUTH_METHODS};
pub use feature_codes::FeatureCode;
pub use http::HttpConfig;
pub use limits::{LimitsConfig, RateConfig, TcpLimitsConfig};
pub use login_limits::LoginLimitsConfig;
use store_url::store_url_problem;

/// The config file used when none is given on the command line.
pub const DEFAULT_PATH: &str = "config/starcode.toml";

/// Everything an admin can set. Relative paths are relative to the working directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Dialled codes that reach the presence menu, e.g. `*46`, each enabled or not; calls are
    /// served on [`Config::enabled_feature_codes`].
    pub feature_codes: Vec<FeatureCode>,
    pub menu: MenuConfig,
    pub prompts: PromptsConfig,
    pub store: StoreConfig,
    pub media: MediaConfig,
    pub sip: SipConfig,
    pub presence: PresenceConfig,
    /// Abuse limits per source and in total.
    pub limits: LimitsConfig,
    /// The web pages and the HTTP API.
    pub http: HttpConfig,
}

/// The presence server: subscriptions, NOTIFY delivery, PUBLISH and what bodies say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PresenceConfig {
    /// Shorter SUBSCRIBE/PUBLISH intervals get `423` with this Min-Expires (seconds).
    pub min_expires: u32,
    /// Longer intervals are shortened to this (seconds).
    pub max_expires: u32,
    /// Offer `application/xpidf+xml` to old phones that do not accept PIDF.
    pub xpidf: bool,
    /// Consecutive failed NOTIFYs before a watcher is dropped (one lost NOTIFY must not kill a
    /// key's LED).
    pub max_notify_failures: u32,
    /// Who may watch whom: extension -> watchers. Empty (the default): any watcher from a
    /// trusted peer may watch any extension.
    pub watchers: std::collections::BTreeMap<String, Vec<String>>,
    /// What each status looks like in a PIDF body (basic, RPID activity, note).
    pub mapping: crate::presence::pidf::PidfMapping,
}

impl Default for PresenceConfig {
    fn default() -> PresenceConfig {
        PresenceConfig {
            min_expires: 60,
            max_expires: 3600,
            xpidf: true,
            max_notify_failures: 5,
            watchers: Default::default(),
            mapping: Default::default(),
        }
    }
}

/// The voice menu: which key picks which status, and how patient the menu is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MenuConfig {
    pub unavailable: Key,
    pub available: Key,
    pub away: Key,
    pub chat: Key,
    pub dnd: Key,
    pub custom: Key,
    /// Keys that confirm the chosen status.
    pub confirm_keys: Vec<Key>,
    /// Keys that go back to the menu from the confirmation.
    pub reselect_keys: Vec<Key>,
    /// How long to wait for a key after a prompt ends.
    pub first_key_timeout: HumanDuration,
    /// Menu plays (first try included) before the call gives up with nothing changed.
    pub menu_attempts: u8,
    /// Confirmation plays before the call gives up with nothing changed.
    pub confirm_attempts: u8,
    /// Hard limit on a call's length; the call ends with nothing changed.
    pub max_call_time: HumanDuration,
}

/// Where the recorded prompts live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PromptsConfig {
    /// Folder holding one sub-folder per language.
    pub dir: PathBuf,
    /// Sub-folder of `dir` to play, e.g. `en`.
    pub language: String,
}

/// The presence store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The embedded SQLite database file; created on first use. The default store.
    pub path: PathBuf,
    /// A PostgreSQL database several nodes share (`postgres://user@host:port/db`), instead
    /// of `path`; `stores::Stores::open` picks the backend. The password may be in the URL
    /// or in `PGPASSWORD`; it is never logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// RTP media settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// Packet duration of the prompts we send, in milliseconds.
    pub ptime: u32,
    /// Codecs we accept, most preferred first.
    pub codecs: Vec<Codec>,
    /// A telephone-event press whose end packets were all lost is released after this.
    pub dtmf_end_timeout: HumanDuration,
    /// Local UDP ports for call media, as `FIRST-LAST`; one port per call.
    pub rtp_ports: PortRange,
    /// Send our RTP to where the caller's RTP comes from (NAT-friendly), not only to the SDP address.
    pub symmetric_rtp: bool,
    /// A call with no RTP from the caller for this long is ended with BYE.
    pub rtp_timeout: HumanDuration,
    /// Key tones found in the caller's audio.
    pub inband: InbandSettings,
}

/// The in-band key detector's settings a deployment may need to change: lines that are hot or
/// weak, or phones with unusual twist. The finer thresholds stay at their Q.24-tested defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InbandSettings {
    /// Listen for key tones in the audio at all (off: RFC 4733 and SIP INFO only).
    pub enabled: bool,
    /// Weakest tone accepted, dBm0 per tone.
    pub min_tone_level_dbm0: f32,
    /// How much louder (dB) the high tone may be than the low one.
    pub max_normal_twist_db: f32,
    /// How much louder (dB) the low tone may be than the high one.
    pub max_reverse_twist_db: f32,
}

impl Default for InbandSettings {
    fn default() -> InbandSettings {
        let d = InbandConfig::default();
        InbandSettings {
            enabled: true,
            min_tone_level_dbm0: d.min_tone_level_dbm0,
            max_normal_twist_db: d.max_normal_twist_db,
            max_reverse_twist_db: d.max_reverse_twist_db,
        }
    }
}

impl InbandSettings {
    /// The detector configuration, or `None` when in-band detection is off.
    pub fn detector_config(&self) -> Option<InbandConfig> {
        self.enabled.then(|| InbandConfig {
            min_tone_level_dbm0: self.min_tone_level_dbm0,
            max_normal_twist_db: self.max_normal_twist_db,
            max_reverse_twist_db: self.max_reverse_twist_db,
            ..InbandConfig::default()
        })
    }
}

/// SIP transport settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// Sockets to listen on, as `udp:ADDR:PORT` or `tcp:ADDR:PORT` (`udp:[::]:5060` for IPv6).
    pub listen: Vec<ListenAddr>,
    /// Only requests from these networks are served (others get 403); they may also assert the
    /// caller with P-Asserted-Identity.
    pub trusted_peers: Vec<ipnet::IpNet>,
    /// The address put in Contact and SDP when listening on a wildcard address.
    pub advertised_address: Option<std::net::IpAddr>,
    /// Ring (180 Ringing) this long before answering; 0 answers at once.
    pub answer_delay: HumanDuration,
    /// RFC 3261 timer T1 (round-trip estimate).
    pub t1: HumanDuration,
    /// RFC 3261 timer T2 (longest retransmission interval).
    pub t2: HumanDuration,
    /// RFC 3261 timer T4 (how long a message may stay in the network).
    pub t4: HumanDuration,
    /// Who must authenticate with SIP digest: `untrusted` (everyone but trusted peers),
    /// `always`, or `never` (trusted peers only, as before accounts).
    pub auth: AuthMode,
    /// The digest realm: accounts keep their HA1 for it, so changing it needs the secrets again.
    pub realm: String,
    /// How long a challenge's nonce is good; an older one gets `stale=true` and phones retry
    /// without asking the user.
    pub nonce_lifetime: HumanDuration,
    /// Digest algorithms offered, one challenge each, in this order (RFC 8760).
    pub digest_algorithms: Vec<crate::accounts::DigestAlgorithm>,
    /// Requests that are challenged (of INVITE, SUBSCRIBE, PUBLISH, INFO, BYE).
    pub auth_methods: Vec<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            feature_codes: vec![FeatureCode::enabled("*46"), FeatureCode::enabled("*48")],
            menu: MenuConfig::default(),
            prompts: PromptsConfig::default(),
            store: StoreConfig::default(),
            media: MediaConfig::default(),
            sip: SipConfig::default(),
            presence: PresenceConfig::default(),
            limits: LimitsConfig::default(),
            http: HttpConfig::default(),
        }
    }
}

impl Default for MenuConfig {
    fn default() -> MenuConfig {
        MenuConfig {
            unavailable: Key::D1,
            available: Key::D2,
            away: Key::D3,
            chat: Key::D4,
            dnd: Key::D5,
            custom: Key::D6,
            confirm_keys: vec![Key::D1, Key::Pound],
            reselect_keys: vec![Key::D2, Key::Star],
            first_key_timeout: HumanDuration(Duration::from_secs(10)),
            menu_attempts: 3,
            confirm_attempts: 3,
            max_call_time: HumanDuration(Duration::from_secs(180)),
        }
    }
}

impl Default for PromptsConfig {
    fn default() -> PromptsConfig {
        PromptsConfig {
            dir: PathBuf::from("prompts"),
            language: "en".into(),
        }
    }
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            path: PathBuf::from("data/presence.db"),
            url: None,
        }
    }
}

impl Default for MediaConfig {
    fn default() -> MediaConfig {
        MediaConfig {
            ptime: 20,
            codecs: Codec::ALL.to_vec(),
            dtmf_end_timeout: HumanDuration(Duration::from_millis(300)),
            rtp_ports: PortRange {
                first: 20_000,
                last: 29_999,
            },
            symmetric_rtp: true,
            rtp_timeout: HumanDuration(Duration::from_secs(30)),
            inband: InbandSettings::default(),
        }
    }
}

impl Default for SipConfig {
    fn default() -> SipConfig {
        SipConfig {
            listen: vec![
                ListenAddr {
                    transport: ListenTransport::Udp,
                    addr: SocketAddr::from(([0, 0, 0, 0], 5060)),
                },
                ListenAddr {
                    transport: ListenTransport::Tcp,
                    addr: SocketAddr::from(([0, 0, 0, 0], 5060)),
                },
            ],
            trusted_peers: ["127.0.0.0/8", "::1/128"]
                .iter()
                .filter_map(|n| n.parse().ok())
                .collect(),
            advertised_address: None,
            answer_delay: HumanDuration(Duration::ZERO),
            t1: HumanDuration(Duration::from_millis(500)),
            t2: HumanDuration(Duration::from_secs(4)),
            t4: HumanDuration(Duration::from_secs(5)),
            auth: AuthMode::Untrusted,
            realm: "starcode".into(),
            nonce_lifetime: HumanDuration(Duration::from_secs(300)),
            digest_algorithms: crate::accounts::DigestAlgorithm::ALL.to_vec(),
            auth_methods: AUTH_METHODS.iter().map(|m| m.to_string()).collect(),
        }
    }
}

impl MenuConfig {
    /// The menu in the product's order: (key, status) for each of the six statuses.
    pub fn entries(&self) -> [(Key, StatusKind); 6] {
        [
            (self.unavailable, StatusKind::Unavailable),
            (self.available, StatusKind::Available),
            (self.away, StatusKind::Away),
            (self.chat, StatusKind::Chat),
            (self.dnd, StatusKind::DoNotDisturb),
            (self.custom, StatusKind::Custom),
        ]
    }

    /// The status a key selects in the menu, if any.
    pub fn status_for(&self, key: Key) -> Option<StatusKind> {
        self.entries()
            .into_iter()
            .find(|(k, _)| *k == key)
            .map(|(_, s)| s)
    }
}

/// A config that failed to load: every problem found, each naming its key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config file {path} is invalid:\n{}", .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

/// One validation problem: the dotted key and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text, path)
    }

    /// Parses and validates config text; `path` is only used in error messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let syntax = |message: String| ConfigError::Syntax {
            path: path.to_path_buf(),
            message,
        };
        let deserializer =
            toml::Deserializer::parse(text).map_err(|e| syntax(e.to_string().trim_end().into()))?;
        let config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let message = inner.message().to_string();
            let at = inner
                .span()
                .map(|span| {
                    let line = text[..span.start.min(text.len())].lines().count().max(1);
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            if key == "." {
                syntax(format!("{message}{at}"))
            } else {
                syntax(format!("{key}: {message}{at}"))
            }
        })?;
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                problems,
            })
        }
    }

    /// The effective config as TOML, for `check-config`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print config: {e}\n"))
    }

    /// Every rule the types alone cannot express.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = feature_codes::problems(&self.feature_codes);
        let mut problem = |key: String, message: String| out.push(Problem { key, message });

        let menu = &self.menu;
        let mut seen_keys: BTreeMap<Key, StatusKind> = BTreeMap::new();
        for (key, status) in menu.entries() {
            if let Some(other) = seen_keys.insert(key, status) {
                problem(
                    format!("menu.{}", status.as_str()),
                    format!(
                        "key '{key}' is already used for menu.{}; each status needs its own key",
                        other.as_str()
                    ),
                );
            }
        }
        for (name, keys) in [
            ("confirm_keys", &menu.confirm_keys),
            ("reselect_keys", &menu.reselect_keys),
        ] {
            if keys.is_empty() {
                problem(format!("menu.{name}"), "at least one key is needed".into());
            }
            let mut seen = Vec::new();
            for key in keys {
                if seen.contains(key) {
                    problem(
                        format!("menu.{name}"),
                        format!("key '{key}' is listed twice"),
                    );
                }
                seen.push(*key);
            }
        }
        for key in &menu.confirm_keys {
            if menu.reselect_keys.contains(key) {
                problem(
                    "menu.reselect_keys".into(),
                    format!("key '{key}' is also a confirm key; a key cannot both confirm and re-select"),
                );
            }
        }
        for (name, attempts) in [
            ("menu_attempts", menu.menu_attempts),
            ("confirm_attempts", menu.confirm_attempts),
        ] {
            if !(1..=10).contains(&attempts) {
                problem(
                    format!("menu.{name}"),
                    format!("{attempts} is out of range; use 1 to 10"),
                );
            }
        }
        let first_key = menu.first_key_timeout.0;
        if first_key < Duration::from_secs(1) || first_key > Duration::from_secs(120) {
            problem(
                "menu.first_key_timeout".into(),
                format!("{} is out of range; use 1s to 2m", menu.first_key_timeout),
            );
        }
        let max_call = menu.max_call_time.0;
        if max_call < Duration::from_secs(10) || max_call > Duration::from_secs(3600) {
            problem(
                "menu.max_call_time".into(),
                format!("{} is out of range; use 10s to 1h", menu.max_call_time),
            );
        }

        if self.prompts.language.is_empty()
            || !self
                .prompts
                .language
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            problem(
                "prompts.language".into(),
                format!(
                    "\"{}\" is not a language folder name (letters, digits, - and _)",
                    self.prompts.language
                ),
            );
        }
        if self.store.path.as_os_str().is_empty() {
            problem("store.path".into(), "must not be empty".into());
        }
        if let Some(url) = &self.store.url {
            if let Some(why) = store_url_problem(url, &self.store.path) {
                problem("store.url".into(), why);
            }
        }

        if ![10, 20, 30, 40, 60].contains(&self.media.ptime) {
            problem(
                "media.ptime".into(),
                format!(
                    "{} ms is not supported; use 10, 20, 30, 40 or 60",
                    self.media.ptime
                ),
            );
        }
        if self.media.ptime == 30 && self.media.codecs.contains(&Codec::Opus) {
            problem(
                "media.ptime".into(),
                "30 ms is not an Opus frame size; use 10, 20, 40 or 60, or remove opus from media.codecs".into(),
            );
        }
        if self.media.codecs.is_empty() {
            problem("media.codecs".into(), "at least one codec is needed".into());
        }
        let end = self.media.dtmf_end_timeout.0;
        if end < Duration::from_millis(100) || end > Duration::from_secs(5) {
            problem(
                "media.dtmf_end_timeout".into(),
                format!(
                    "{} is out of range; use 100ms to 5s",
                    self.media.dtmf_end_timeout
                ),
            );
        }
        if let Some(inband) = self.media.inband.detector_config() {
            if let Err(error) = InbandDetector::with_config(ANALYSIS_RATE, inband) {
                problem("media.inband".into(), error.to_string());
            }
            let level = self.media.inband.min_tone_level_dbm0;
            if !(-45.0..=-10.0).contains(&level) {
                problem(
                    "media.inband.min_tone_level_dbm0".into(),
                    format!("{level} is out of range; use -45 to -10 dBm0 (default -30)"),
                );
            }
            for (key, db) in [
                ("max_normal_twist_db", self.media.inband.max_normal_twist_db),
                (
                    "max_reverse_twist_db",
                    self.media.inband.max_reverse_twist_db,
                ),
            ] {
                if !(0.0..=16.0).contains(&db) {
                    problem(
                        format!("media.inband.{key}"),
                        format!("{db} is out of range; use 0 to 16 dB"),
                    );
                }
            }
        }
        if self.media.rtp_ports.first < 1024
            || self.media.rtp_ports.first > self.media.rtp_ports.last
        {
            problem(
                "media.rtp_ports".into(),
                format!(
                    "{} is not a range of unprivileged ports (e.g. \"20000-29999\")",
                    self.media.rtp_ports
                ),
            );
        }
        let rtp_timeout = self.media.rtp_timeout.0;
        if rtp_timeout < Duration::from_secs(2) || rtp_timeout > Duration::from_secs(600) {
            problem(
                "media.rtp_timeout".into(),
                format!("{} is out of range; use 2s to 10m", self.media.rtp_timeout),
            );
        }
        if self.sip.listen.is_empty() {
            problem("sip.listen".into(), "at least one address is needed".into());
        }
        if self.sip.answer_delay.0 > Duration::from_secs(30) {
            problem(
                "sip.answer_delay".into(),
                format!("{} is out of range; use 0s to 30s", self.sip.answer_delay),
            );
        }
        let presence = &self.presence;
        if presence.min_expires == 0 || presence.min_expires > presence.max_expires {
            problem(
                "presence.min_expires".into(),
                format!(
                    "{} must be at least 1 and at most presence.max_expires ({})",
                    presence.min_expires, presence.max_expires
                ),
            );
        }
        if presence.max_expires > 86_400 {
            problem(
                "presence.max_expires".into(),
                format!(
                    "{} is out of range; use up to 86400 (one day)",
                    presence.max_expires
                ),
            );
        }
        if !(1..=100).contains(&presence.max_notify_failures) {
            problem(
                "presence.max_notify_failures".into(),
                format!(
                    "{} is out of range; use 1 to 100",
                    presence.max_notify_failures
                ),
            );
        }
        for (extension, watchers) in &presence.watchers {
            for watcher in std::iter::once(extension).chain(watchers) {
                if crate::presence::validate_extension(watcher).is_err() {
                    problem(
                        format!("presence.watchers.{extension}"),
                        format!("\"{watcher}\" is not an extension"),
                    );
                }
            }
        }
        if let Err(errors) = presence.mapping.validate() {
            for e in errors {
                problem(format!("presence.mapping.{}", e.key), e.message);
            }
        }
        let (t1, t2, t4) = (self.sip.t1.0, self.sip.t2.0, self.sip.t4.0);
        if t1 < Duration::from_millis(50) || t1 > Duration::from_secs(10) {
            problem(
                "sip.t1".into(),
                format!("{} is out of range; use 50ms to 10s", self.sip.t1),
            );
        }
        if t2 < t1 {
            problem(
                "sip.t2".into(),
                format!("{} is shorter than sip.t1 ({})", self.sip.t2, self.sip.t1),
            );
        }
        if t4 < t1 || t4 > Duration::from_secs(60) {
            problem(
                "sip.t4".into(),
                format!("{} is out of range; use sip.t1 to 60s", self.sip.t4),
            );
        }
        out.extend(auth::sip_auth_problems(&self.sip));
        out.extend(self.limits.problems());
        out.extend(self.http.problems());
        out
    }

    /// The feature codes calls are served on (the enabled ones), in file order.
    pub fn enabled_feature_codes(&self) -> Vec<String> {
        feature_codes::enabled_codes(&self.feature_codes)
    }

    /// The folder holding this language's prompt files.
    pub fn prompt_language_dir(&self) -> PathBuf {
        self.prompts.dir.join(&self.prompts.language)
    }
}

/// A duration written the way people write it in config: `10s`, `300ms`, `3m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<HumanDuration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "\"{s}\" is not a duration ({e}); write e.g. \"10s\" or \"300ms\""
                ))
            })
    }
}

/// An inclusive range of UDP ports, written `FIRST-LAST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    /// How many ports the range holds.
    pub fn len(&self) -> usize {
        usize::from(self.last.saturating_sub(self.first)) + 1
    }

    /// True when the range holds no port (never after validation).
    pub fn is_empty(&self) -> bool {
        self.first > self.last
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<PortRange, String> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("\"{s}\" should look like 20000-29999"))?;
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .map_err(|e| format!("\"{p}\" is not a port ({e})"))
        };
        Ok(PortRange {
            first: port(a)?,
            last: port(b)?,
        })
    }
}

impl Serialize for PortRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PortRange, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The transport of a listening socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenTransport {
    Udp,
    Tcp,
}

/// One socket to listen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenAddr {
    pub transport: ListenTransport,
    pub addr: SocketAddr,
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = match self.transport {
            ListenTransport::Udp => "udp",
            ListenTransport::Tcp => "tcp",
        };
        write!(f, "{t}:{}", self.addr)
    }
}

impl FromStr for ListenAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<ListenAddr, String> {
        let (t, addr) = s
            .split_once(':')
            .ok_or_else(|| format!("\"{s}\" should look like udp:0.0.0.0:5060 or tcp:[::]:5060"))?;
        let transport = match t.to_ascii_lowercase().as_str() {
            "udp" => ListenTransport::Udp,
            "tcp" => ListenTransport::Tcp,
            other => return Err(format!("\"{other}\" is not a transport; use udp or tcp")),
        };
        let addr = addr
            .parse()
            .map_err(|e| format!("\"{addr}\" is not an address:port ({e})"))?;
        Ok(ListenAddr { transport, addr })
    }
}

impl Serialize for ListenAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ListenAddr, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("test.toml"))
    }

    fn problems(text: &str) -> Vec<String> {
        match load(text) {
            Err(ConfigError::Invalid { problems, .. }) => {
                problems.iter().map(ToString::to_string).collect()
            }
            other => panic!("expected validation problems, got {other:?}"),
        }
    }

    #[test]
    fn in_band_settings_are_checked_and_can_turn_detection_off() {
        let c = load("[media.inband]\nenabled = false\n").unwrap();
        assert_eq!(c.media.inband.detector_config(), None);
        let c = load("[media.inband]\nmin_tone_level_dbm0 = -25.0\n").unwrap();
        let d = c.media.inband.detector_config().unwrap();
        assert_eq!(d.min_tone_level_dbm0, -25.0);
        assert_eq!(d.max_normal_twist_db, 8.0);
        let p =
            problems("[media.inband]\nmin_tone_level_dbm0 = 3.0\nmax_reverse_twist_db = -1.0\n");
        assert!(
            p.iter()
                .any(|p| p.contains("media.inband.min_tone_level_dbm0")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|p| p.contains("media.inband.max_reverse_twist_db")),
            "{p:?}"
        );
        let typo = load("[media.inband]\nmin_level = -20.0\n").unwrap_err();
        assert!(
            typo.to_string().contains("media.inband.min_level"),
            "{typo}"
        );
    }

    #[test]
    fn empty_file_gives_the_documented_defaults() {
        let c = load("").unwrap();
        assert_eq!(c.enabled_feature_codes(), ["*46", "*48"]);
        assert_eq!(c.menu.status_for(Key::D5), Some(StatusKind::DoNotDisturb));
        assert_eq!(c.menu.confirm_keys, [Key::D1, Key::Pound]);
        assert_eq!(c.menu.reselect_keys, [Key::D2, Key::Star]);
        assert_eq!(c.menu.first_key_timeout.0, Duration::from_secs(10));
        assert_eq!((c.menu.menu_attempts, c.menu.confirm_attempts), (3, 3));
        assert_eq!(c.store.path, Path::new("data/presence.db"));
        assert_eq!(c.media.ptime, 20);
    }

    #[test]
    fn shipped_config_is_valid_and_matches_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_PATH);
        let shipped = Config::load(&path).unwrap();
        assert_eq!(shipped, Config::default());
    }

    #[test]
    fn printed_config_loads_back_identically() {
        let c = load("feature_codes = [\"*99\"]\n[menu]\naway = \"9\"\n").unwrap();
        assert_eq!(load(&c.to_toml()).unwrap(), c);
    }

    #[test]
    fn feature_codes_are_checked() {
        let p =
            problems("feature_codes = [\"*46\", \"*4A\", \"*46\", \"\", \"12345678901234567\"]");
        assert_eq!(
            p,
            [
                "feature_codes[1]: \"*4A\" contains 'A'; only 0-9, * and # are allowed",
                "feature_codes[2]: \"*46\" is listed twice (also feature_codes[0])",
                "feature_codes[3]: a feature code cannot be empty",
                "feature_codes[4]: \"12345678901234567\" has 17 characters; at most 16 are allowed",
            ]
        );
        assert_eq!(
            problems("feature_codes = []"),
            ["feature_codes: at least one feature code is needed, e.g. [\"*46\"]"]
        );
        assert_eq!(
            load("feature_codes = [\"#9*\"]")
                .unwrap()
                .enabled_feature_codes(),
            ["#9*"]
        );
    }

    #[test]
    fn a_feature_code_is_a_string_or_a_table_with_an_enabled_flag() {
        let c = load(
            "feature_codes = [\"*46\", { code = \"*48\", enabled = false }, { code = \"*49\" }]",
        )
        .unwrap();
        assert_eq!(
            c.feature_codes,
            [
                FeatureCode::enabled("*46"),
                FeatureCode::disabled("*48"),
                FeatureCode::enabled("*49"),
            ]
        );
        assert_eq!(c.enabled_feature_codes(), ["*46", "*49"]);
        // Printed back: enabled codes stay plain strings, a disabled one a table.
        let printed = c.to_toml();
        assert!(printed.contains("\"*46\""), "{printed}");
        assert_eq!(load(&printed).unwrap(), c);
        // Disabled codes are still checked: they can be switched back on.
        assert_eq!(
            problems("feature_codes = [\"*46\", { code = \"*4A\", enabled = false }, { code = \"*46\", enabled = false }]"),
            [
                "feature_codes[1]: \"*4A\" contains 'A'; only 0-9, * and # are allowed",
                "feature_codes[2]: \"*46\" is listed twice (also feature_codes[0])",
            ]
        );
        assert_eq!(
            problems("feature_codes = [{ code = \"*46\", enabled = false }]"),
            ["feature_codes: every code is disabled; at least one must be enabled, or no call reaches the menu"]
        );
        for (text, named) in [
            ("feature_codes = [46]", "feature_codes[0]"),
            (
                "feature_codes = [\"*46\", { code = \"*48\", enable = false }]",
                "feature_codes[1]",
            ),
            ("feature_codes = [{ enabled = true }]", "feature_codes[0]"),
        ] {
            match load(text) {
                Err(ConfigError::Syntax { message, .. }) => {
                    assert!(message.contains(named), "{text}: {message}");
                    assert!(message.contains("enabled = false }"), "{text}: {message}");
                }
                other => panic!("{text}: expected a syntax error, got {other:?}"),
            }
        }
    }

    #[test]
    fn menu_keys_must_not_collide() {
        let p = problems(
            "[menu]\naway = \"1\"\nconfirm_keys = [\"#\", \"#\"]\nreselect_keys = [\"#\"]\n",
        );
        assert_eq!(
            p,
            [
                "menu.away: key '1' is already used for menu.unavailable; each status needs its own key",
                "menu.confirm_keys: key '#' is listed twice",
                "menu.reselect_keys: key '#' is also a confirm key; a key cannot both confirm and re-select",
                "menu.reselect_keys: key '#' is also a confirm key; a key cannot both confirm and re-select",
            ]
        );
    }

    #[test]
    fn ranges_are_checked() {
        let p = problems(
            "[menu]\nmenu_attempts = 0\nfirst_key_timeout = \"500ms\"\n[media]\nptime = 25\ncodecs = []\n",
        );
        assert_eq!(
            p,
            [
                "menu.menu_attempts: 0 is out of range; use 1 to 10",
                "menu.first_key_timeout: 500ms is out of range; use 1s to 2m",
                "media.ptime: 25 ms is not supported; use 10, 20, 30, 40 or 60",
                "media.codecs: at least one codec is needed",
            ]
        );
    }

    #[test]
    fn syntax_errors_name_the_key() {
        let cases = [
            ("[menu]\naway = \"x\"\n", "menu.away"),
            (
                "[menu]\nfirst_key_timeout = \"soon\"\n",
                "first_key_timeout",
            ),
            ("[media]\ncodecs = [\"G729\"]\n", "codecs"),
            ("[sip]\nlisten = [\"sctp:1.2.3.4:5\"]\n", "listen"),
            ("[menu]\nawya = \"3\"\n", "awya"),
            ("feature_codes = \"*46\"", "feature_codes"),
        ];
        for (text, key) in cases {
            match load(text) {
                Err(ConfigError::Syntax { message, .. }) => {
                    assert!(message.contains(key), "{key} not named in: {message}")
                }
                other => panic!("{text}: expected a syntax error, got {other:?}"),
            }
        }
    }

    #[test]
    fn listen_addresses_parse_ipv4_and_ipv6() {
        let c = load("[sip]\nlisten = [\"udp:[::1]:5070\", \"TCP:127.0.0.1:5061\"]\n").unwrap();
        assert_eq!(c.sip.listen[0].to_string(), "udp:[::1]:5070");
        assert_eq!(c.sip.listen[1].transport, ListenTransport::Tcp);
    }

    #[test]
    fn auth_settings_are_read_and_checked() {
        let c = load("[sip]\nauth = \"always\"\nrealm = \"office.example\"\ndigest_algorithms = [\"MD5\"]\n[limits.auth]\nlockout = \"30s\"\n").unwrap();
        assert_eq!(c.sip.auth, AuthMode::Always);
        assert_eq!(c.sip.realm, "office.example");
        assert_eq!(
            c.sip.digest_algorithms,
            [crate::accounts::DigestAlgorithm::Md5]
        );
        assert_eq!(c.limits.auth.lockout.0, Duration::from_secs(30));
        let p = problems("[sip]\nrealm = \"a\\\"b\"\nnonce_lifetime = \"1s\"\ndigest_algorithms = [\"MD5\", \"MD5\"]\nauth_methods = [\"ACK\"]\n[limits.auth]\nfailures_per_source = 0\nlockout = \"2h\"\n");
        assert_eq!(
            p,
            [
                "sip.realm: \"a\"b\" is not a usable realm; use 1 to 128 printable characters without quotes or backslashes",
                "sip.nonce_lifetime: 1s is out of range; use 10s to 1h",
                "sip.digest_algorithms: \"MD5\" is listed twice",
                "sip.auth_methods: \"ACK\" cannot be challenged; use any of INVITE, SUBSCRIBE, PUBLISH, INFO, BYE",
                "limits.auth.failures_per_source: 0 is out of range; use 1 to 10000",
                "limits.auth.lockout: 2h must be at least 1s and at most limits.auth.max_lockout (1h)",
            ]
        );
        for bad in [
            "[sip]\nauth = \"sometimes\"\n",
            "[sip]\ndigest_algorithms = [\"SHA-1\"]\n",
        ] {
            match load(bad) {
                Err(ConfigError::Syntax { message, .. }) => {
                    assert!(message.contains("sip."), "{message}")
                }
                other => panic!("expected a syntax error, got {other:?}"),
            }
        }
    }

    #[test]
    fn sip_and_media_settings_are_checked() {
        let c = load("[sip]\ntrusted_peers = [\"10.0.0.0/8\", \"::1/128\"]\nt1 = \"250ms\"\n[media]\nrtp_ports = \"30000-30099\"\n").unwrap();
        assert_eq!(c.sip.trusted_peers.len(), 2);
        assert_eq!(c.media.rtp_ports.len(), 100);
        assert_eq!(c.sip.t1.0, Duration::from_millis(250));
        let p = problems("[sip]\nt1 = \"5s\"\nt2 = \"1s\"\n[media]\nrtp_ports = \"3000-2000\"\n");
        assert_eq!(
            p,
            [
                "media.rtp_ports: 3000-2000 is not a range of unprivileged ports (e.g. \"20000-29999\")",
                "sip.t2: 1s is shorter than sip.t1 (5s)",
            ]
        );
        match load("[sip]\ntrusted_peers = [\"10.0.0.0/33\"]\n") {
            Err(ConfigError::Syntax { message, .. }) => {
                assert!(message.contains("sip.trusted_peers"), "{message}")
            }
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn presence_settings_are_checked() {
        let c = load("[presence]\nmax_expires = 1800\n[presence.watchers]\n1001 = [\"2001\", \"2002\"]\n[presence.mapping.dnd]\nnote = \"Busy\"\n").unwrap();
        assert_eq!(c.presence.max_expires, 1800);
        assert_eq!(c.presence.watchers["1001"], ["2001", "2002"]);
        assert_eq!(c.presence.mapping.dnd.note, "Busy");
        assert_eq!(
            c.presence.mapping.away.note, "Away",
            "other rows keep their defaults"
        );
        let p = problems("[presence]\nmin_expires = 7200\nmax_notify_failures = 0\n[presence.watchers]\n\"10 01\" = []\n");
        assert_eq!(
            p,
            [
                "presence.min_expires: 7200 must be at least 1 and at most presence.max_expires (3600)",
                "presence.max_notify_failures: 0 is out of range; use 1 to 100",
                "presence.watchers.10 01: \"10 01\" is not an extension",
            ]
        );
        match load("[presence.mapping.dnd]\nactivity = \"napping\"\n") {
            Err(ConfigError::Syntax { message, .. }) => {
                assert!(
                    message.contains("presence.mapping.dnd.activity"),
                    "{message}"
                )
            }
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn missing_file_error_names_it() {
        let err = Config::load(Path::new("/nonexistent/starcode.toml")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/starcode.toml"));
    }
}
