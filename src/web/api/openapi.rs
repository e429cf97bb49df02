//! The OpenAPI document, generated from the handlers' annotations so it cannot drift from
//! the code (a test compares it with the copy in `docs/openapi.json`).

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::admin::{self, FeatureCodeView, FeatureCodes, FeatureCodesSaved, ReloadView};
use super::events::{self, PresenceEvent};
use super::extensions;
use super::model::{
    ExtensionPage, ExtensionRow, HistoryView, PresenceView, SetPresence, WatcherView,
};
use super::session::{self, LoginRequest, Me, PrincipalView};
use crate::web::error::{ConfigProblem, ErrorBody};

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "starcode API",
        description = "Presence of every extension: read it, set it, follow its changes.",
        license(name = "MIT OR Apache-2.0"),
    ),
    servers((url = "/api/v1")),
    paths(
        extensions::list,
        extensions::get_presence,
        extensions::put_presence,
        extensions::history,
        extensions::watchers,
        events::stream,
        session::login,
        session::me,
        session::logout,
        admin::get_feature_codes,
        admin::put_feature_codes,
        admin::reload,
    ),
    components(schemas(
        ExtensionPage, ExtensionRow, PresenceView, SetPresence, HistoryView, WatcherView,
        PresenceEvent, ErrorBody, ConfigProblem, LoginRequest, Me, PrincipalView,
        FeatureCodeView, FeatureCodes, FeatureCodesSaved, ReloadView
    )),
    modifiers(&Security),
    tags(
        (name = "presence", description = "Statuses, their history and their watchers"),
        (name = "session", description = "Browser sign-in for the pages and the portal"),
        (name = "admin", description = "Feature codes and config reload (admins only)"),
    ),
)]
pub struct ApiDoc;

/// Adds the two ways to authenticate: a bearer token and the browser session cookie.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                crate::web::access::SESSION_COOKIE,
            ))),
        );
    }
}

/// `GET /api/v1/openapi.json`.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// The document as pretty JSON (what `docs/openapi.json` holds).
pub fn pretty() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
