//! Who is calling the API, and what they may do.
//!
//! A request proves who it is with an API token (`Authorization: Bearer ...`, for scripts) or
//! a browser session cookie (pages). The checks themselves (hashes, expiry, revocation) belong
//! to a [`Gatekeeper`]; this module reads the headers, asks it, and turns the answer into a
//! [`Caller`] handlers can ask "may you set 1001?". A browser session's changes must carry its
//! CSRF token in `X-CSRF-Token`: a cookie alone is sent by any page the browser visits.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts, Method};

use super::error::ApiError;
use super::WebState;
use crate::presence::ChangeSource;

/// The cookie that carries a browser session's id.
pub const SESSION_COOKIE: &str = "starcode_session";
/// The header a session's state-changing requests carry its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

pub use crate::web_auth::Principal;

/// How the request proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An API token, by its public id.
    Token { id: String },
    /// A browser session, whose CSRF token changes must echo.
    Session { csrf: String },
}

/// The answer of a [`Gatekeeper`] to a token or a session id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub principal: Principal,
    pub credential: Credential,
}

/// A signed-in browser: the new session's id (the cookie's value) and who it is.
#[derive(Clone, PartialEq, Eq)]
pub struct LoggedIn {
    pub session_id: String,
    pub verified: Verified,
}

impl std::fmt::Debug for LoggedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoggedIn")
            .field("session_id", &"<secret>")
            .field("principal", &self.verified.principal)
            .finish()
    }
}

/// Why a login was refused. Wrong user and wrong password look the same.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginRefused {
    #[error("wrong user or password")]
    Wrong,
    #[error("too many failed sign-ins; try again in {} s", retry_after.as_secs().max(1))]
    Throttled { retry_after: std::time::Duration },
    #[error("sign-in is not available now: {0}")]
    Unavailable(String),
}

/// Checks tokens, sessions and passwords against wherever they are kept. Blocking (a store
/// lookup, argon2): called on the blocking pool.
pub trait Gatekeeper: Send + Sync + 'static {
    /// The party behind an API token, if the token is valid and not revoked; an error when
    /// the store cannot tell (the request gets 503, not 401: the token may well be good).
    fn bearer(&self, token: &str) -> Result<Option<Verified>, StoreUnavailable>;
    /// The party behind a session id, if the session is live (this use counts as activity);
    /// an error when the store cannot tell.
    fn session(&self, session_id: &str) -> Result<Option<Verified>, StoreUnavailable>;
    /// Whether a session is still live, asked again by a long-lived response: unlike
    /// [`Gatekeeper::session`], this does not count as activity, so an open page alone does
    /// not keep a session from its idle end.
    fn session_still_valid(&self, session_id: &str) -> bool {
        matches!(self.session(session_id), Ok(Some(_)))
    }
    /// Checks a password (an admin's, or an extension's portal password) and opens a
    /// session. `source` is the client's address, for rate limiting and logs.
    fn login(
        &self,
        user: &str,
        password: &str,
        source: Option<std::net::IpAddr>,
    ) -> Result<LoggedIn, LoginRefused>;
    /// Ends a session (its cookie no longer works).
    fn logout(&self, session_id: &str);
}

/// The store that checks credentials did not answer (the database is down): the caller may
/// be entitled, so the request is refused as unavailable rather than unauthenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUnavailable;

/// The authenticated caller of a handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub principal: Principal,
    pub credential: Credential,
}

impl Caller {
    /// Who made a change, as the history records it.
    pub fn actor(&self) -> String {
        match (&self.credential, &self.principal) {
            (Credential::Token { id }, _) => format!("token:{id}"),
            (Credential::Session { .. }, Principal::Admin(name)) => format!("admin:{name}"),
            (Credential::Session { .. }, Principal::Extension(ext)) => format!("ext:{ext}"),
        }
    }

    /// The change source: `api` for tokens, `web` for browser sessions.
    pub fn source(&self) -> ChangeSource {
        match self.credential {
            Credential::Token { .. } => ChangeSource::Api,
            Credential::Session { .. } => ChangeSource::Web,
        }
    }

    /// `403` unless the caller may set `extension`.
    pub fn require_set(&self, extension: &str) -> Result<(), ApiError> {
        if self.principal.may_set(extension) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "you may set only your own extension's status, not {extension}'s"
            )))
        }
    }

    /// `403` unless the caller is an admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.principal.may_see_all() {
            Ok(())
        } else {
            Err(ApiError::Forbidden("only an admin may do this".to_string()))
        }
    }
}

