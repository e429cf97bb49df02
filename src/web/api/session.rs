//! Browser sign-in: `POST /login` opens a session (an HttpOnly, SameSite=Strict cookie, `Secure`
//! over HTTPS) and answers with the CSRF token the pages send back on every change;
//! `GET /me` says who the session is; `POST /logout` ends it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::{header, request::Parts, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extensions::parse_json;
use crate::web::access::{
    session_cookie, Caller, Credential, LoginRefused, Principal, SESSION_COOKIE,
};
use crate::web::error::{blocking, ApiError, ErrorBody};
use crate::web::WebState;

/// The longest user name or password read (argon2 of a megabyte is a cheap attack).
const MAX_CREDENTIAL: usize = 256;

/// A sign-in.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// An admin name, or an extension (portal login).
    #[schema(example = "1003")]
    pub user: String,
    pub password: String,
}

/// Who is signed in.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct PrincipalView {
    /// admin or extension.
    pub kind: String,
    /// The admin's name or the extension.
    pub name: String,
}

impl From<&Principal> for PrincipalView {
    fn from(p: &Principal) -> PrincipalView {
        match p {
            Principal::Admin(name) => PrincipalView {
                kind: "admin".into(),
                name: name.clone(),
            },
            Principal::Extension(ext) => PrincipalView {
                kind: "extension".into(),
                name: ext.clone(),
            },
        }
    }
}

/// The answer to a sign-in and to `GET /me`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Me {
    pub principal: PrincipalView,
    /// Send it back as `X-CSRF-Token` with every change made in this session; absent for API
    /// tokens (they need none).
    pub csrf: Option<String>,
}

/// The client's address, when the server knows it.
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<ClientAddr, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// Signs in with a password and opens a browser session.
#[utoipa::path(
    post, path = "/login", tag = "session",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in; the session cookie is set", body = Me),
        (status = 400, description = "Not a sign-in request", body = ErrorBody),
        (status = 401, description = "Wrong user or password", body = ErrorBody),
        (status = 429, description = "Too many failed sign-ins from here or for this user", body = ErrorBody),
    )
)]
pub async fn login(
    State(state): State<Arc<WebState>>,
    ClientAddr(source): ClientAddr,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: LoginRequest = parse_json(&body)?;
    if request.user.is_empty() || request.user.len() > MAX_CREDENTIAL {
        return Err(ApiError::field(
            "user",
            "give an admin name or an extension",
        ));
    }
    if request.password.len() > MAX_CREDENTIAL {
        return Err(ApiError::field("password", "the password is too long"));
    }
    let gate = state.gate.clone();
    let logged_in = blocking(move || {
        gate.login(&request.user, &request.password, source)
            .map_err(refused)
    })
    .await?;
    let csrf = match &logged_in.verified.credential {
        Credential::Session { csrf } => Some(csrf.clone()),
        Credential::Token { .. } => None,
    };
    let me = Me {
        principal: PrincipalView::from(&logged_in.verified.principal),
        csrf,
    };
    tracing::info!(
        kind = %me.principal.kind,
        user = %me.principal.name,
        source = ?source,
        "signed in"
    );
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict{}",
        logged_in.session_id,
        if state.secure_cookies { "; Secure" } else { "" }
    );
    let mut response = Json(me).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// Who the request's session or token is.
#[utoipa::path(
    get, path = "/me", tag = "session",
    responses(
        (status = 200, description = "Signed in", body = Me),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn me(caller: Caller) -> Json<Me> {
    let csrf = match &caller.credential {
        Credential::Session { csrf } => Some(csrf.clone()),
        Credential::Token { .. } => None,
    };
    Json(Me {
        principal: PrincipalView::from(&caller.principal),
        csrf,
    })
}

/// Ends the session and clears its cookie.
#[utoipa::path(
    post, path = "/logout", tag = "session",
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "No CSRF token", body = ErrorBody),
    ),
    security(("session" = []))
)]
pub async fn logout(
    caller: Caller,
    State(state): State<Arc<WebState>>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let Credential::Session { .. } = caller.credential else {
        return Err(ApiError::field(
            "Authorization",
            "API tokens are revoked with `starcode token revoke`, not signed out",
        ));
    };
    if let Some(id) = session_cookie(&headers) {
        let gate = state.gate.clone();
        let _ = tokio::task::spawn_blocking(move || gate.logout(&id)).await;
    }
    let expired = format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if state.secure_cookies { "; Secure" } else { "" }
    );
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(value) = HeaderValue::from_str(&expired) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// The answer to a refused sign-in: never which of user or password was wrong.
fn refused(why: LoginRefused) -> ApiError {
    match why {
        LoginRefused::Wrong => ApiError::SignInRefused,
        LoginRefused::Throttled { retry_after } => ApiError::Throttled {
            retry_after_secs: retry_after.as_secs().max(1),
        },
        LoginRefused::Unavailable(detail) => ApiError::Unavailable(detail),
    }
}
