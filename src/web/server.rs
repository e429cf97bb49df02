//! Listening: plain HTTP on loopback by default, HTTPS (rustls) when `http.tls_cert` and
//! `http.tls_key` are set. The socket is bound before the engine says it is ready, so a port
//! in use is a start-up error, not a silent absence.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum_server::tls_rustls::RustlsConfig;

use crate::config::HttpConfig;

/// How long open requests (SSE streams included) get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

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
            (Some(cert), Some(key)) => {
                // One crypto provider for the process; a second install is harmless.
                let _ = rustls::crypto::ring::default_provider().install_default();
                Some(
                    RustlsConfig::from_pem_file(cert, key)
                        .await
                        .with_context(|| {
                            format!(
                                "loading the TLS certificate {} and key {}",
                                cert.display(),
                                key.display()
                            )
                        })?,
                )
            }
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
