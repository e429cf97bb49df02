//! `[limits]`: the abuse limits (see `sip::limits`), as an admin writes them, with checks that
//! name the key.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{HumanDuration, Problem};
use crate::sip::framing::{MAX_BODY_BYTES, MAX_HEADER_BYTES};
use crate::sip::limits::connections::TcpLimits;
use crate::sip::limits::{LimitSettings, Rate};

/// A rate in config: `{ per_second = 50, burst = 200 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    /// Sustained requests per second.
    pub per_second: u32,
    /// Requests a quiet source may send at once above that.
    pub burst: u32,
}

impl From<Rate> for RateConfig {
    fn from(rate: Rate) -> RateConfig {
        RateConfig {
            per_second: rate.per_second,
            burst: rate.burst,
        }
    }
}

impl From<RateConfig> for Rate {
    fn from(rate: RateConfig) -> Rate {
        Rate::new(rate.per_second, rate.burst)
    }
}

/// Per-source and total limits; over one a request gets `503` with `Retry-After` or is
/// dropped. The defaults suit a few thousand phones behind one PBX address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Source addresses remembered at once; the idlest are forgotten beyond this.
    pub max_sources: usize,
    pub invite: RateConfig,
    pub subscribe: RateConfig,
    pub publish: RateConfig,
    /// Every other request but ACK (BYE, CANCEL, INFO, OPTIONS, in-dialog requests).
    pub other: RateConfig,
    /// Datagrams that are not SIP, or requests too malformed to serve.
    pub garbage: RateConfig,
    /// Per untrusted source: requests answered 403 before the rest are dropped.
    pub untrusted: RateConfig,
    /// All untrusted sources together.
    pub untrusted_total: RateConfig,
    pub max_calls_per_source: u32,
    pub max_calls: u32,
    pub max_subscriptions_per_watcher: u32,
    pub max_subscriptions: u32,
    /// `Retry-After` on a 503.
    pub retry_after: HumanDuration,
    /// Sources with no per-source limits (e.g. a PBX bigger than the defaults); totals apply.
    pub exempt: Vec<ipnet::IpNet>,
    pub tcp: TcpLimitsConfig,
    /// Failed SIP digest answers (brute force).
    pub auth: super::AuthLimitsConfig,
    /// Failed web logins (brute force).
    pub http_login: super::LoginLimitsConfig,
}

/// `[limits.tcp]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpLimitsConfig {
    pub max_connections_per_source: u32,
    pub max_connections: u32,
    /// Sustained bytes per second one connection may send.
    pub bytes_per_second: u32,
    /// Bytes one connection may send at once above that.
    pub burst_bytes: u32,
    /// A message started but not finished within this closes the connection.
    pub partial_timeout: HumanDuration,
}

impl Default for LimitsConfig {
    fn default() -> LimitsConfig {
        LimitsConfig::from(&LimitSettings::default())
    }
}

impl Default for TcpLimitsConfig {
    fn default() -> TcpLimitsConfig {
        LimitsConfig::default().tcp
    }
}

impl From<&LimitSettings> for LimitsConfig {
    fn from(s: &LimitSettings) -> LimitsConfig {
        LimitsConfig {
            max_sources: s.max_sources,
            invite: s.invite.into(),
            subscribe: s.subscribe.into(),
            publish: s.publish.into(),
            other: s.other.into(),
            garbage: s.garbage.into(),
            untrusted: s.untrusted.into(),
            untrusted_total: s.untrusted_total.into(),
            max_calls_per_source: s.max_calls_per_source,
            max_calls: s.max_calls,
            max_subscriptions_per_watcher: s.max_subscriptions_per_watcher,
            max_subscriptions: s.max_subscriptions,
            retry_after: HumanDuration(Duration::from_secs(u64::from(s.retry_after))),
            exempt: s.exempt.clone(),
            tcp: TcpLimitsConfig {
                max_connections_per_source: s.tcp.max_connections_per_source,
                max_connections: s.tcp.max_connections,
                bytes_per_second: s.tcp.bytes_per_second,
                burst_bytes: s.tcp.burst_bytes,
                partial_timeout: HumanDuration(s.tcp.partial_timeout),
            },
            auth: super::AuthLimitsConfig::default(),
            http_login: super::LoginLimitsConfig::default(),
        }
    }
}

impl LimitsConfig {
    /// The settings the sans-IO limiter takes.
    pub fn settings(&self) -> LimitSettings {
        LimitSettings {
            max_sources: self.max_sources,
            invite: self.invite.into(),
            subscribe: self.subscribe.into(),
            publish: self.publish.into(),
            other: self.other.into(),
            garbage: self.garbage.into(),
            untrusted: self.untrusted.into(),
            untrusted_total: self.untrusted_total.into(),
            max_calls_per_source: self.max_calls_per_source,
            max_calls: self.max_calls,
            max_subscriptions_per_watcher: self.max_subscriptions_per_watcher,
            max_subscriptions: self.max_subscriptions,
            retry_after: u32::try_from(self.retry_after.0.as_secs()).unwrap_or(u32::MAX),
            exempt: self.exempt.clone(),
            tcp: TcpLimits {
                max_connections_per_source: self.tcp.max_connections_per_source,
                max_connections: self.tcp.max_connections,
                bytes_per_second: self.tcp.bytes_per_second,
                burst_bytes: self.tcp.burst_bytes,
                partial_timeout: self.tcp.partial_timeout.0,
            },
        }
    }

