//! `[http]`: where the web pages and the HTTP API listen, HTTPS, and browser session
//! lifetimes (`[limits.http_login]` is in `login_limits.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{HumanDuration, Problem};

/// `[http]`: the web server the engine runs beside SIP (the board, the portal, `/api/v1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Serve the web pages and the API at all.
    pub enabled: bool,
    /// Loopback by default: put a TLS certificate in place before listening further out.
    pub listen: SocketAddr,
    /// PEM certificate chain; with `tls_key`, pages and API are served over HTTPS only and
    /// cookies are `Secure`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// A browser session unused this long ends (each use moves it on).
    pub session_idle: HumanDuration,
    /// A browser session ends this long after its login, used or not.
    pub session_lifetime: HumanDuration,
    /// Open `/api/v1/events` streams at most (each open board holds one); more get `503`.
    pub max_event_streams: usize,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8046)),
            tls_cert: None,
            tls_key: None,
            session_idle: HumanDuration(Duration::from_secs(3600)),
            session_lifetime: HumanDuration(Duration::from_secs(12 * 3600)),
            max_event_streams: 2000,
        }
    }
}

impl HttpConfig {
    /// Whether TLS is configured (both halves present; `problems` reports one half alone).
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }

    /// Rules the types cannot express, naming `http.*` keys.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => out.push(Problem {
                key: "http.tls_key".into(),
                message: "http.tls_cert is set, so the key is needed too".into(),
            }),
            (None, Some(_)) => out.push(Problem {
                key: "http.tls_cert".into(),
                message: "http.tls_key is set, so the certificate is needed too".into(),
            }),
            _ => {}
        }
        let idle = self.session_idle.0;
        if idle < Duration::from_secs(60) || idle > Duration::from_secs(7 * 86_400) {
            out.push(Problem {
                key: "http.session_idle".into(),
                message: format!("{} is out of range; use 1m to 7d", self.session_idle),
            });
        }
        if !(1..=100_000).contains(&self.max_event_streams) {
            out.push(Problem {
                key: "http.max_event_streams".into(),
                message: format!(
                    "{} is out of range; use 1 to 100000",
                    self.max_event_streams
                ),
            });
        }
        let lifetime = self.session_lifetime.0;
        if lifetime < idle || lifetime > Duration::from_secs(90 * 86_400) {
            out.push(Problem {
                key: "http.session_lifetime".into(),
                message: format!(
                    "{} is out of range; use http.session_idle ({}) to 90d",
                    self.session_lifetime, self.session_idle
                ),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    #[test]
    fn session_lifetimes_and_login_limits_are_read_and_checked() {
        let c = Config::from_toml(
            "[http]\nsession_idle = \"15m\"\nsession_lifetime = \"8h\"\n[limits.http_login]\nfailures_per_user = 3\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(c.http.session_idle.0.as_secs(), 900);
        assert_eq!(c.http.session_lifetime.0.as_secs(), 8 * 3600);
        assert_eq!(c.limits.http_login.failures_per_user, 3);
        assert_eq!(c.limits.http_login.failures_per_source, 10, "default kept");

        let err = Config::from_toml(
            "[http]\nsession_idle = \"2h\"\nsession_lifetime = \"1h\"\n[limits.http_login]\nfailures_per_user = 0\nlockout = \"2h\"\n",
            Path::new("t.toml"),
        )
        .unwrap_err()
        .to_string();
        for expected in [
            "http.session_lifetime: 1h is out of range; use http.session_idle (2h) to 90d",
            "limits.http_login.failures_per_user: 0 is out of range; use 1 to 10000",
            "limits.http_login.lockout: 2h must be at least 1s and at most limits.http_login.max_lockout (1h)",
        ] {
            assert!(err.contains(expected), "{expected} not in {err}");
        }
    }
}
