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
    /// `If-Match` named another version than the stored one.
    #[error("extension {extension} is at version {current}; read it again and retry")]
    PreconditionFailed { extension: String, current: u64 },
    #[error("send the body as application/json")]
    UnsupportedMediaType,
    /// The store cannot be reached or written now; try again.
    #[error("the presence store is not available: {0}")]
    Unavailable(String),
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
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated | ApiError::SignInRefused => StatusCode::UNAUTHORIZED,
            ApiError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Forbidden(_) | ApiError::Csrf => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
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
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiError::Internal(detail) => tracing::error!(%detail, "API request failed"),
            ApiError::Unavailable(detail) => {
                tracing::warn!(%detail, "API request: store unavailable")
            }
            _ => tracing::debug!(%status, error = %self, "API request refused"),
        }
        let body = ErrorBody {
            error: self.to_string(),
            field: match &self {
                ApiError::BadRequest { field, .. } => field.clone(),
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
            StoreError::Database(detail) => ApiError::Unavailable(detail),
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
