//! `[http]`: where the web pages and the HTTP API listen.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The web server the engine runs beside SIP: the board, the portal and `/api/v1`.
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
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8046)),
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl HttpConfig {
    /// Whether TLS is configured (both halves present; `problems` reports one half alone).
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }

    /// Rules the types cannot express, as (key, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => out.push((
                "http.tls_key".to_string(),
                "http.tls_cert is set, so the key is needed too".to_string(),
            )),
            (None, Some(_)) => out.push((
                "http.tls_cert".to_string(),
                "http.tls_key is set, so the certificate is needed too".to_string(),
            )),
            _ => {}
        }
        out
    }
}
