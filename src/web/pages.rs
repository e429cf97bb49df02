//! The web pages: the presence board, an extension's page, the feature codes editor and the
//! login form, served at `/` by the engine itself.
//!
//! Every page is a static shell (one layout, a page body, one script) bundled into the binary:
//! no build step, no CDN, nothing user-supplied is rendered on the server. The scripts ask
//! `/api/v1` for everything (who is signed in, the rows, the changes as Server-Sent Events), so
//! the API stays the only place that decides who may see or set what; a page a party may not
//! use only shows less. A strict Content-Security-Policy allows nothing but this origin.

use std::sync::Arc;

use axum::extract::Path;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::WebState;
use crate::presence::validate_extension;

/// Scripts and styles only from this origin, no inline code, no frames: a page that shows
/// names and custom texts typed by others must not run anything they type.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
    base-uri 'none'; frame-ancestors 'none'";

/// The page layout: header with who is signed in, the alert area, `{{body}}`.
const LAYOUT: &str = include_str!("assets/layout.html");

/// One page of the site: its path pattern's title, body and script.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    /// The `<title>` and `<h1>` (the script may make the heading more precise).
    pub title: &'static str,
    /// A name for the page's `<body data-page>` (styles and tests key on it).
    pub name: &'static str,
    /// The page's own markup, inside `<main>`.
    pub body: &'static str,
    /// The page's script under `/assets/`.
    pub script: &'static str,
}

/// The presence board.
pub const BOARD: Page = Page {
    title: "Presence board",
    name: "board",
    body: include_str!("assets/board.html"),
    script: "board.js",
};
/// One extension: set its status, its history and its watchers.
pub const EXTENSION: Page = Page {
    title: "Extension",
    name: "extension",
    body: include_str!("assets/extension.html"),
    script: "extension.js",
};
/// The feature codes editor (admins).
pub const FEATURE_CODES: Page = Page {
    title: "Feature codes",
    name: "feature-codes",
    body: include_str!("assets/feature-codes.html"),
    script: "feature-codes.js",
};
/// The sign-in form.
pub const LOGIN: Page = Page {
    title: "Sign in",
    name: "login",
    body: include_str!("assets/login.html"),
    script: "login.js",
};

/// A bundled file under `/assets/`.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// A file of `assets/` by name, with its type.
macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            bytes: include_bytes!(concat!("assets/", $name)),
        }
    };
}

/// Everything under `/assets/`. Names without a hash: served with `no-cache`, so a new
/// engine's pages never run an old script.
const ASSETS: &[Asset] = &[
    asset!("app.css", CSS),
    asset!("common.js", JS),
    asset!("board.js", JS),
    asset!("extension.js", JS),
    asset!("feature-codes.js", JS),
    asset!("login.js", JS),
    asset!("missing.js", JS),
];

/// The pages' routes, merged at the root beside `/api/v1`.
pub fn routes() -> Router<Arc<WebState>> {
    Router::new()
        .route("/", get(|| async { html(StatusCode::OK, &BOARD) }))
        .route("/login", get(|| async { html(StatusCode::OK, &LOGIN) }))
        .route("/extensions/{ext}", get(extension_page))
        .route(
            "/admin/feature-codes",
            get(|| async { html(StatusCode::OK, &FEATURE_CODES) }),
        )
        .route("/assets/{file}", get(asset))
}

/// An extension's page; a name that cannot be an extension is a 404, not an empty page.
async fn extension_page(Path(ext): Path<String>) -> Response {
    if validate_extension(&ext).is_err() {
        return not_found();
    }
    html(StatusCode::OK, &EXTENSION)
}

async fn asset(Path(file): Path<String>) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == file) else {
        return not_found();
    };
    let mut response = (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        asset.bytes,
    )
        .into_response();
    harden(&mut response);
    response
}

fn not_found() -> Response {
    const MISSING: Page = Page {
        title: "Not found",
        name: "missing",
        body: "<p>There is no such page. <a href=\"/\">Go to the presence board.</a></p>",
        script: "missing.js",
    };
    html(StatusCode::NOT_FOUND, &MISSING)
}

/// A page as a response, with the security headers.
fn html(status: StatusCode, page: &Page) -> Response {
    let mut response = (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        render(page),
    )
        .into_response();
    harden(&mut response);
    response
}

/// The layout filled in with a page. Pure: the pages are constants, so this is the whole
/// server-side rendering.
pub fn render(page: &Page) -> String {
    LAYOUT
        .replace("{{title}}", page.title)
        .replace("{{page}}", page.name)
        .replace("{{script}}", page.script)
        .replace("{{body}}", page.body)
}

/// Headers every page and asset carries.
fn harden(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        HeaderName::from_static("x-frame-options"),
        HeaderValue::from_static("DENY"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGES: [Page; 4] = [BOARD, EXTENSION, FEATURE_CODES, LOGIN];

    #[test]
    fn every_page_is_english_with_its_script_and_no_placeholder_left() {
        for page in PAGES {
            let text = render(&page);
            assert!(text.starts_with("<!doctype html>"), "{}", page.name);
            assert!(text.contains("<html lang=\"en\">"), "{}", page.name);
            assert!(
                text.contains(&format!("src=\"/assets/{}\"", page.script)),
                "{}",
                page.name
            );
            assert!(text.contains("role=\"alert\""), "{}", page.name);
            assert!(!text.contains("{{"), "{}", page.name);
            assert!(
                ASSETS.iter().any(|a| a.name == page.script),
                "{}",
                page.name
            );
        }
    }

    #[test]
    fn no_inline_script_or_style_or_outside_origin() {
        for page in PAGES {
            let text = render(&page);
            assert!(!text.contains("<script>"), "{}: inline script", page.name);
            assert!(!text.contains("style="), "{}: inline style", page.name);
            let handler = text.split(" on").skip(1).any(|rest| {
                let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
                !name.is_empty() && rest[name.len()..].starts_with('=')
            });
            assert!(!handler, "{}: inline event handler", page.name);
            assert!(!text.contains("http://"), "{}", page.name);
            assert!(!text.contains("https://"), "{}", page.name);
        }
        for asset in ASSETS {
            let text = std::str::from_utf8(asset.bytes).unwrap_or_default();
            assert!(!text.contains("http://"), "{}", asset.name);
            assert!(!text.contains("https://"), "{}", asset.name);
            assert!(
                !text.contains("innerHTML"),
                "{}: use textContent",
                asset.name
            );
        }
    }

    /// Every `<input>`, `<select>` and `<textarea>` of the shells has a `<label for>` naming
    /// its id (the scripts' generated inputs are checked in the browser tests).
    #[test]
    fn every_input_has_a_label() {
        for page in PAGES {
            let text = render(&page);
            for tag in ["<input", "<select", "<textarea"] {
                for (at, _) in text.match_indices(tag) {
                    let rest = &text[at..];
                    let element = &rest[..rest.find('>').unwrap_or(rest.len())];
                    let id = element
                        .split("id=\"")
                        .nth(1)
                        .and_then(|s| s.split('"').next())
                        .unwrap_or_else(|| panic!("{}: {element} has no id", page.name));
                    assert!(
                        text.contains(&format!("for=\"{id}\"")),
                        "{}: {element} has no label",
                        page.name
                    );
                }
            }
        }
    }

    #[test]
    fn every_button_says_what_it_is() {
        for page in PAGES {
            let text = render(&page);
            for (at, _) in text.match_indices("<button") {
                let rest = &text[at..];
                let element = &rest[..rest.find('>').unwrap_or(rest.len())];
                assert!(element.contains("type=\""), "{}: {element}", page.name);
            }
        }
    }
}
