//! API errors: a status code and a JSON body that says what is wrong and, when one field is
//! to blame, which (`{"error": "...", "field": "status"}`).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::presence::{StatusError, StoreError};

/// Why a request failed. Every variant is an answer the client can act on; a failed request
/// never changes a status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is readable but wrong; `field` names the culprit when there is one.
    #[error("{message}")]
    BadRequest {
        field: Option<String>,
        message: String,
    },
    /// No valid session or token.
    #[error("sign in, or send an API token (Authorization: Bearer ...)")]
    Unauthenticated,
    /// A sign-in with a wrong user or password (which one is not said).
    #[error("wrong user or password")]
    SignInRefused,
    /// Too many failed sign-ins from this source or for this user.
    #[error("too many failed sign-ins; try again in {retry_after_secs} s")]
    Throttled { retry_after_secs: u64 },
    /// Authenticated, but not allowed to do this.
    #[error("{0}")]
    Forbidden(String),
    /// A browser session's change without the session's CSRF token.
    #[error("missing or wrong X-CSRF-Token for this session")]
    Csrf,
    #[error("{0}")]
    NotFound(String),
    /// A config change (or the file) does not validate: (key, message) for each problem.
    #[error("the config is not valid: {}", .problems.iter().map(|(k, m)| if k.is_empty() { m.clone() } else { format!("{k}: {m}") }).collect::<Vec<_>>().join("; "))]
    Config { problems: Vec<(String, String)> },
    /// `If-Match` named another version than the stored one.
    #[error("extension {extension} is at version {current}; read it again and retry")]
    PreconditionFailed { extension: String, current: u64 },
    #[error("send the body as application/json")]
    UnsupportedMediaType,
    /// The store cannot be reached or written now; try again.
    #[error("the presence store is not available: {0}")]
    Unavailable(String),
    /// A limit of the server is reached (open event streams); try again later.
    #[error("{0}")]
    Busy(String),
    /// A fault of ours; the message is logged, the client gets a generic one.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// A 400 naming one field.
    pub fn field(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            field: Some(field.to_string()),
            message: message.into(),
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } | ApiError::Config { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated | ApiError::SignInRefused => StatusCode::UNAUTHORIZED,
            ApiError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Forbidden(_) | ApiError::Csrf => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) | ApiError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The JSON body of every error.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person.
    pub error: String,
    /// The request field at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// With `412`: the version the extension is at now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<u64>,
    /// With a config that does not validate: every problem, by dotted key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problems: Option<Vec<ConfigProblem>>,
}

/// One config problem.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConfigProblem {
    /// The dotted key, e.g. `feature_codes[1]`.
    pub key: String,
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiError::Internal(detail) => tracing::error!(%detail, "API request failed"),
            ApiError::Unavailable(detail) => {
                tracing::warn!(%detail, "API request: store unavailable")
            }
            ApiError::Busy(detail) => tracing::warn!(%detail, "API request refused: busy"),
            _ => tracing::debug!(%status, error = %self, "API request refused"),
        }
        let body = ErrorBody {
            error: self.to_string(),
            field: match &self {
                ApiError::BadRequest { field, .. } => field.clone(),
                ApiError::Config { problems } => problems
                    .first()
                    .map(|(key, _)| key.clone())
                    .filter(|k| !k.is_empty()),
                _ => None,
            },
            problems: match &self {
                ApiError::Config { problems } => Some(
                    problems
                        .iter()
                        .map(|(key, message)| ConfigProblem {
                            key: key.clone(),
                            message: message.clone(),
                        })
                        .collect(),
                ),
                _ => None,
            },
            current_version: match &self {
                ApiError::PreconditionFailed { current, .. } => Some(*current),
                _ => None,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"starcode\""),
            );
        }
        if let ApiError::Throttled { retry_after_secs } = &self {
            if let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

impl ApiError {
    /// The database did not answer. `detail` (which names the database: host, port, user)
    /// goes to the log only; the client learns that it may try again, not where the
    /// database is.
    pub fn database_down(detail: &dyn std::fmt::Display) -> ApiError {
        tracing::warn!(%detail, "API request: the database does not answer");
        ApiError::Unavailable("the database does not answer; try again".into())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::InvalidExtension(_) => ApiError::field("extension", error.to_string()),
            StoreError::InvalidStatus(StatusError::UnknownStatus(_)) => {
                ApiError::field("status", error.to_string())
            }
            StoreError::InvalidStatus(_) | StoreError::NoCustomText(_) => {
                ApiError::field("text", error.to_string())
            }
            StoreError::VersionMismatch {
                extension, current, ..
            } => ApiError::PreconditionFailed { extension, current },
            StoreError::Database(detail) => ApiError::database_down(&detail),
            StoreError::InvalidActor(_) | StoreError::Corrupt { .. } => {
                ApiError::Internal(error.to_string())
            }
        }
    }
}

/// Runs a blocking store call off the async threads; a panicked task is an internal error.
pub async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("store task failed: {e}")))?
}

/// The most of a non-JSON error body [`errors_in_json`] keeps as the message.
const MAX_PLAIN_ERROR: usize = 1024;

/// Middleware: under `/api/`, an error answered by the framework rather than a handler (a
/// wrong method, a body over the limit, a rejection of some extractor) becomes the JSON
/// body every other API error has, with its status and headers (`Allow`, ...) kept. Pages
/// keep their own answers.
pub async fn api_errors_in_json(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let response = next.run(request).await;
    if api {
        errors_in_json(response).await
    } else {
        response
    }
}

async fn errors_in_json(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_PLAIN_ERROR)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_string())
        .unwrap_or_default();
    let error = if text.is_empty() {
        match status {
            StatusCode::METHOD_NOT_ALLOWED => "this endpoint does not take that method".to_string(),
            _ => status.canonical_reason().unwrap_or("error").to_string(),
        }
    } else {
        text
    };
    tracing::debug!(%status, %error, "API request refused before its handler");
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = ErrorBody {
        error,
        field: None,
        current_version: None,
        problems: None,
    };
    let mut json = axum::Json(body).into_response();
    *json.status_mut() = status;
    for (name, value) in parts.headers.iter() {
        json.headers_mut().insert(name.clone(), value.clone());
    }
    json
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_error_tells_the_client_to_retry_without_naming_the_database() {
        let error = ApiError::from(StoreError::Database(
            "postgres://app:***@db.internal:5432/starcode: no database connection".into(),
        ));
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
        let shown = error.to_string();
        assert!(shown.contains("try again"), "{shown}");
        assert!(
            !shown.contains("db.internal") && !shown.contains("app"),
            "{shown}"
        );
    }
}
