//! `sip.auth` and its companions, and `[limits.auth]`: who must prove who they are (SIP
//! digest) and how failed proofs are slowed down.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{HumanDuration, Problem};
use crate::accounts::DigestAlgorithm;

/// Who must authenticate with SIP digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Trusted peers (`sip.trusted_peers`, the PBX) are served as they assert; everyone else
    /// authenticates as an extension.
    #[default]
    Untrusted,
    /// Every request the auth methods name is authenticated, trusted peer or not.
    Always,
    /// No authentication: only trusted peers are served (others get 403), as before accounts.
    Never,
}

impl AuthMode {
    /// The config token.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Untrusted => "untrusted",
            AuthMode::Always => "always",
            AuthMode::Never => "never",
        }
    }
}

impl Serialize for DigestAlgorithm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DigestAlgorithm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let token = String::deserialize(d)?;
        DigestAlgorithm::parse(&token).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown digest algorithm \"{token}\"; use \"SHA-256\" or \"MD5\""
            ))
        })
    }
}

/// Methods that may be challenged (RFC 3261 §22.1: never ACK or CANCEL).
pub const AUTH_METHODS: [&str; 5] = ["INVITE", "SUBSCRIBE", "PUBLISH", "INFO", "BYE"];

/// `[limits.auth]`: failed digest answers per source and per extension. Over either limit the
/// source (or the extension, for sources that never authenticated as it) gets 403 for
/// `lockout`, doubled at each repeat up to `max_lockout`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthLimitsConfig {
    /// Failures one source address may make within `failure_window`.
    pub failures_per_source: u32,
    /// Failures against one extension (from any source) within `failure_window`.
    pub failures_per_extension: u32,
    pub failure_window: HumanDuration,
    /// The first lockout; each further one doubles, up to `max_lockout`.
    pub lockout: HumanDuration,
    pub max_lockout: HumanDuration,
}

impl Default for AuthLimitsConfig {
    fn default() -> AuthLimitsConfig {
        AuthLimitsConfig {
            failures_per_source: 10,
            failures_per_extension: 20,
            failure_window: HumanDuration(Duration::from_secs(300)),
            lockout: HumanDuration(Duration::from_secs(60)),
            max_lockout: HumanDuration(Duration::from_secs(3600)),
        }
    }
}

impl AuthLimitsConfig {
    /// Rules the types cannot express, naming `limits.auth.*` keys.
    pub fn problems(&self) -> Vec<Problem> {
        lockout_problems(
            "limits.auth",
            &[
                ("failures_per_source", self.failures_per_source),
                ("failures_per_extension", self.failures_per_extension),
            ],
            self.failure_window,
            self.lockout,
            self.max_lockout,
        )
    }
}

/// The checks every failure-counting lockout section shares (`[limits.auth]`,
/// `[limits.http_login]`): counts of 1 to 10000, a window of 1s to 24h, a first lockout of
/// at least 1s and at most `max_lockout`, which is at most 7d. Keys are named under `prefix`.
pub(super) fn lockout_problems(
    prefix: &str,
    counts: &[(&str, u32)],
    window: HumanDuration,
    lockout: HumanDuration,
    max_lockout: HumanDuration,
) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut problem = |key: &str, message: String| {
        out.push(Problem {
            key: format!("{prefix}.{key}"),
            message,
        })
    };
    for (name, value) in counts {
        if !(1..=10_000).contains(value) {
            problem(name, format!("{value} is out of range; use 1 to 10000"));
        }
    }
    if window.0 < Duration::from_secs(1) || window.0 > Duration::from_secs(86_400) {
        problem(
            "failure_window",
            format!("{window} is out of range; use 1s to 24h"),
        );
    }
    if lockout.0 < Duration::from_secs(1) || lockout.0 > max_lockout.0 {
        problem(
            "lockout",
            format!(
                "{lockout} must be at least 1s and at most {prefix}.max_lockout ({max_lockout})"
            ),
        );
    }
    if max_lockout.0 > Duration::from_secs(7 * 86_400) {
        problem(
            "max_lockout",
            format!("{max_lockout} is out of range; use up to 7d"),
        );
    }
    out
}

/// Checks of the `sip.*` auth keys, naming the key.
pub fn sip_auth_problems(sip: &super::SipConfig) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut problem = |key: &str, message: String| {
        out.push(Problem {
            key: format!("sip.{key}"),
            message,
        })
    };
    let realm_ok = !sip.realm.is_empty()
        && sip.realm.len() <= 128
        && sip
            .realm
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\');
    if !realm_ok {
        problem(
            "realm",
            format!(
                "\"{}\" is not a usable realm; use 1 to 128 printable characters without quotes or backslashes",
                sip.realm
            ),
        );
    }
    let lifetime = sip.nonce_lifetime.0;
    if lifetime < Duration::from_secs(10) || lifetime > Duration::from_secs(3600) {
        problem(
            "nonce_lifetime",
            format!("{} is out of range; use 10s to 1h", sip.nonce_lifetime),
        );
    }
    if sip.digest_algorithms.is_empty() {
        problem(
            "digest_algorithms",
            "at least one algorithm is needed (\"SHA-256\", \"MD5\")".into(),
        );
    }
    let mut seen = Vec::new();
    for algorithm in &sip.digest_algorithms {
        if seen.contains(algorithm) {
            problem(
                "digest_algorithms",
                format!("\"{algorithm}\" is listed twice"),
            );
        }
        seen.push(*algorithm);
    }
    for method in &sip.auth_methods {
        if !AUTH_METHODS.contains(&method.as_str()) {
            problem(
                "auth_methods",
                format!(
                    "\"{method}\" cannot be challenged; use any of {}",
                    AUTH_METHODS.join(", ")
                ),
            );
        }
    }
    out
}
