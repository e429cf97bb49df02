//! The [`WebAuthStore`] half of [`MemoryStore`]: admins, API tokens and sessions in maps,
//! following the same rules as the SQLite backend (the conformance suite checks both).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::MemoryStore;
use crate::presence::StoreError;
use crate::web_auth::validate::{
    validate_admin_change, validate_admin_name, validate_password_hash, validate_session,
    validate_token, validate_token_id,
};
use crate::web_auth::{
    Admin, AdminChange, ApiToken, NewAdmin, Principal, StoredSession, WebAuthError, WebAuthStore,
};

/// Admins, tokens and sessions, ordered like the SQLite primary keys.
#[derive(Default)]
pub(super) struct WebState {
    admins: BTreeMap<String, Admin>,
    tokens: BTreeMap<String, ApiToken>,
    /// By the hash of the cookie value.
    sessions: BTreeMap<String, StoredSession>,
}

impl WebAuthStore for MemoryStore {
    fn add_admin(&self, admin: &NewAdmin, at: SystemTime) -> Result<Admin, WebAuthError> {
        validate_admin_name(&admin.name)?;
        validate_password_hash(&admin.password_hash)?;
        let mut state = self.lock();
        if state.web.admins.contains_key(&admin.name) {
            return Err(WebAuthError::AdminExists(admin.name.clone()));
        }
        let stored = Admin {
            name: admin.name.clone(),
            password_hash: admin.password_hash.clone(),
            enabled: admin.enabled,
            created_at: at,
            updated_at: at,
        };
        state.web.admins.insert(admin.name.clone(), stored.clone());
        Ok(stored)
    }

    fn get_admin(&self, name: &str) -> Result<Option<Admin>, WebAuthError> {
        validate_admin_name(name)?;
        Ok(self.lock().web.admins.get(name).cloned())
    }

    fn list_admins(&self) -> Result<Vec<Admin>, WebAuthError> {
        Ok(self.lock().web.admins.values().cloned().collect())
    }

    fn update_admin(
        &self,
        name: &str,
        change: &AdminChange,
        at: SystemTime,
    ) -> Result<Admin, WebAuthError> {
        validate_admin_change(name, change)?;
        let mut state = self.lock();
        let Some(admin) = state.web.admins.get_mut(name) else {
            return Err(WebAuthError::AdminNotFound(name.to_string()));
        };
        if let Some(hash) = &change.password_hash {
            admin.password_hash = hash.clone();
        }
        if let Some(enabled) = change.enabled {
            admin.enabled = enabled;
        }
        admin.updated_at = at;
        Ok(admin.clone())
    }

    fn remove_admin(&self, name: &str) -> Result<(), WebAuthError> {
        validate_admin_name(name)?;
        match self.lock().web.admins.remove(name) {
            Some(_) => Ok(()),
            None => Err(WebAuthError::AdminNotFound(name.to_string())),
        }
    }

    fn add_token(&self, token: &ApiToken) -> Result<(), WebAuthError> {
        validate_token(token)?;
        let mut state = self.lock();
        if state.web.tokens.contains_key(&token.id) {
            return Err(WebAuthError::TokenExists(token.id.clone()));
        }
        state.web.tokens.insert(token.id.clone(), token.clone());
        Ok(())
    }

    fn get_token(&self, id: &str) -> Result<Option<ApiToken>, WebAuthError> {
        validate_token_id(id)?;
        Ok(self.lock().web.tokens.get(id).cloned())
    }

    fn list_tokens(&self) -> Result<Vec<ApiToken>, WebAuthError> {
        let mut tokens: Vec<ApiToken> = self.lock().web.tokens.values().cloned().collect();
        tokens.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(tokens)
    }

    fn revoke_token(&self, id: &str, at: SystemTime) -> Result<ApiToken, WebAuthError> {
        validate_token_id(id)?;
        let mut state = self.lock();
        let Some(token) = state.web.tokens.get_mut(id) else {
            return Err(WebAuthError::TokenNotFound(id.to_string()));
        };
        token.revoked_at.get_or_insert(at);
        Ok(token.clone())
    }

    fn token_used(&self, id: &str, at: SystemTime) -> Result<(), WebAuthError> {
        validate_token_id(id)?;
        if let Some(token) = self.lock().web.tokens.get_mut(id) {
            token.last_used_at = Some(at);
        }
        Ok(())
    }

    fn add_session(&self, session: &StoredSession) -> Result<(), WebAuthError> {
        validate_session(session)?;
        // Like the databases' primary key: a session id is kept once, never replaced.
        match self.lock().web.sessions.entry(session.id_hash.clone()) {
            std::collections::btree_map::Entry::Occupied(_) => Err(StoreError::Database(
                "a web session with this id is already kept".into(),
            )
            .into()),
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(session.clone());
                Ok(())
            }
        }
    }

    fn get_session(&self, id_hash: &str) -> Result<Option<StoredSession>, WebAuthError> {
        Ok(self.lock().web.sessions.get(id_hash).cloned())
    }

    fn session_seen(&self, id_hash: &str, at: SystemTime) -> Result<(), WebAuthError> {
        if let Some(session) = self.lock().web.sessions.get_mut(id_hash) {
            session.last_seen_at = at;
        }
        Ok(())
    }

    fn remove_session(&self, id_hash: &str) -> Result<bool, WebAuthError> {
        Ok(self.lock().web.sessions.remove(id_hash).is_some())
    }

    fn remove_sessions_of(&self, principal: &Principal) -> Result<usize, WebAuthError> {
        let sessions = &mut self.lock().web.sessions;
        let before = sessions.len();
        sessions.retain(|_, s| s.principal != *principal);
        Ok(before - sessions.len())
    }

    fn remove_expired_sessions(
        &self,
        now: SystemTime,
        idle: Duration,
    ) -> Result<usize, WebAuthError> {
        let sessions = &mut self.lock().web.sessions;
        let before = sessions.len();
        // An idle limit past the end of time never ends a session.
        sessions.retain(|_, s| {
            now < s.expires_at && s.last_seen_at.checked_add(idle).is_none_or(|end| now < end)
        });
        Ok(before - sessions.len())
    }
}