    /// Every rule the types cannot express, as problems naming `limits.*` keys.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut problem = |key: &str, message: String| {
            out.push(Problem {
                key: format!("limits.{key}"),
                message,
            })
        };
        if !(16..=1_000_000).contains(&self.max_sources) {
            problem(
                "max_sources",
                format!("{} is out of range; use 16 to 1000000", self.max_sources),
            );
        }
        for (name, rate) in [
            ("invite", self.invite),
            ("subscribe", self.subscribe),
            ("publish", self.publish),
            ("other", self.other),
            ("garbage", self.garbage),
            ("untrusted", self.untrusted),
            ("untrusted_total", self.untrusted_total),
        ] {
            if !(1..=1_000_000).contains(&rate.per_second) {
                problem(
                    &format!("{name}.per_second"),
                    format!("{} is out of range; use 1 to 1000000", rate.per_second),
                );
            }
            if !(1..=1_000_000).contains(&rate.burst) {
                problem(
                    &format!("{name}.burst"),
                    format!("{} is out of range; use 1 to 1000000", rate.burst),
                );
            }
        }
        for (name, value) in [
            ("max_calls_per_source", self.max_calls_per_source),
            ("max_calls", self.max_calls),
            (
                "max_subscriptions_per_watcher",
                self.max_subscriptions_per_watcher,
            ),
            ("max_subscriptions", self.max_subscriptions),
            (
                "tcp.max_connections_per_source",
                self.tcp.max_connections_per_source,
            ),
            ("tcp.max_connections", self.tcp.max_connections),
        ] {
            if value == 0 {
                problem(name, "must be at least 1".into());
            }
        }
        let retry = self.retry_after.0;
        if retry < Duration::from_secs(1) || retry > Duration::from_secs(3600) {
            problem(
                "retry_after",
                format!("{} is out of range; use 1s to 1h", self.retry_after),
            );
        }
        if self.tcp.bytes_per_second < 1000 {
            problem(
                "tcp.bytes_per_second",
                format!(
                    "{} is too low; use at least 1000",
                    self.tcp.bytes_per_second
                ),
            );
        }
        let largest = (MAX_HEADER_BYTES + MAX_BODY_BYTES) as u64;
        if u64::from(self.tcp.burst_bytes) < largest {
            problem(
                "tcp.burst_bytes",
                format!(
                    "{} is smaller than the largest message we accept ({largest} bytes)",
                    self.tcp.burst_bytes
                ),
            );
        }
        let partial = self.tcp.partial_timeout.0;
        if partial < Duration::from_secs(1) || partial > Duration::from_secs(600) {
            problem(
                "tcp.partial_timeout",
                format!(
                    "{} is out of range; use 1s to 10m",
                    self.tcp.partial_timeout
                ),
            );
        }
        out.extend(self.auth.problems());
        out.extend(self.http_login.problems());
        out
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigError};

    #[test]
    fn defaults_round_trip_and_a_section_overrides_them() {
        let c = Config::from_toml("", Path::new("t.toml")).unwrap();
        assert_eq!(
            c.limits.settings(),
            crate::sip::limits::LimitSettings::default()
        );
        let text = "[limits]\nsubscribe = { per_second = 10, burst = 20 }\nretry_after = \"30s\"\n\
                    exempt = [\"10.0.0.5/32\"]\n[limits.tcp]\nmax_connections = 10\n";
        let c = Config::from_toml(text, Path::new("t.toml")).unwrap();
        let s = c.limits.settings();
        assert_eq!((s.subscribe.per_second, s.subscribe.burst), (10, 20));
        assert_eq!(s.retry_after, 30);
        assert_eq!(s.exempt.len(), 1);
        assert_eq!(s.tcp.max_connections, 10);
        assert_eq!(
            s.invite,
            crate::sip::limits::LimitSettings::default().invite
        );
        let again = Config::from_toml(&c.to_toml(), Path::new("t.toml")).unwrap();
        assert_eq!(again.limits, c.limits);
    }

    #[test]
    fn the_shipped_config_documents_the_default_limits() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/starcode.toml");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.limits, super::LimitsConfig::default());
    }

    #[test]
    fn bad_limits_are_named_by_key() {
        let text = "[limits]\nmax_sources = 1\ninvite = { per_second = 0, burst = 5 }\n\
                    max_calls = 0\nretry_after = \"0s\"\n[limits.tcp]\nburst_bytes = 10\n";
        let Err(ConfigError::Invalid { problems, .. }) = Config::from_toml(text, Path::new("t"))
        else {
            panic!("expected problems");
        };
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        for key in [
            "limits.max_sources",
            "limits.invite.per_second",
            "limits.max_calls",
            "limits.retry_after",
            "limits.tcp.burst_bytes",
        ] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
        let Err(ConfigError::Syntax { message, .. }) =
            Config::from_toml("[limits]\ninvite = { per_second = 5 }\n", Path::new("t"))
        else {
            panic!("expected a syntax error");
        };
        assert!(message.contains("burst"), "{message}");
    }
}
