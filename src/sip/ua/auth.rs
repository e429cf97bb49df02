//! The user agent's side of digest authentication: when a request must prove who sends it,
//! the `401`/`403`/`400` it gets otherwise, and the `403` of an authenticated extension acting
//! for another. The decisions are `sip::auth`'s; this file turns them into SIP.

use std::net::SocketAddr;
use std::time::Instant;

use ezk_sip_types::Method;

use super::{ChallengedInfo, ServerKey, UserAgent, CHALLENGED_INFO_MAX_BODY};
use crate::config::AuthMode;
use crate::sip::auth::{AuthCounters, AuthOutcome, AuthRequest, AuthSettings, Authenticator};
use crate::sip::message::SipMessage;
use crate::sip::request::RequestInfo;
use crate::sip::response::Response;

impl UserAgent {
    /// Sets who must authenticate and how (`sip.auth` and its companions, `[limits.auth]`).
    /// A user agent starts as `never` (only trusted peers are served) until this is called.
    /// `nonce_key` signs our nonces: random per process in the engine (nonces of an earlier
    /// run are then simply not ours), fixed in tests. Called again (a reload), the first key,
    /// nonces already given, used nonce counts and lockouts carry on.
    pub fn set_auth(&mut self, settings: AuthSettings, nonce_key: [u8; 32], now: Instant) {
        tracing::info!(
            mode = settings.mode.as_str(),
            realm = %settings.realm,
            "SIP authentication"
        );
        match self.auth.as_mut() {
            Some(auth) => auth.set_settings(settings),
            None => self.auth = Some(Authenticator::new(settings, nonce_key, now)),
        }
    }

    /// What digest authentication did so far: challenges, successes, failures by reason,
    /// lockouts.
    pub fn auth_counters(&self) -> AuthCounters {
        self.auth
            .as_ref()
            .map(Authenticator::counters)
            .unwrap_or_default()
    }

    /// The auth mode in force.
    pub(super) fn auth_mode(&self) -> AuthMode {
        self.auth
            .as_ref()
            .map_or(AuthMode::Never, |a| a.settings().mode)
    }

    /// Digest authentication of a new request, when `sip.auth` asks for it: `Ok(Some(ext))`
    /// proven, `Ok(None)` not challenged (a trusted peer, a method not in `sip.auth_methods`,
    /// auth off). `Err(())`: answered here (401, 403 or 400), nothing more to do.
    pub(super) fn authenticate(
        &mut self,
        info: &RequestInfo,
        msg: &SipMessage<'_>,
        key: &ServerKey,
        source: SocketAddr,
        now: Instant,
    ) -> Result<Option<String>, ()> {
        let Some(auth) = self.auth.as_mut() else {
            return Ok(None);
        };
        let settings = auth.settings();
        let trusted = self.settings.policy.is_trusted(source.ip());
        let method = info.method.to_string();
        let challenged =
            settings.challenges(&method) && (settings.mode == AuthMode::Always || !trusted);
        if !challenged {
            // Under `untrusted`/`always`, an untrusted source may not make a call, a
            // subscription or a publication without proving who it is, even when its method
            // is not in `sip.auth_methods`.
            let makes_state = matches!(
                info.method,
                Method::INVITE | Method::SUBSCRIBE | Method::PUBLISH
            );
            if settings.mode != AuthMode::Never && !trusted && makes_state {
                tracing::debug!(from = %source, method = %info.method, "request from an untrusted peer not challenged (sip.auth_methods) refused");
                self.answer_auth(info, key, source, 403, Vec::new(), now);
                return Err(());
            }
            return Ok(None);
        }
        let values: Vec<&str> = msg
            .headers
            .get_raw(&ezk_sip_types::Name::AUTHORIZATION)
            .map(|v| &**v)
            .collect();
        let request = AuthRequest {
            method: &method,
            uri: &info.request_uri,
            authorization: &values,
            source: source.ip(),
        };
        match auth.check(request, &self.accounts, now) {
            AuthOutcome::Authenticated { username } => Ok(Some(username)),
            AuthOutcome::Challenge {
                www_authenticate, ..
            } => {
                self.remember_challenged_info(info, msg, source, now);
                let headers = www_authenticate
                    .into_iter()
                    .map(|v| ("WWW-Authenticate", v))
                    .collect();
                self.answer_auth(info, key, source, 401, headers, now);
                Err(())
            }
            AuthOutcome::Refused(_) => {
                self.answer_auth(info, key, source, 403, Vec::new(), now);
                Err(())
            }
            AuthOutcome::Malformed(error) => {
                let bytes = Response::with_reason(info, source, 400, "Bad Authorization")
                    .to_tag(&self.new_tag())
                    .to_bytes();
                tracing::debug!(%error, "Authorization refused");
                self.send_final(key, bytes, 400, now);
                Err(())
            }
        }
    }

    /// An INFO of a call of this source that we challenge will come back authenticated, a
    /// moment later; remember when it first came so its key keeps that time.
    fn remember_challenged_info(
        &mut self,
        info: &RequestInfo,
        msg: &SipMessage<'_>,
        source: SocketAddr,
        now: Instant,
    ) {
        if info.method != Method::INFO || msg.body.len() > CHALLENGED_INFO_MAX_BODY {
            return;
        }
        let Some(id) = self.find_dialog(info) else {
            return;
        };
        if let Some(leg) = self.legs.get_mut(&id) {
            if leg.source.ip() == source.ip() {
                leg.challenged_info = Some(ChallengedInfo {
                    body: msg.body.to_vec(),
                    at: now,
                });
            }
        }
    }

    /// A 401 or 403 of authentication, through the server transaction (a retransmitted
    /// INVITE gets the same answer and its ACK is absorbed). Every refusal looks the same,
    /// whatever the reason: nothing tells which extensions exist.
    fn answer_auth(
        &mut self,
        info: &RequestInfo,
        key: &ServerKey,
        source: SocketAddr,
        code: u16,
        headers: Vec<(&'static str, String)>,
        now: Instant,
    ) {
        let tag = match &info.to_tag {
            Some(tag) => tag.clone(),
            None => self.new_tag(),
        };
        let mut response = Response::to(info, source, code).to_tag(&tag);
        for (name, value) in headers {
            response = response.header(name, value);
        }
        self.send_final(key, response.to_bytes(), code, now);
    }

    /// `403`: an authenticated extension acting as another one.
    pub(super) fn not_yours(
        &mut self,
        info: &RequestInfo,
        key: &ServerKey,
        source: SocketAddr,
        user: &str,
        now: Instant,
    ) {
        tracing::warn!(
            from = %source,
            extension = user,
            claimed_from = info.from_user.as_deref().unwrap_or("-"),
            asserted = info.asserted_user.as_deref().unwrap_or("-"),
            target = info.target_user.as_deref().unwrap_or("-"),
            "authenticated extension acting for another one; refused"
        );
        let tag = match &info.to_tag {
            Some(tag) => tag.clone(),
            None => self.new_tag(),
        };
        let bytes = Response::with_reason(info, source, 403, "Not your extension")
            .to_tag(&tag)
            .to_bytes();
        self.send_final(key, bytes, 403, now);
    }
}

/// True when a request names a caller or watcher (From, P-Asserted-Identity) other than the
/// extension that authenticated it.
pub(super) fn claims_another(info: &RequestInfo, user: &str) -> bool {
    info.from_user.as_deref().is_some_and(|u| u != user)
        || info.asserted_user.as_deref().is_some_and(|u| u != user)
}
