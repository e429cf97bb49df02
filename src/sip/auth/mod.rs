//! SIP digest authentication, sans-IO (RFC 3261 §22, RFC 7616, RFC 8760): who a request
//! comes from, proven with the extension's secret.
//!
//! The user agent hands [`Authenticator::check`] a request's method, its `Authorization`
//! values, the source address and `now`; it answers with who is authenticated, a challenge
//! to send (`401`), or a refusal (`403`, `400`). One job per module:
//! - [`header`]: reading `Authorization`, writing `WWW-Authenticate`;
//! - [`nonce`]: nonces bound to their issue time and source, checked without state;
//! - [`replay`]: nonce counts already used (a captured answer cannot be sent again);
//! - [`guard`]: failures per source and extension, and lockouts.
//!
//! HA1s come from the [`AccountDirectory`] the shell keeps up to date; hashing is the
//! RustCrypto crates' ([`crate::accounts::secrets::digest_hex`]). No secret, HA1 or response
//! value is ever logged.

pub mod guard;
pub mod header;
pub mod nonce;
pub mod replay;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::accounts::secrets::digest_hex;
use crate::accounts::{AccountDirectory, DigestAlgorithm};
use crate::config::AuthMode;

use guard::{Guard, GuardSettings, Locked, LockoutStarted};
use header::{Challenge, Credentials, HeaderError};
use nonce::{NonceCheck, NonceIssuer};
use replay::{NcCheck, NcTable};

/// Nonces whose counts are remembered at once (see [`replay`]).
pub const NC_TABLE_CAPACITY: usize = 16_384;

/// What the authenticator needs from config (`sip.auth`, `sip.realm`, `sip.nonce_lifetime`,
/// `sip.digest_algorithms`, `sip.auth_methods`, `[limits.auth]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    pub mode: AuthMode,
    pub realm: String,
    pub nonce_lifetime: Duration,
    /// Offered in this order, one challenge each.
    pub algorithms: Vec<DigestAlgorithm>,
    /// Methods that are challenged (never ACK or CANCEL).
    pub methods: Vec<String>,
    pub guard: GuardSettings,
}

impl Default for AuthSettings {
    /// The config defaults.
    fn default() -> AuthSettings {
        AuthSettings::from_config(&crate::config::Config::default())
    }
}

impl AuthSettings {
    /// The settings of a loaded config.
    pub fn from_config(config: &crate::config::Config) -> AuthSettings {
        AuthSettings {
            mode: config.sip.auth,
            realm: config.sip.realm.clone(),
            nonce_lifetime: config.sip.nonce_lifetime.0,
            algorithms: config.sip.digest_algorithms.clone(),
            methods: config
                .sip
                .auth_methods
                .iter()
                .filter(|m| !matches!(m.as_str(), "ACK" | "CANCEL"))
                .cloned()
                .collect(),
            guard: GuardSettings::from(&config.limits.auth),
        }
    }

    /// Whether requests of `method` are challenged at all.
    pub fn challenges(&self, method: &str) -> bool {
        self.mode != AuthMode::Never && self.methods.iter().any(|m| m == method)
    }
}

/// A request to authenticate.
#[derive(Debug, Clone, Copy)]
pub struct AuthRequest<'a> {
    /// The method, for HA2.
    pub method: &'a str,
    /// The Request-URI as sent: the answer's `uri` must name it.
    pub uri: &'a str,
    /// The `Authorization` values the request carries (any number, any scheme).
    pub authorization: &'a [&'a str],
    pub source: IpAddr,
}

/// Why an answer was refused. Every one is a 403 (or 400) the same way, whatever the reason:
/// the phone is not told whether the extension exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The response does not match the account's secret.
    WrongResponse,
    /// No account for the username.
    UnknownExtension,
    /// The account is disabled.
    Disabled,
    /// The account has no HA1 for our realm and the chosen algorithm (no SIP secret set, or
    /// set before the realm changed).
    NoCredential,
    /// A nonce count already used with this nonce: a replayed answer.
    Replayed,
    /// No `qop=auth` with `nc` and `cnonce` (an RFC 2069 answer), or an algorithm we did not
    /// offer, or a hashed username.
    Unsupported,
    /// The source or the extension is locked out after too many failures.
    LockedOut,
}

