//! [`WebAuth`]: the decisions behind every web request, with no HTTP types. The axum
//! extractors call it (from `spawn_blocking`: argon2 and the store block) and turn its
//! answers into cookies, 401s and 429s.
//!
//! - **Login**: the user is an admin name or an extension. *Admins first*: when an admin of
//!   that name exists, only the admin's password is tried (an extension of the same name
//!   cannot log into the portal; `starcode admin add` refuses such names). Every attempt costs
//!   exactly one argon2id verification: an unknown user, or an extension without a portal
//!   password, is checked against a dummy hash, so timing does not tell which users exist. A
//!   disabled account is refused as [`LoginError::Disabled`] only after its correct password;
//!   with a wrong one it is a wrong password like any other. Failures are counted per source
//!   and per user by the [`LoginLimiter`]; while locked out, no password is checked.
//! - **Sessions** are kept in the store (hash of the cookie, principal, CSRF token), so they
//!   survive a restart and work on every node sharing the database. A session ends
//!   `session_idle` after its last use (sliding; the last use is written at most once a
//!   minute), `session_lifetime` after its login, when the principal is disabled or removed,
//!   or when its password changes.
//! - **API tokens** (`sc_<id>_<secret>`) are found by id and checked by SHA-256 in constant
//!   time; revoked tokens, and extension tokens whose account is gone or disabled, are
//!   refused. An admin-scoped token acts as `Principal::Admin("token:<id>")`, so changes
//!   record which token made them.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use super::limiter::LoginLimiter;
use super::secrets::{credential_tag, token_id, token_matches, CsrfToken, SessionId, TokenSecret};
use super::validate::validate_admin_name;
use super::{ApiToken, Principal, StoredSession, TokenScope, WebAuthError, WebAuthStore};
use crate::accounts::{hash_portal_password, verify_portal_password, AccountError, AccountStore};
use crate::config::{HttpConfig, LoginLimitsConfig};
use crate::presence::validate_extension;
use crate::sip::auth::guard::LockoutStarted;

/// A session's last use is written at most this often (sliding expiry loses at most this).
pub const SESSION_TOUCH_EVERY: Duration = Duration::from_secs(60);
/// A token's last use is written at most this often.
pub const TOKEN_TOUCH_EVERY: Duration = Duration::from_secs(60);
/// The longest cookie value or bearer token looked at; anything longer is refused unread.
const MAX_PRESENTED_LEN: usize = 256;

/// How long browser sessions last (`[http] session_idle`, `session_lifetime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSettings {
    pub idle: Duration,
    pub lifetime: Duration,
}

impl From<&HttpConfig> for SessionSettings {
    fn from(c: &HttpConfig) -> SessionSettings {
        SessionSettings {
            idle: c.session_idle.0,
            lifetime: c.session_lifetime.0.max(c.session_idle.0),
        }
    }
}

/// Why a login was refused. The web answers `BadCredentials` and `Disabled` with the same
/// status; `Locked` carries the `Retry-After`.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("wrong user name or password")]
    BadCredentials,
    #[error("this account is disabled")]
    Disabled,
    #[error("too many failed logins; try again in {} s", retry_after.as_secs())]
    Locked { retry_after: Duration },
    #[error(transparent)]
    Store(#[from] WebAuthError),
}

/// A session just opened: what the shell puts in the cookie and the page. `Debug` hides the
/// secrets.
#[derive(Debug)]
pub struct NewSession {
    /// The cookie value (HttpOnly, SameSite, Secure over TLS).
    pub cookie: SessionId,
    /// The CSRF token the page echoes in `X-CSRF-Token` or a form field.
    pub csrf: CsrfToken,
    pub principal: Principal,
    /// The absolute end: the cookie's `Max-Age` can stop here.
    pub expires_at: SystemTime,
}

/// A session found valid for this request.
#[derive(Debug, Clone)]
pub struct ActiveSession {
    pub principal: Principal,
    /// What a state-changing request must echo ([`CsrfToken::matches`]).
    pub csrf: CsrfToken,
}

