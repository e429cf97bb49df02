//! Who may use the web interface and the HTTP API: admin accounts, portal logins of
//! extensions, API tokens and browser sessions. Everything here is pure or behind the
//! [`WebAuthStore`] trait: no HTTP types, no clock reads (every entry point takes `now`), so
//! the axum extractors stay a thin shell over [`WebAuth`] and the rules are tested on a
//! virtual clock.
//!
//! What is kept: admin passwords as argon2id hashes (like portal passwords, see
//! [`crate::accounts::secrets`]); API tokens and session ids only as SHA-256 of the secret
//! (they are long random strings, so a fast hash is enough and lets every request check one).
//! The secrets themselves are shown once and never logged: every type holding one hides it
//! from `Debug`.

pub mod limiter;
pub mod secrets;
pub mod service;
pub mod validate;

use std::time::SystemTime;

use crate::presence::StoreError;

pub use limiter::{LoginLimiter, LoginLimits};
pub use secrets::{CsrfToken, SessionId, TokenSecret};
pub use service::{ActiveSession, LoginError, NewSession, SessionSettings, WebAuth};

/// Who is making a request, once proven: what the web and the API authorise against and what
/// every change records as its actor.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// An admin account (or an admin-scoped API token, named `token:<id>`): sees and sets
    /// everything.
    Admin(String),
    /// An extension logged into the portal (or an extension-scoped token): sees the board,
    /// sets only its own status and custom text.
    Extension(String),
}

impl Principal {
    /// Whether this principal may change `extension`'s status and custom text.
    pub fn may_set(&self, extension: &str) -> bool {
        match self {
            Principal::Admin(_) => true,
            Principal::Extension(own) => own == extension,
        }
    }

    /// Whether this principal sees everything (accounts, tokens, settings, every history);
    /// the board of statuses is visible to every principal.
    pub fn may_see_all(&self) -> bool {
        matches!(self, Principal::Admin(_))
    }

    /// The actor a change records: `admin:NAME` or `ext:EXTENSION`.
    pub fn actor(&self) -> String {
        match self {
            Principal::Admin(name) => format!("admin:{name}"),
            Principal::Extension(ext) => format!("ext:{ext}"),
        }
    }

    /// The kind as stored (`admin` / `extension`).
    pub fn kind(&self) -> &'static str {
        match self {
            Principal::Admin(_) => "admin",
            Principal::Extension(_) => "extension",
        }
    }

    /// The admin name or extension.
    pub fn name(&self) -> &str {
        match self {
            Principal::Admin(name) | Principal::Extension(name) => name,
        }
    }

    /// Rebuilds a principal from its stored kind and name; `None` for an unknown kind.
    pub fn from_stored(kind: &str, name: String) -> Option<Principal> {
        match kind {
            "admin" => Some(Principal::Admin(name)),
            "extension" => Some(Principal::Extension(name)),
            _ => None,
        }
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.actor())
    }
}

/// An admin account as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Admin {
    pub name: String,
    /// argon2id PHC string. Never logged: `Debug` hides it.
    pub password_hash: String,
    /// A disabled admin cannot log in; its sessions end at their next use.
    pub enabled: bool,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("name", &self.name)
            .field("password_hash", &"<hidden>")
            .field("enabled", &self.enabled)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// A new admin (password already hashed).
#[derive(Clone, PartialEq, Eq)]
pub struct NewAdmin {
    pub name: String,
    pub password_hash: String,
    pub enabled: bool,
}

impl std::fmt::Debug for NewAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewAdmin")
            .field("name", &self.name)
            .field("password_hash", &"<hidden>")
            .field("enabled", &self.enabled)
            .finish()
    }
}

/// A change to an admin; `None` leaves a field as it is.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct AdminChange {
    pub password_hash: Option<String>,
    pub enabled: Option<bool>,
}

impl std::fmt::Debug for AdminChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminChange")
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "<hidden>"),
            )
            .field("enabled", &self.enabled)
            .finish()
    }
}

/// What an API token may do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TokenScope {
    /// Everything an admin may do.
    Admin,
    /// What this extension may do in the portal.
    Extension(String),
}