impl Failure {
    /// The name in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::WrongResponse => "wrong response",
            Failure::UnknownExtension => "unknown extension",
            Failure::Disabled => "disabled extension",
            Failure::NoCredential => "no secret for this realm and algorithm",
            Failure::Replayed => "replayed nonce count",
            Failure::Unsupported => "unsupported answer (qop, algorithm or userhash)",
            Failure::LockedOut => "locked out",
        }
    }
}

/// What to do with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Proven: the request comes from this extension.
    Authenticated { username: String },
    /// Answer `401` with these `WWW-Authenticate` values (one per algorithm).
    Challenge {
        stale: bool,
        www_authenticate: Vec<String>,
    },
    /// Answer `403`.
    Refused(Failure),
    /// Answer `400`: the `Authorization` for our realm is unreadable.
    Malformed(HeaderError),
}

/// What authentication did so far (for the stats and the shutdown summary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuthCounters {
    /// `401`s sent (stale ones included).
    pub challenges: u64,
    /// `401`s with `stale=true`.
    pub stale: u64,
    pub successes: u64,
    pub wrong_response: u64,
    /// Unknown or disabled extensions, or no HA1 for the realm.
    pub unknown_or_disabled: u64,
    pub replayed: u64,
    pub unsupported: u64,
    pub malformed: u64,
    /// Lockouts begun (of a source or of an extension).
    pub lockouts: u64,
    /// Requests refused because their source or extension was locked out.
    pub locked_out: u64,
}

impl AuthCounters {
    /// Every failed answer (refused with 403 or 400), whatever the reason.
    pub fn failures(&self) -> u64 {
        self.wrong_response
            + self.unknown_or_disabled
            + self.replayed
            + self.unsupported
            + self.malformed
    }
}

/// Checks digest answers; owns the nonce key, the nonce-count table and the guard.
pub struct Authenticator {
    settings: AuthSettings,
    nonces: NonceIssuer,
    counts: NcTable,
    guard: Guard,
    /// Sent with every challenge; phones send it back (RFC 7616 §3.3). Not secret.
    opaque: String,
    /// Stand-in HA1s for unknown accounts, so their answers take the same path.
    decoy: [String; 2],
    counters: AuthCounters,
}

impl Authenticator {
    /// An authenticator with this nonce key (random per process in the engine) whose nonce
    /// clock starts at `now`.
    pub fn new(settings: AuthSettings, key: [u8; 32], now: Instant) -> Authenticator {
        let opaque = digest_hex(DigestAlgorithm::Sha256, &[&key[..], b"opaque"].concat());
        let opaque = opaque.get(..16).unwrap_or_default().to_string();
        let decoy_secret = digest_hex(DigestAlgorithm::Sha256, &[&key[..], b"decoy"].concat());
        let decoy = [
            crate::accounts::ha1(DigestAlgorithm::Sha256, "", &settings.realm, &decoy_secret),
            crate::accounts::ha1(DigestAlgorithm::Md5, "", &settings.realm, &decoy_secret),
        ];
        Authenticator {
            nonces: NonceIssuer::new(key, now, settings.nonce_lifetime),
            counts: NcTable::new(NC_TABLE_CAPACITY),
            guard: Guard::new(settings.guard.clone()),
            settings,
            opaque,
            decoy,
            counters: AuthCounters::default(),
        }
    }

    /// New settings (a config reload): nonces, counts and lockouts carry on.
    pub fn set_settings(&mut self, settings: AuthSettings) {
        self.nonces.set_lifetime(settings.nonce_lifetime);
        self.guard.set_settings(settings.guard.clone());
        self.settings = settings;
    }

    /// The settings in force.
    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    /// What was counted so far.
    pub fn counters(&self) -> AuthCounters {
        self.counters
    }