/// The web access service over the stores.
pub struct WebAuth {
    store: Arc<dyn WebAuthStore>,
    accounts: Arc<dyn AccountStore>,
    sessions: Mutex<SessionSettings>,
    limiter: Mutex<LoginLimiter>,
    /// Verified against when the user has no password to verify, so every login attempt
    /// costs the same.
    dummy_hash: String,
}

/// The password hash and enabled flag of a principal as stored now, `None` if it is gone.
struct Credential {
    hash: String,
    enabled: bool,
}

impl WebAuth {
    /// The service over these stores (usually one `SqliteStore` twice), with the config's
    /// session lifetimes and login limits. Hashes the dummy password once (tens of ms).
    pub fn new(
        store: Arc<dyn WebAuthStore>,
        accounts: Arc<dyn AccountStore>,
        http: &HttpConfig,
        limits: &LoginLimitsConfig,
    ) -> Result<WebAuth, WebAuthError> {
        Ok(WebAuth {
            store,
            accounts,
            sessions: Mutex::new(http.into()),
            limiter: Mutex::new(LoginLimiter::new(limits)),
            dummy_hash: hash_portal_password("starcode: no such user")?,
        })
    }

    /// New settings after a config reload: the lifetimes apply to existing sessions at their
    /// next use; failure counts are kept.
    pub fn set_config(&self, http: &HttpConfig, limits: &LoginLimitsConfig) {
        *self.sessions.lock().unwrap_or_else(PoisonError::into_inner) = http.into();
        self.limiter().set_limits(limits);
    }