impl FromRequestParts<Arc<WebState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<WebState>,
    ) -> Result<Caller, ApiError> {
        let presented = presented(parts)?;
        let verified = verify(state.gate.clone(), presented.clone()).await?;
        let Some(verified) = verified else {
            tracing::debug!(kind = presented.kind(), "API credential refused");
            return Err(ApiError::Unauthenticated);
        };
        if let Credential::Session { csrf } = &verified.credential {
            if changes_state(&parts.method) {
                let sent = parts
                    .headers
                    .get(CSRF_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                if !crate::sip::auth::constant_time_eq(sent.as_bytes(), csrf.as_bytes()) {
                    return Err(ApiError::Csrf);
                }
            }
        }
        Ok(Caller {
            principal: verified.principal,
            credential: verified.credential,
        })
    }
}

/// Asks the gatekeeper about a presented credential, on the blocking pool.
async fn verify(
    gate: Arc<dyn Gatekeeper>,
    presented: Presented,
) -> Result<Option<Verified>, ApiError> {
    tokio::task::spawn_blocking(move || match &presented {
        Presented::Bearer(token) => gate.bearer(token),
        Presented::Session(id) => gate.session(id),
    })
    .await
    .map_err(|e| ApiError::Internal(format!("credential check failed: {e}")))?
    .map_err(|StoreUnavailable| ApiError::Unavailable("credentials cannot be checked now".into()))
}

/// The credential a request presented, kept to ask again later: a response that lasts (the
/// event stream) must end when its session is signed out, expires or its user is disabled,
/// and when its token is revoked, not only refuse the next request. Never logged.
pub struct Recheck {
    gate: Arc<dyn Gatekeeper>,
    presented: Presented,
}

impl Recheck {
    /// Whether the credential still lets its holder in (a failed check counts as no).
    pub async fn still_valid(&self) -> bool {
        let gate = self.gate.clone();
        let presented = self.presented.clone();
        tokio::task::spawn_blocking(move || match &presented {
            Presented::Bearer(token) => matches!(gate.bearer(token), Ok(Some(_))),
            Presented::Session(id) => gate.session_still_valid(id),
        })
        .await
        .unwrap_or(false)
    }
}

impl FromRequestParts<Arc<WebState>> for Recheck {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<WebState>,
    ) -> Result<Recheck, ApiError> {
        Ok(Recheck {
            gate: state.gate.clone(),
            presented: presented(parts)?,
        })
    }
}

/// What the request presented. Never logged: both are secrets.
#[derive(Clone)]
enum Presented {
    Bearer(String),
    Session(String),
}

impl Presented {
    fn kind(&self) -> &'static str {
        match self {
            Presented::Bearer(_) => "bearer token",
            Presented::Session(_) => "session cookie",
        }
    }
}

/// The token or session of a request: a Bearer token wins over a cookie.
fn presented(parts: &Parts) -> Result<Presented, ApiError> {
    if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| ApiError::Unauthenticated)?;
        let (scheme, token) = value.trim().split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(ApiError::Unauthenticated);
        }
        return Ok(Presented::Bearer(token.trim().to_string()));
    }
    session_cookie(&parts.headers)
        .map(Presented::Session)
        .ok_or(ApiError::Unauthenticated)
}

/// The session cookie's value, from any `Cookie` header.
pub fn session_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Methods that may change something (RFC 9110 "unsafe" methods).
fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_extension_sets_only_itself_and_an_admin_everything() {
        let ext = Principal::Extension("1003".into());
        assert!(ext.may_set("1003"));
        assert!(!ext.may_set("1004"));
        assert!(!ext.may_see_all());
        let admin = Principal::Admin("alice".into());
        assert!(admin.may_set("1004"));
        assert!(admin.may_see_all());
    }

    #[test]
    fn actors_and_sources_say_who_and_how() {
        let by_token = Caller {
            principal: Principal::Admin("ops".into()),
            credential: Credential::Token { id: "7f3a".into() },
        };
        assert_eq!(by_token.actor(), "token:7f3a");
        assert_eq!(by_token.source(), ChangeSource::Api);
        let by_portal = Caller {
            principal: Principal::Extension("1003".into()),
            credential: Credential::Session { csrf: "x".into() },
        };
        assert_eq!(by_portal.actor(), "ext:1003");
        assert_eq!(by_portal.source(), ChangeSource::Web);
    }

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut request = axum::http::Request::builder().uri("/api/v1/extensions");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn bearer_wins_and_cookies_are_found_among_others() {
        assert!(matches!(
            presented(&parts(&[("authorization", "Bearer abc"), ("cookie", "starcode_session=s")])),
            Ok(Presented::Bearer(t)) if t == "abc"
        ));
        assert!(matches!(
            presented(&parts(&[("cookie", "theme=dark; starcode_session=s1; x=y")])),
            Ok(Presented::Session(s)) if s == "s1"
        ));
        assert!(presented(&parts(&[("authorization", "Basic dXNlcjpw")])).is_err());
        assert!(presented(&parts(&[("authorization", "Bearer ")])).is_err());
        assert!(presented(&parts(&[("cookie", "starcode_session=")])).is_err());
        assert!(presented(&parts(&[])).is_err());
    }
}