    /// Decides one request. Logs every failure with the source, the claimed extension and
    /// the reason (never a secret, HA1 or response) at warn, and every lockout; what anyone can
    /// repeat at the request rate without guessing (unreadable headers, foreign nonces,
    /// requests while locked out) only at debug, and counted.
    pub fn check(
        &mut self,
        req: AuthRequest<'_>,
        accounts: &AccountDirectory,
        now: Instant,
    ) -> AuthOutcome {
        let source = req.source;
        if self.guard.source_locked(source, now).is_some() {
            return self.locked(source, None);
        }
        let Some(value) = self.ours(req.authorization) else {
            return self.challenge(source, false, now);
        };
        let creds = match header::parse_credentials(value) {
            Ok(creds) => creds,
            Err(error) => {
                self.counters.malformed += 1;
                tracing::debug!(%source, %error, "unreadable Authorization");
                return AuthOutcome::Malformed(error);
            }
        };
        if !header::same_uri(&creds.uri, req.uri) {
            self.counters.malformed += 1;
            tracing::debug!(%source, extension = %printable(&creds.username), "Authorization for another URI than the request's");
            return AuthOutcome::Malformed(HeaderError::UriMismatch);
        }
        let username = creds.username.as_str();
        if let Some(Locked::Extension { .. }) = self.guard.extension_locked(username, source, now) {
            return self.locked(source, Some(username));
        }
        let (Some(algorithm), Some(nc), Some(()), true, false) = (
            creds
                .algorithm()
                .filter(|a| self.settings.algorithms.contains(a)),
            creds.nonce_count(),
            creds
                .cnonce
                .as_deref()
                .filter(|c| !c.is_empty())
                .map(|_| ()),
            creds
                .qop
                .as_deref()
                .is_some_and(|q| q.eq_ignore_ascii_case("auth")),
            creds.userhash,
        ) else {
            return self.failed(source, &creds.username, Failure::Unsupported, now);
        };
        let nonce = match self.nonces.check(&creds.nonce, source, now) {
            NonceCheck::Foreign => {
                tracing::debug!(%source, extension = %printable(&creds.username), "answer to a nonce we did not give this source; challenged again");
                return self.challenge(source, false, now);
            }
            other => other,
        };
        let (ha1, missing) = self.ha1_for(accounts, username, algorithm);
        let expected = response(algorithm, &ha1, &creds, req.method);
        let matches = constant_time_eq(
            expected.as_bytes(),
            creds.response.to_ascii_lowercase().as_bytes(),
        );
        if let Some(failure) = missing {
            return self.failed(source, &creds.username, failure, now);
        }
        if !matches {
            return self.failed(source, &creds.username, Failure::WrongResponse, now);
        }
        let issued = match nonce {
            NonceCheck::Valid { issued } => issued,
            NonceCheck::Stale { .. } | NonceCheck::Foreign => {
                // RFC 7616 §3.3: stale only when the answer was right.
                tracing::debug!(%source, extension = %printable(&creds.username), "stale nonce; challenged with stale=true");
                return self.challenge(source, true, now);
            }
        };
        let expired_before = self
            .nonces
            .millis(now)
            .saturating_sub(self.nonces.lifetime_ms());
        match self.counts.check(&creds.nonce, issued, nc, expired_before) {
            NcCheck::Fresh => {}
            NcCheck::Forgotten => return self.challenge(source, true, now),
            NcCheck::Replayed => {
                return self.failed(source, &creds.username, Failure::Replayed, now);
            }
        }
        self.guard.success(source, username, now);
        self.counters.successes += 1;
        tracing::debug!(%source, extension = %printable(&creds.username), %algorithm, "authenticated");
        AuthOutcome::Authenticated {
            username: creds.username,
        }
    }