impl std::fmt::Display for TokenScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenScope::Admin => f.write_str("admin"),
            TokenScope::Extension(ext) => write!(f, "extension {ext}"),
        }
    }
}

/// An API token as stored: only the SHA-256 of the token, never the token.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// The public part of the token (`sc_<id>_<secret>`): how it is found, listed, revoked.
    pub id: String,
    /// What the admin called it ("wallboard script").
    pub name: String,
    pub scope: TokenScope,
    /// Lowercase hex SHA-256 of the whole token. Never logged: `Debug` hides it.
    pub token_hash: String,
    /// Who created it: an admin's actor (`admin:NAME`) or `cli` for the command line.
    pub created_by: String,
    pub created_at: SystemTime,
    /// Updated at most once a minute (see [`service::TOKEN_TOUCH_EVERY`]).
    pub last_used_at: Option<SystemTime>,
    pub revoked_at: Option<SystemTime>,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("scope", &self.scope)
            .field("token_hash", &"<hidden>")
            .field("created_by", &self.created_by)
            .field("created_at", &self.created_at)
            .field("last_used_at", &self.last_used_at)
            .field("revoked_at", &self.revoked_at)
            .finish()
    }
}

/// A browser session as stored: the SHA-256 of its cookie value, never the value, so a copy
/// of the database cannot be used to take over a session.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// Lowercase hex SHA-256 of the cookie value.
    pub id_hash: String,
    pub principal: Principal,
    /// The per-session CSRF token a form or API call from the browser must echo.
    pub csrf: String,
    /// A short fingerprint of the principal's password hash at login: a changed password
    /// ends every session opened with the old one.
    pub credential_tag: String,
    pub created_at: SystemTime,
    /// The absolute end (login + `session_lifetime`); the idle end is `last_seen_at +
    /// session_idle`, checked with the current settings.
    pub expires_at: SystemTime,
    pub last_seen_at: SystemTime,
}

impl std::fmt::Debug for StoredSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSession")
            .field("id_hash", &"<hidden>")
            .field("principal", &self.principal)
            .field("csrf", &"<hidden>")
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("last_seen_at", &self.last_seen_at)
            .finish()
    }
}

