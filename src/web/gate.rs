//! The engine's [`Gatekeeper`]: API tokens, browser sessions and sign-ins checked by
//! [`WebAuth`] against the accounts and the web access tables of the store.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::SystemTime;

use super::access::{Credential, Gatekeeper, LoggedIn, LoginRefused, StoreUnavailable, Verified};
use crate::web_auth::secrets::token_id;
use crate::web_auth::service::{LoginError, WebAuth};

/// [`WebAuth`] as the web side's gatekeeper.
pub struct WebAuthGate {
    auth: Arc<WebAuth>,
}

impl WebAuthGate {
    /// A gatekeeper over this service (shared with whoever reloads its settings).
    pub fn new(auth: Arc<WebAuth>) -> WebAuthGate {
        WebAuthGate { auth }
    }
}

impl Gatekeeper for WebAuthGate {
    fn bearer(&self, token: &str) -> Result<Option<Verified>, StoreUnavailable> {
        match self.auth.check_token(token, SystemTime::now()) {
            Ok(Some(principal)) => Ok(Some(Verified {
                principal,
                credential: Credential::Token {
                    id: token_id(token).unwrap_or("?").to_string(),
                },
            })),
            Ok(None) => Ok(None),
            Err(error) => {
                tracing::warn!(%error, "API token check failed: the store does not answer");
                Err(StoreUnavailable)
            }
        }
    }

    fn session(&self, session_id: &str) -> Result<Option<Verified>, StoreUnavailable> {
        match self.auth.session(session_id, SystemTime::now()) {
            Ok(Some(active)) => Ok(Some(Verified {
                principal: active.principal,
                credential: Credential::Session {
                    csrf: active.csrf.expose().to_string(),
                },
            })),
            Ok(None) => Ok(None),
            Err(error) => {
                tracing::warn!(%error, "session check failed: the store does not answer");
                Err(StoreUnavailable)
            }
        }
    }

    fn session_still_valid(&self, session_id: &str) -> bool {
        match self.auth.session_still_valid(session_id, SystemTime::now()) {
            Ok(valid) => valid,
            Err(error) => {
                tracing::warn!(%error, "session recheck failed: the store does not answer");
                false
            }
        }
    }

    fn login(
        &self,
        user: &str,
        password: &str,
        source: Option<IpAddr>,
    ) -> Result<LoggedIn, LoginRefused> {
        let source = source.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        match self.auth.login(user, password, source, SystemTime::now()) {
            Ok(session) => Ok(LoggedIn {
                session_id: session.cookie.expose().to_string(),
                verified: Verified {
                    principal: session.principal,
                    credential: Credential::Session {
                        csrf: session.csrf.expose().to_string(),
                    },
                },
            }),
            Err(LoginError::BadCredentials | LoginError::Disabled) => Err(LoginRefused::Wrong),
            Err(LoginError::Locked { retry_after }) => Err(LoginRefused::Throttled { retry_after }),
            Err(LoginError::Store(error)) => {
                tracing::warn!(%error, "sign-in failed: the store does not answer");
                Err(LoginRefused::Unavailable(
                    "the database does not answer".into(),
                ))
            }
        }
    }

    fn logout(&self, session_id: &str) {
        if let Err(error) = self.auth.logout(session_id) {
            tracing::warn!(%error, "sign-out: the store does not answer");
        }
    }
}
