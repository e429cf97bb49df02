//! Listening: plain HTTP on loopback by default, HTTPS (rustls) when `http.tls_cert` and
//! `http.tls_key` are set. The socket is bound before the engine says it is ready, so a port
//! in use is a start-up error, not a silent absence.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::HttpConfig;

/// How long open requests (SSE streams included) get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Why the certificate or key of `http.tls_cert` / `http.tls_key` cannot be served; each
/// names the config key, so the operator knows which line to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{field}: cannot read {}: {source}", path.display())]
    Unreadable {
        field: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("http.tls_cert: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("http.tls_key: {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)", path.display())]
    NoKey { path: PathBuf },
    #[error(
        "http.tls_cert and http.tls_key: the certificate and key cannot be used together: {0}"
    )]
    Unusable(String),
}

/// Reads and checks `http.tls_cert` and `http.tls_key` before the engine says it is ready: a
/// missing, unreadable or garbage file is a start-up error naming its key.
pub fn load_tls(cert: &Path, key: &Path) -> Result<RustlsConfig, TlsError> {
    let read = |field: &'static str, path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Unreadable {
            field,
            path: path.to_path_buf(),
            source,
        })
    };
    let cert_pem = read("http.tls_cert", cert)?;
    let key_pem = read("http.tls_key", key)?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_default();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_path_buf(),
        });
    }
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey {
        path: key.to_path_buf(),
    })?;
    // One crypto provider for the process; a second install is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| TlsError::Unusable(e.to_string()))?;
    // As axum-server's own loader: HTTP/2 when the browser offers it, else HTTP/1.1.
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(RustlsConfig::from_config(Arc::new(server)))
}

/// A bound web listener, ready to serve.
pub struct WebListener {
    listener: std::net::TcpListener,
    tls: Option<RustlsConfig>,
    addr: SocketAddr,
}

impl WebListener {
    /// Binds `http.listen` and loads the certificate when TLS is configured.
    pub async fn bind(config: &HttpConfig) -> anyhow::Result<WebListener> {
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(load_tls(cert, key)?),
            _ => None,
        };
        let listener = std::net::TcpListener::bind(config.listen)
            .with_context(|| format!("binding the web listener {}", config.listen))?;
        listener
            .set_nonblocking(true)
            .context("setting the web listener non-blocking")?;
        let addr = listener
            .local_addr()
            .context("reading the web listener's address")?;
        Ok(WebListener {
            listener,
            tls,
            addr,
        })
    }

    /// The address bound (the port is known even when `listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL people open, e.g. `http://127.0.0.1:8046/`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}/", self.addr)
    }

    /// Whether pages are served over TLS (cookies are then `Secure`).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves `router` until `shutdown` completes, then lets open requests finish briefly.
    pub async fn serve(
        self,
        router: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let handle = axum_server::Handle::new();
        let stopper = handle.clone();
        tokio::spawn(async move {
            shutdown.await;
            stopper.graceful_shutdown(Some(SHUTDOWN_GRACE));
        });
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        match self.tls {
            Some(tls) => {
                axum_server::from_tcp_rustls(self.listener, tls)
                    .context("starting the HTTPS listener")?
                    .handle(handle)
                    .serve(service)
                    .await
            }
            None => {
                axum_server::from_tcp(self.listener)
                    .context("starting the HTTP listener")?
                    .handle(handle)
                    .serve(service)
                    .await
            }
        }
        .context("serving HTTP")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate and its key as PEM files in `dir`.
    fn pair(dir: &Path) -> (PathBuf, PathBuf) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
            .expect("rcgen makes a certificate");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, made.cert.pem()).expect("write cert");
        std::fs::write(&key, made.key_pair.serialize_pem()).expect("write key");
        (cert, key)
    }

    fn error(cert: &Path, key: &Path) -> String {
        match load_tls(cert, key) {
            Ok(_) => panic!("{} and {} were accepted", cert.display(), key.display()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_good_pair_loads() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (cert, key) = pair(dir.path());
        assert!(load_tls(&cert, &key).is_ok());
    }

    #[test]
    fn each_bad_file_is_named_by_its_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (cert, key) = pair(dir.path());
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "-----BEGIN NONSENSE-----\nxx\n").expect("write");
        let missing = dir.path().join("missing.pem");

        let e = error(&missing, &key);
        assert!(
            e.starts_with("http.tls_cert: cannot read") && e.contains("missing.pem"),
            "{e}"
        );
        let e = error(&cert, &missing);
        assert!(e.starts_with("http.tls_key: cannot read"), "{e}");
        let e = error(&garbage, &key);
        assert!(
            e.starts_with("http.tls_cert:") && e.contains("no PEM certificate"),
            "{e}"
        );
        // A certificate where the key should be: no key in it.
        let e = error(&cert, &cert);
        assert!(
            e.starts_with("http.tls_key:") && e.contains("no PEM private key"),
            "{e}"
        );
        let e = error(&cert, &garbage);
        assert!(e.starts_with("http.tls_key:"), "{e}");
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (cert, _) = pair(dir.path());
        let other = tempfile::tempdir().expect("temp dir");
        let (_, other_key) = pair(other.path());
        let e = error(&cert, &other_key);
        assert!(e.starts_with("http.tls_cert and http.tls_key:"), "{e}");
    }
}