/// Errors of the web access store.
#[derive(Debug, thiserror::Error)]
pub enum WebAuthError {
    #[error("admin {0} already exists")]
    AdminExists(String),
    #[error("there is no admin {0}")]
    AdminNotFound(String),
    #[error("there is no API token {0}")]
    TokenNotFound(String),
    #[error("API token id {0} is already taken")]
    TokenExists(String),
    /// A token id that is not lowercase hex.
    #[error("invalid API token id '{0}'")]
    InvalidTokenId(String),
    /// An admin name that cannot be kept.
    #[error("invalid admin name '{0}': use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter")]
    InvalidAdminName(String),
    /// A token label that cannot be kept.
    #[error("invalid token name: {0}; use 1 to 64 characters without control characters")]
    InvalidTokenName(String),
    /// Something that is not a hash where only hashes are kept (a writer's bug): refused so
    /// a plaintext secret never reaches the database.
    #[error("refusing to store {0}")]
    NotAHash(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading an extension's account (a portal login, an extension-scoped token).
    #[error(transparent)]
    Accounts(#[from] crate::accounts::AccountError),
    #[error(transparent)]
    Hashing(#[from] crate::accounts::SecretError),
}

/// Where admins, API tokens and browser sessions live: the same database as presence and
/// accounts, so sessions survive a restart and every node on one database sees them.
/// Times come from the caller (`at`, `now`), never from a clock inside.
pub trait WebAuthStore: Send + Sync {
    /// Adds an admin; [`WebAuthError::AdminExists`] if the name is taken.
    fn add_admin(&self, admin: &NewAdmin, at: SystemTime) -> Result<Admin, WebAuthError>;

    /// One admin, `None` if there is none of that name.
    fn get_admin(&self, name: &str) -> Result<Option<Admin>, WebAuthError>;

    /// Every admin, ordered by name.
    fn list_admins(&self) -> Result<Vec<Admin>, WebAuthError>;

    /// Applies `change`; [`WebAuthError::AdminNotFound`] if there is no such admin.
    fn update_admin(
        &self,
        name: &str,
        change: &AdminChange,
        at: SystemTime,
    ) -> Result<Admin, WebAuthError>;

    /// Removes an admin (tokens it created stay until revoked).
    fn remove_admin(&self, name: &str) -> Result<(), WebAuthError>;

    /// Adds a token; [`WebAuthError::TokenExists`] if the id is taken.
    fn add_token(&self, token: &ApiToken) -> Result<(), WebAuthError>;

    /// One token (revoked ones too), `None` if unknown.
    fn get_token(&self, id: &str) -> Result<Option<ApiToken>, WebAuthError>;

    /// Every token (revoked ones too), oldest first.
    fn list_tokens(&self) -> Result<Vec<ApiToken>, WebAuthError>;

    /// Revokes a token for good; revoking it again keeps the first time.
    fn revoke_token(&self, id: &str, at: SystemTime) -> Result<ApiToken, WebAuthError>;

    /// Records that a token was used at `at`.
    fn token_used(&self, id: &str, at: SystemTime) -> Result<(), WebAuthError>;

    /// Keeps a new session.
    fn add_session(&self, session: &StoredSession) -> Result<(), WebAuthError>;

    /// The session whose cookie hashes to `id_hash`, if kept (expired or not).
    fn get_session(&self, id_hash: &str) -> Result<Option<StoredSession>, WebAuthError>;

    /// Moves a session's `last_seen_at` (sliding idle expiry).
    fn session_seen(&self, id_hash: &str, at: SystemTime) -> Result<(), WebAuthError>;

    /// Ends one session; false if it was not kept.
    fn remove_session(&self, id_hash: &str) -> Result<bool, WebAuthError>;

    /// Ends every session of `principal` (a disabled or removed admin); how many ended.
    fn remove_sessions_of(&self, principal: &Principal) -> Result<usize, WebAuthError>;

    /// Forgets sessions whose absolute end or idle end (`last_seen_at + idle`) has passed.
    fn remove_expired_sessions(
        &self,
        now: SystemTime,
        idle: std::time::Duration,
    ) -> Result<usize, WebAuthError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_extension_sets_only_its_own_status_and_an_admin_everything() {
        let ann = Principal::Extension("1001".into());
        let root = Principal::Admin("root".into());
        assert!(ann.may_set("1001"));
        assert!(!ann.may_set("1002"));
        assert!(!ann.may_set("1001 "));
        assert!(!ann.may_see_all());
        assert!(root.may_set("1002"));
        assert!(root.may_see_all());
        assert_eq!(ann.actor(), "ext:1001");
        assert_eq!(root.to_string(), "admin:root");
        assert_eq!(
            Principal::from_stored(root.kind(), root.name().into()),
            Some(root)
        );
        assert_eq!(Principal::from_stored("guest", "x".into()), None);
    }

    #[test]
    fn debug_output_hides_every_hash_and_secret() {
        let t = SystemTime::UNIX_EPOCH;
        let texts = [
            format!(
                "{:?}",
                Admin {
                    name: "root".into(),
                    password_hash: "$argon2id$secret-hash".into(),
                    enabled: true,
                    created_at: t,
                    updated_at: t,
                }
            ),
            format!(
                "{:?}",
                NewAdmin {
                    name: "root".into(),
                    password_hash: "$argon2id$secret-hash".into(),
                    enabled: true,
                }
            ),
            format!(
                "{:?}",
                AdminChange {
                    password_hash: Some("$argon2id$secret-hash".into()),
                    enabled: None,
                }
            ),
            format!(
                "{:?}",
                ApiToken {
                    id: "abc".into(),
                    name: "n".into(),
                    scope: TokenScope::Admin,
                    token_hash: "secret-hash".into(),
                    created_by: "cli".into(),
                    created_at: t,
                    last_used_at: None,
                    revoked_at: None,
                }
            ),
            format!(
                "{:?}",
                StoredSession {
                    id_hash: "secret-hash".into(),
                    principal: Principal::Admin("root".into()),
                    csrf: "secret-csrf".into(),
                    credential_tag: "tag".into(),
                    created_at: t,
                    expires_at: t,
                    last_seen_at: t,
                }
            ),
        ];
        for text in texts {
            assert!(!text.contains("secret"), "{text}");
        }
    }
}