    /// The `Authorization` value for our realm (the first Digest one naming it).
    fn ours<'a>(&self, values: &[&'a str]) -> Option<&'a str> {
        values.iter().copied().find(|v| {
            header::is_digest(v)
                && header::realm_of(v).as_deref() == Some(self.settings.realm.as_str())
        })
    }

    /// The account's HA1, or the decoy with the reason it cannot succeed.
    fn ha1_for(
        &self,
        accounts: &AccountDirectory,
        username: &str,
        algorithm: DigestAlgorithm,
    ) -> (String, Option<Failure>) {
        let decoy = match algorithm {
            DigestAlgorithm::Sha256 => &self.decoy[0],
            DigestAlgorithm::Md5 => &self.decoy[1],
        };
        let Some(entry) = accounts.get(username) else {
            return (decoy.clone(), Some(Failure::UnknownExtension));
        };
        match entry.ha1(&self.settings.realm, algorithm) {
            Some(_) if !entry.enabled => (decoy.clone(), Some(Failure::Disabled)),
            Some(ha1) => (ha1.to_string(), None),
            None => (decoy.clone(), Some(Failure::NoCredential)),
        }
    }

    fn challenge(&mut self, source: IpAddr, stale: bool, now: Instant) -> AuthOutcome {
        let nonce = self.nonces.issue(source, now);
        self.counters.challenges += 1;
        if stale {
            self.counters.stale += 1;
        }
        let www_authenticate = self
            .settings
            .algorithms
            .iter()
            .map(|&algorithm| {
                Challenge {
                    realm: &self.settings.realm,
                    algorithm,
                    nonce: &nonce,
                    opaque: &self.opaque,
                    stale,
                }
                .render()
            })
            .collect();
        AuthOutcome::Challenge {
            stale,
            www_authenticate,
        }
    }

    fn locked(&mut self, source: IpAddr, extension: Option<&str>) -> AuthOutcome {
        self.counters.locked_out += 1;
        tracing::debug!(%source, extension = %printable(extension.unwrap_or("-")), "locked out after failed authentications; refused without a challenge");
        AuthOutcome::Refused(Failure::LockedOut)
    }

    fn failed(
        &mut self,
        source: IpAddr,
        extension: &str,
        failure: Failure,
        now: Instant,
    ) -> AuthOutcome {
        match failure {
            Failure::WrongResponse => self.counters.wrong_response += 1,
            Failure::UnknownExtension | Failure::Disabled | Failure::NoCredential => {
                self.counters.unknown_or_disabled += 1
            }
            Failure::Replayed => self.counters.replayed += 1,
            Failure::Unsupported => self.counters.unsupported += 1,
            Failure::LockedOut => self.counters.locked_out += 1,
        }
        tracing::warn!(%source, extension = %printable(extension), reason = failure.as_str(), "authentication failed");
        for started in self.guard.failure(source, extension, now) {
            self.counters.lockouts += 1;
            match started {
                LockoutStarted::Source { source, duration } => {
                    tracing::warn!(%source, seconds = duration.as_secs(), "source locked out after failed authentications")
                }
                LockoutStarted::Extension {
                    extension,
                    duration,
                } => {
                    tracing::warn!(extension = %printable(&extension), seconds = duration.as_secs(), "extension locked out for unknown sources after failed authentications")
                }
            }
        }
        AuthOutcome::Refused(failure)
    }
}

/// `KD(HA1, nonce:nc:cnonce:qop:HA2)` with `HA2 = H(method:uri)` (RFC 7616 §3.4.1, qop=auth),
/// over `nc`, `cnonce` and `qop` exactly as the phone wrote them.
pub fn response(
    algorithm: DigestAlgorithm,
    ha1: &str,
    creds: &Credentials,
    method: &str,
) -> String {
    let ha2 = digest_hex(algorithm, format!("{method}:{}", creds.uri).as_bytes());
    let nc = creds.nc.as_deref().unwrap_or_default();
    let cnonce = creds.cnonce.as_deref().unwrap_or_default();
    let qop = creds.qop.as_deref().unwrap_or_default();
    digest_hex(
        algorithm,
        format!("{ha1}:{}:{nc}:{cnonce}:{qop}:{ha2}", creds.nonce).as_bytes(),
    )
}

/// A claimed username as it goes into a log line: at most 64 characters, control characters
/// escaped (it comes from the network).
fn printable(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(64)
        .flat_map(char::escape_default)
        .collect();
    if text.chars().count() > 64 {
        out.push('…');
    }
    out
}

/// Equal bytes, in a time that depends only on the lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests;
