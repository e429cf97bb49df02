//! Admin operations on the engine itself: the feature codes (as the reference product's
//! Feature Codes page: each code's value and whether it is on) and reloading the config. The
//! config file stays the source of truth: an edit is validated, written back with its comments
//! kept, and then reloaded like a SIGHUP would.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extensions::{parse_json, require_json};
use crate::config::edit::{write_feature_codes, EditError};
use crate::config::{Config, ConfigError, FeatureCode};
use crate::runtime::{ReloadError, ReloadReport};
use crate::web::access::Caller;
use crate::web::error::{blocking, ApiError, ErrorBody};
use crate::web::{EngineHooks, WebState};

/// One feature code.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FeatureCodeView {
    /// What callers dial: 1 to 16 of 0-9, * and #.
    #[schema(example = "*46")]
    pub code: String,
    /// Off: calls to it get 404 like any unknown number; the code stays in the file.
    pub enabled: bool,
}

/// The feature codes, in the order of the config file.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeatureCodes {
    pub codes: Vec<FeatureCodeView>,
}

/// What a reload did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReloadView {
    /// Changed keys now in force.
    pub applied: Vec<String>,
    /// Changed keys that need a restart (the engine keeps their old values).
    pub needs_restart: Vec<String>,
    /// The codes calls are answered on now.
    pub feature_codes: Vec<String>,
}

impl From<ReloadReport> for ReloadView {
    fn from(r: ReloadReport) -> ReloadView {
        ReloadView {
            applied: r.applied,
            needs_restart: r.needs_restart,
            feature_codes: r.feature_codes,
        }
    }
}

/// The answer to a feature-code change: the codes as saved and what the reload did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FeatureCodesSaved {
    pub codes: Vec<FeatureCodeView>,
    pub reload: ReloadView,
}

fn hooks(state: &WebState) -> Result<&EngineHooks, ApiError> {
    state
        .engine
        .as_ref()
        .ok_or_else(|| ApiError::Unavailable("no engine to configure here".to_string()))
}

fn views(codes: &[FeatureCode]) -> Vec<FeatureCodeView> {
    codes
        .iter()
        .map(|c| FeatureCodeView {
            code: c.code.clone(),
            enabled: c.enabled,
        })
        .collect()
}

/// The feature codes as the config file has them now (admins only).
#[utoipa::path(
    get, path = "/feature-codes", tag = "admin",
    responses(
        (status = 200, description = "The codes in the config file", body = FeatureCodes),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn get_feature_codes(
    caller: Caller,
    State(state): State<Arc<WebState>>,
) -> Result<Json<FeatureCodes>, ApiError> {
    caller.require_admin()?;
    let path = hooks(&state)?.config_path.clone();
    let config = blocking(move || Config::load(&path).map_err(config_error)).await?;
    Ok(Json(FeatureCodes {
        codes: views(&config.feature_codes),
    }))
}

/// Replaces the feature codes: validated, written to the config file (comments kept), and
/// applied at once (admins only). Invalid codes change nothing; every problem is named.
#[utoipa::path(
    put, path = "/feature-codes", tag = "admin",
    request_body = FeatureCodes,
    responses(
        (status = 200, description = "Saved and in force", body = FeatureCodesSaved),
        (status = 400, description = "Invalid codes; nothing was written", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an admin, or no CSRF token", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn put_feature_codes(
    caller: Caller,
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<FeatureCodesSaved>, ApiError> {
    caller.require_admin()?;
    require_json(&headers)?;
    let wanted: FeatureCodes = parse_json(&body)?;
    let hooks = hooks(&state)?;
    let codes: Vec<FeatureCode> = wanted
        .codes
        .iter()
        .map(|c| FeatureCode {
            code: c.code.clone(),
            enabled: c.enabled,
        })
        .collect();
    let path = hooks.config_path.clone();
    let written = codes.clone();
    let saved = blocking(move || {
        write_feature_codes(&path, &written).map_err(|error| match error {
            EditError::Invalid(error) => config_error(error),
            other => ApiError::Internal(other.to_string()),
        })
    })
    .await?;
    tracing::info!(
        actor = %caller.actor(),
        codes = ?saved.feature_codes.iter().map(|c| (c.code.as_str(), c.enabled)).collect::<Vec<_>>(),
        "feature codes changed over HTTP"
    );
    let report = hooks.reload.reload().await.map_err(reload_error)?;
    Ok(Json(FeatureCodesSaved {
        codes: views(&saved.feature_codes),
        reload: report.into(),
    }))
}

/// Reloads the config file, as SIGHUP does (admins only).
#[utoipa::path(
    post, path = "/reload", tag = "admin",
    responses(
        (status = 200, description = "Reloaded", body = ReloadView),
        (status = 400, description = "The file is invalid; the engine keeps its settings", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an admin, or no CSRF token", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn reload(
    caller: Caller,
    State(state): State<Arc<WebState>>,
) -> Result<Json<ReloadView>, ApiError> {
    caller.require_admin()?;
    let report = hooks(&state)?.reload.reload().await.map_err(reload_error)?;
    tracing::info!(actor = %caller.actor(), applied = ?report.applied, "config reloaded over HTTP");
    Ok(Json(report.into()))
}

fn reload_error(error: ReloadError) -> ApiError {
    match error {
        ReloadError::Config(error) => config_error(error),
        ReloadError::Stopped => ApiError::Unavailable("the engine is stopping".to_string()),
    }
}

/// A config that does not load: `400` naming the first key, with every problem listed.
fn config_error(error: ConfigError) -> ApiError {
    match error {
        ConfigError::Invalid { problems, .. } => ApiError::Config {
            problems: problems.into_iter().map(|p| (p.key, p.message)).collect(),
        },
        ConfigError::Syntax { message, .. } => ApiError::Config {
            problems: vec![(String::new(), message)],
        },
        ConfigError::Read { .. } => ApiError::Internal(error.to_string()),
    }
}