    /// How long sessions last now (the latest reload's settings).
    pub fn session_settings(&self) -> SessionSettings {
        *self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The limiter; its state stays consistent whatever panicked while it was held.
    fn limiter(&self) -> std::sync::MutexGuard<'_, LoginLimiter> {
        self.limiter.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Who `user` names: the admin of that name if any (admins first), else the extension
    /// with a portal password; `None` when neither.
    fn find_user(&self, user: &str) -> Result<Option<(Principal, Credential)>, WebAuthError> {
        if validate_admin_name(user).is_ok() {
            if let Some(admin) = self.store.get_admin(user)? {
                let principal = Principal::Admin(admin.name);
                return Ok(Some((
                    principal,
                    Credential {
                        hash: admin.password_hash,
                        enabled: admin.enabled,
                    },
                )));
            }
        }
        if validate_extension(user).is_err() {
            return Ok(None);
        }
        Ok(self.accounts.get_account(user)?.and_then(|account| {
            let hash = account.portal_password?;
            Some((
                Principal::Extension(account.extension),
                Credential {
                    hash,
                    enabled: account.enabled,
                },
            ))
        }))
    }

    /// The current credential of a principal (for sessions: still there, still enabled,
    /// same password).
    fn credential_of(&self, principal: &Principal) -> Result<Option<Credential>, WebAuthError> {
        Ok(match principal {
            Principal::Admin(name) => self.store.get_admin(name)?.map(|a| Credential {
                hash: a.password_hash,
                enabled: a.enabled,
            }),
            Principal::Extension(ext) => self.accounts.get_account(ext)?.and_then(|a| {
                Some(Credential {
                    hash: a.portal_password?,
                    enabled: a.enabled,
                })
            }),
        })
    }

    /// Checks a login and opens a session. Blocking (argon2id, the store).
    pub fn login(
        &self,
        user: &str,
        password: &str,
        source: IpAddr,
        now: SystemTime,
    ) -> Result<NewSession, LoginError> {
        let user = user.trim();
        if let Some(retry_after) = self.limiter().wait(user, source, now) {
            tracing::info!(%source, retry_after_s = retry_after.as_secs(), "web login refused: locked out");
            return Err(LoginError::Locked { retry_after });
        }
        let found = if user.len() > MAX_PRESENTED_LEN {
            None
        } else {
            self.find_user(user)?
        };
        let hash = found
            .as_ref()
            .map_or(self.dummy_hash.as_str(), |(_, c)| c.hash.as_str());
        let verified = verify_portal_password(hash, password);
        let (principal, credential) = match found {
            Some(found) if verified => found,
            found => {
                let lockouts = self.limiter().failure(user, source, now);
                match &found {
                    Some((principal, _)) => {
                        tracing::warn!(%source, %principal, "web login failed: wrong password")
                    }
                    // The name is not logged: people type passwords into the user field.
                    None => tracing::warn!(%source, "web login failed: unknown user"),
                }
                for lockout in lockouts {
                    match (lockout, &found) {
                        (LockoutStarted::Source { source, duration }, _) => {
                            tracing::warn!(%source, duration_s = duration.as_secs(), "web logins locked out for a source")
                        }
                        (LockoutStarted::Extension { duration, .. }, Some((principal, _))) => {
                            tracing::warn!(%principal, duration_s = duration.as_secs(), "web logins locked out for a user")
                        }
                        (LockoutStarted::Extension { duration, .. }, None) => {
                            tracing::warn!(
                                duration_s = duration.as_secs(),
                                "web logins locked out for an unknown user"
                            )
                        }
                    }
                }
                return Err(LoginError::BadCredentials);
            }
        };
        if !credential.enabled {
            tracing::warn!(%source, %principal, "web login refused: account disabled");
            return Err(LoginError::Disabled);
        }
        self.limiter().success(user, source, now);
        let settings = self.session_settings();
        let cookie = SessionId::generate();
        let csrf = CsrfToken::generate();
        let expires_at = now + settings.lifetime;
        self.store.add_session(&StoredSession {
            id_hash: cookie.hash(),
            principal: principal.clone(),
            csrf: csrf.expose().to_string(),
            credential_tag: credential_tag(&credential.hash),
            created_at: now,
            expires_at,
            last_seen_at: now,
        })?;
        tracing::info!(%source, %principal, "web login");
        Ok(NewSession {
            cookie,
            csrf,
            principal,
            expires_at,
        })
    }

    /// The session a cookie value names, if it is still valid at `now`; moves its idle
    /// expiry on. An ended session is forgotten. Blocking (the store).
    pub fn session(
        &self,
        cookie_value: &str,
        now: SystemTime,
    ) -> Result<Option<ActiveSession>, WebAuthError> {
        self.check_session(cookie_value, now, true)
    }

    /// Whether the session a cookie value names is still valid at `now`, without moving its
    /// idle expiry: a long-lived response asking again is not the user at work. An ended
    /// session is forgotten. Blocking (the store).
    pub fn session_still_valid(
        &self,
        cookie_value: &str,
        now: SystemTime,
    ) -> Result<bool, WebAuthError> {
        Ok(self.check_session(cookie_value, now, false)?.is_some())
    }

    /// [`WebAuth::session`], moving the idle expiry on only when `touch`.
    fn check_session(
        &self,
        cookie_value: &str,
        now: SystemTime,
        touch: bool,
    ) -> Result<Option<ActiveSession>, WebAuthError> {
        if cookie_value.is_empty() || cookie_value.len() > MAX_PRESENTED_LEN {
            return Ok(None);
        }
        let id_hash = SessionId::hash_of_cookie(cookie_value);
        let Some(session) = self.store.get_session(&id_hash)? else {
            return Ok(None);
        };
        let settings = self.session_settings();
        let idle_end = session.last_seen_at + settings.idle;
        let lifetime_end = session
            .expires_at
            .min(session.created_at + settings.lifetime);
        let ended = if now >= lifetime_end {
            Some("its lifetime is over")
        } else if now >= idle_end {
            Some("it was idle too long")
        } else {
            match self.credential_of(&session.principal)? {
                None => Some("its user is gone"),
                Some(c) if !c.enabled => Some("its user is disabled"),
                Some(c) if credential_tag(&c.hash) != session.credential_tag => {
                    Some("its password changed")
                }
                Some(_) => None,
            }
        };
        if let Some(why) = ended {
            self.store.remove_session(&id_hash)?;
            tracing::info!(principal = %session.principal, why, "web session ended");
            return Ok(None);
        }
        if touch
            && now
                .duration_since(session.last_seen_at)
                .is_ok_and(|d| d >= SESSION_TOUCH_EVERY)
        {
            self.store.session_seen(&id_hash, now)?;
        }
        Ok(Some(ActiveSession {
            principal: session.principal,
            csrf: CsrfToken::from_stored(session.csrf),
        }))
    }

    /// Ends the session a cookie names; false if there was none.
    pub fn logout(&self, cookie_value: &str) -> Result<bool, WebAuthError> {
        if cookie_value.is_empty() || cookie_value.len() > MAX_PRESENTED_LEN {
            return Ok(false);
        }
        self.store
            .remove_session(&SessionId::hash_of_cookie(cookie_value))
    }

    /// Forgets every session that has ended by `now` (call it now and then; sessions are
    /// also checked at each use). Returns how many were removed.
    pub fn purge_expired(&self, now: SystemTime) -> Result<usize, WebAuthError> {
        self.store
            .remove_expired_sessions(now, self.session_settings().idle)
    }

    /// Who a bearer token (`Authorization: Bearer sc_...`, the value after `Bearer `) acts
    /// as, if it is valid. Records its use at most once a minute. Blocking (the store).
    pub fn check_token(
        &self,
        bearer: &str,
        now: SystemTime,
    ) -> Result<Option<Principal>, WebAuthError> {
        let bearer = bearer.trim();
        if bearer.len() > MAX_PRESENTED_LEN {
            return Ok(None);
        }
        let Some(id) = token_id(bearer) else {
            return Ok(None);
        };
        let Some(token) = self.store.get_token(id)? else {
            return Ok(None);
        };
        if !token_matches(bearer, &token.token_hash) {
            tracing::warn!(token = %token.id, "API token with a wrong secret");
            return Ok(None);
        }
        if token.revoked_at.is_some() {
            tracing::info!(token = %token.id, "revoked API token used");
            return Ok(None);
        }
        let principal = match &token.scope {
            TokenScope::Admin => Principal::Admin(format!("token:{}", token.id)),
            TokenScope::Extension(ext) => {
                match self.accounts.get_account(ext)? {
                    Some(account) if account.enabled => {}
                    _ => {
                        tracing::info!(token = %token.id, extension = %ext, "API token of a missing or disabled extension");
                        return Ok(None);
                    }
                }
                Principal::Extension(ext.clone())
            }
        };
        let due = token.last_used_at.is_none_or(|last| {
            now.duration_since(last)
                .is_ok_and(|d| d >= TOKEN_TOUCH_EVERY)
        });
        if due {
            self.store.token_used(&token.id, now)?;
        }
        Ok(Some(principal))
    }

    /// Creates an API token; the secret is returned once and only its hash is kept. An
    /// extension scope needs the extension's account.
    pub fn create_token(
        &self,
        name: &str,
        scope: TokenScope,
        created_by: &str,
        now: SystemTime,
    ) -> Result<(ApiToken, TokenSecret), WebAuthError> {
        create_token(&*self.store, &*self.accounts, name, scope, created_by, now)
    }
}

/// Creates an API token in `store` (the CLI's path, without a [`WebAuth`]); see
/// [`WebAuth::create_token`].
pub fn create_token(
    store: &dyn WebAuthStore,
    accounts: &dyn AccountStore,
    name: &str,
    scope: TokenScope,
    created_by: &str,
    now: SystemTime,
) -> Result<(ApiToken, TokenSecret), WebAuthError> {
    if let TokenScope::Extension(ext) = &scope {
        if accounts.get_account(ext)?.is_none() {
            return Err(AccountError::NotFound(ext.clone()).into());
        }
    }
    let secret = TokenSecret::generate();
    let token = ApiToken {
        id: secret.id().to_string(),
        name: name.trim().to_string(),
        scope,
        token_hash: secret.hash(),
        created_by: created_by.to_string(),
        created_at: now,
        last_used_at: None,
        revoked_at: None,
    };
    store.add_token(&token)?;
    tracing::info!(token = %token.id, scope = %token.scope, created_by, "API token created");
    Ok((token, secret))
}

#[cfg(test)]
mod tests;
