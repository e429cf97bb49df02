//! The API as a client meets it, in process: real HTTP requests through the router onto a
//! store, with a stand-in gatekeeper that knows a few tokens and sessions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::*;
use crate::accounts::NewAccount;
use crate::presence::memory::MemoryStore;
use crate::presence::sqlite::SqliteStore;
use crate::presence::{ChangeSource, StatusKind, StatusUpdate, StoredSubscription};

/// Tokens and sessions by their secret value; one password per user; a user named
/// `throttled` is always refused as rate limited.
#[derive(Default)]
struct Gate {
    tokens: HashMap<String, Verified>,
    sessions: std::sync::Mutex<HashMap<String, Verified>>,
    passwords: HashMap<String, (String, Principal)>,
}

impl Gatekeeper for Gate {
    fn bearer(&self, token: &str) -> Result<Option<Verified>, StoreUnavailable> {
        if token == "store-down" {
            return Err(StoreUnavailable);
        }
        Ok(self.tokens.get(token).cloned())
    }
    fn session(&self, session_id: &str) -> Result<Option<Verified>, StoreUnavailable> {
        Ok(self.sessions.lock().unwrap().get(session_id).cloned())
    }
    fn login(
        &self,
        user: &str,
        password: &str,
        _source: Option<std::net::IpAddr>,
    ) -> Result<LoggedIn, LoginRefused> {
        if user == "throttled" {
            return Err(LoginRefused::Throttled {
                retry_after: Duration::from_secs(30),
            });
        }
        let (expected, principal) = self.passwords.get(user).ok_or(LoginRefused::Wrong)?;
        if expected != password {
            return Err(LoginRefused::Wrong);
        }
        let mut sessions = self.sessions.lock().unwrap();
        let session_id = format!("s{}", sessions.len() + 1);
        let verified = Verified {
            principal: principal.clone(),
            credential: Credential::Session {
                csrf: format!("csrf-{session_id}"),
            },
        };
        sessions.insert(session_id.clone(), verified.clone());
        Ok(LoggedIn {
            session_id,
            verified,
        })
    }
    fn logout(&self, session_id: &str) {
        self.sessions.lock().unwrap().remove(session_id);
    }
}

const ADMIN_TOKEN: &str = "sc_adm1_secret";
const EXT_TOKEN: &str = "sc_ext3_secret";

fn gate() -> Gate {
    let mut gate = Gate::default();
    gate.tokens.insert(
        ADMIN_TOKEN.into(),
        Verified {
            principal: Principal::Admin("ops".into()),
            credential: Credential::Token { id: "adm1".into() },
        },
    );
    gate.tokens.insert(
        EXT_TOKEN.into(),
        Verified {
            principal: Principal::Extension("1003".into()),
            credential: Credential::Token { id: "ext3".into() },
        },
    );
    gate.passwords.insert(
        "alice".into(),
        ("correct horse".into(), Principal::Admin("alice".into())),
    );
    gate.sessions.lock().unwrap().insert(
        "portal-1003".into(),
        Verified {
            principal: Principal::Extension("1003".into()),
            credential: Credential::Session {
                csrf: "csrf-1003".into(),
            },
        },
    );
    gate
}

struct Api {
    store: Arc<MemoryStore>,
    router: axum::Router,
}

impl Api {
    fn new() -> Api {
        Api::with_event_streams(EventStreams::default())
    }

    fn with_event_streams(event_streams: EventStreams) -> Api {
        let store = Arc::new(MemoryStore::new());
        for (ext, name) in [
            ("1001", "Ann Lee"),
            ("1002", "Bob Stone"),
            ("1003", "Cy Twombly"),
        ] {
            crate::accounts::AccountStore::add_account(
                &*store,
                &NewAccount {
                    extension: ext.into(),
                    name: name.into(),
                    language: None,
                    enabled: true,
                    credentials: Vec::new(),
                    portal_password: None,
                },
            )
            .unwrap();
        }
        let state = Arc::new(WebState {
            store: store.clone(),
            accounts: store.clone(),
            gate: Arc::new(gate()),
            secure_cookies: false,
            engine: None,
            metrics: None,
            event_streams,
        });
        Api {
            store,
            router: router(state),
        }
    }

    async fn call(&self, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, body)
    }

    async fn get(&self, uri: &str, token: &str) -> (StatusCode, axum::http::HeaderMap, Value) {
        self.call(
            Request::get(uri)
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    async fn put(&self, ext: &str, token: &str, body: Value) -> (StatusCode, Value) {
        let (status, _, body) = self
            .call(
                Request::put(format!("/api/v1/extensions/{ext}/presence"))
                    .header(header::AUTHORIZATION, format!("Bearer {token}"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body.to_string()))
                    .unwrap(),
            )
            .await;
        (status, body)
    }

    fn status_of(&self, ext: &str) -> StatusKind {
        crate::presence::PresenceStore::get(&*self.store, ext)
            .unwrap()
            .status
    }
}

#[tokio::test]
async fn without_a_credential_the_api_answers_401_in_json() {
    let api = Api::new();
    let (status, headers, body) = api
        .call(
            Request::get("/api/v1/extensions")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.contains_key(header::WWW_AUTHENTICATE));
    assert!(body["error"].as_str().unwrap().contains("sign in"));
    let (status, _, _) = api.get("/api/v1/extensions", "sc_wrong").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A store that cannot check the token is no reason to tell its holder to sign in.
    let (status, _, body) = api.get("/api/v1/extensions", "store-down").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    // Health probes need no credential.
    let (status, _, _) = api
        .call(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = api
        .call(Request::get("/readyz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn an_admin_token_sets_any_status_and_the_history_says_who() {
    let api = Api::new();
    let mut changes = crate::presence::PresenceStore::subscribe(&*api.store);
    let (status, body) = api.put("1001", ADMIN_TOKEN, json!({"status": "dnd"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "dnd");
    assert_eq!(body["version"], 1);
    assert_eq!(body["source"], "api");
    // Announced like every change, so the SIP side notifies the watchers.
    let change = changes.try_recv().unwrap();
    assert_eq!(change.current.status, StatusKind::DoNotDisturb);
    assert_eq!(change.actor.as_deref(), Some("token:adm1"));
    let (status, headers, body) = api
        .get("/api/v1/extensions/1001/presence", ADMIN_TOKEN)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::ETAG], "\"1\"");
    assert_eq!(body["status"], "dnd");
    let (_, _, history) = api
        .get("/api/v1/extensions/1001/history?limit=5", ADMIN_TOKEN)
        .await;
    assert_eq!(history[0]["actor"], "token:adm1");
    assert_eq!(history[0]["source"], "api");
    let (status, body) = api
        .put(
            "1002",
            ADMIN_TOKEN,
            json!({"status": "custom", "text": "In the lab until 3"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["custom_text"], "In the lab until 3");
}

#[tokio::test]
async fn an_extension_sets_only_its_own_status() {
    let api = Api::new();
    let (status, body) = api.put("1004", EXT_TOKEN, json!({"status": "away"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(api.status_of("1004"), StatusKind::Available);
    let (status, _) = api.put("1003", EXT_TOKEN, json!({"status": "away"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(api.status_of("1003"), StatusKind::Away);
    // It still sees the whole board.
    let (status, _, body) = api.get("/api/v1/extensions", EXT_TOKEN).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["total"], 3);
}

#[tokio::test]
async fn a_browser_session_changes_only_with_its_csrf_token() {
    let api = Api::new();
    let put = |csrf: Option<&str>| {
        let mut request = Request::put("/api/v1/extensions/1003/presence")
            .header(header::COOKIE, "starcode_session=portal-1003")
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(csrf) = csrf {
            request = request.header("X-CSRF-Token", csrf);
        }
        request
            .body(Body::from(json!({"status": "chat"}).to_string()))
            .unwrap()
    };
    let (status, _, body) = api.call(put(None)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _, _) = api.call(put(Some("csrf-other"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(api.status_of("1003"), StatusKind::Available);
    let (status, _, body) = api.call(put(Some("csrf-1003"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["source"], "web");
    let history = crate::presence::PresenceStore::history(&*api.store, "1003", 1).unwrap();
    assert_eq!(history[0].actor.as_deref(), Some("ext:1003"));
    assert_eq!(history[0].source, ChangeSource::Web);
    // Reading needs no CSRF token.
    let (status, _, _) = api
        .call(
            Request::get("/api/v1/extensions/1003/presence")
                .header(header::COOKIE, "starcode_session=portal-1003")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn if_match_with_an_old_version_gets_412_and_changes_nothing() {
    let api = Api::new();
    api.put("1001", ADMIN_TOKEN, json!({"status": "away"}))
        .await;
    let conditional = |version: &str, status: &str| {
        Request::put("/api/v1/extensions/1001/presence")
            .header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::IF_MATCH, version)
            .body(Body::from(json!({ "status": status }).to_string()))
            .unwrap()
    };
    let (status, _, body) = api.call(conditional("\"0\"", "dnd")).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    assert_eq!(body["current_version"], 1);
    assert_eq!(api.status_of("1001"), StatusKind::Away);
    let (status, headers, _) = api.call(conditional("\"1\"", "dnd")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::ETAG], "\"2\"");
    let (status, _, body) = api.call(conditional("yesterday", "chat")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["field"], "If-Match");
}

#[tokio::test]
async fn bad_input_names_the_field_and_changes_nothing() {
    let api = Api::new();
    api.put("1001", ADMIN_TOKEN, json!({"status": "away"}))
        .await;
    let cases = [
        (json!({"status": "sleeping"}), "status"),
        (json!({"status": "custom"}), "text"),
        (json!({"status": "custom", "text": "x".repeat(65)}), "text"),
        (json!({"status": "custom", "text": "   "}), "text"),
        (json!({"status": "away", "colour": "red"}), "colour"),
        (json!({"status": 5}), "status"),
        (json!({}), ""),
    ];
    for (body, field) in cases {
        let (status, answer) = api.put("1001", ADMIN_TOKEN, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {answer}");
        if !field.is_empty() {
            assert_eq!(answer["field"], field, "{body} -> {answer}");
        }
        assert!(answer["error"].is_string());
    }
    let (status, _, _) = api
        .call(
            Request::put("/api/v1/extensions/1001/presence")
                .header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{\"status\": \"dnd\""))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = api
        .call(
            Request::put("/api/v1/extensions/1001/presence")
                .header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from("status=dnd"))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, body) = api
        .put("bad%20ext", ADMIN_TOKEN, json!({"status": "dnd"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _, _) = api
        .call(
            Request::put("/api/v1/extensions/1001/presence")
                .header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(vec![b' '; MAX_BODY + 1]))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(api.status_of("1001"), StatusKind::Away);
    let (status, _, body) = api.get("/api/v1/nothing-here", ADMIN_TOKEN).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].is_string());
}

#[tokio::test]
async fn the_board_filters_searches_and_pages() {
    let api = Api::new();
    api.put("1002", ADMIN_TOKEN, json!({"status": "dnd"})).await;
    api.put(
        "2001",
        ADMIN_TOKEN,
        json!({"status": "custom", "text": "Lunch"}),
    )
    .await;
    let (_, _, all) = api.get("/api/v1/extensions", ADMIN_TOKEN).await;
    assert_eq!(all["total"], 4);
    let exts: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["extension"].as_str().unwrap())
        .collect();
    assert_eq!(exts, ["1001", "1002", "1003", "2001"]);
    assert_eq!(all["items"][0]["name"], "Ann Lee");
    assert_eq!(all["items"][3]["name"], Value::Null);
    let (_, _, dnd) = api.get("/api/v1/extensions?status=dnd", ADMIN_TOKEN).await;
    assert_eq!(dnd["total"], 1);
    assert_eq!(dnd["items"][0]["extension"], "1002");
    let (_, _, bob) = api
        .get("/api/v1/extensions?search=STONE", ADMIN_TOKEN)
        .await;
    assert_eq!(bob["items"][0]["extension"], "1002");
    let (_, _, lunch) = api
        .get("/api/v1/extensions?search=lunch", ADMIN_TOKEN)
        .await;
    assert_eq!(lunch["items"][0]["extension"], "2001");
    let (_, _, page) = api
        .get("/api/v1/extensions?offset=1&limit=2", ADMIN_TOKEN)
        .await;
    assert_eq!(page["total"], 4);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["items"][0]["extension"], "1002");
    for bad in ["limit=0", "limit=1001", "status=sleepy", "offset=-1"] {
        let (status, _, body) = api
            .get(&format!("/api/v1/extensions?{bad}"), ADMIN_TOKEN)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
}

#[tokio::test]
async fn watchers_come_from_the_stored_subscriptions() {
    let api = Api::new();
    let record = |id: u64, watcher: &str, ext: &str, secs: u64| {
        let expires = SystemTime::now() + Duration::from_secs(secs);
        let record = json!({
            "id": id, "call_id": format!("c-{id}"), "local_tag": "l", "remote_tag": "r",
            "local_uri": format!("sip:{ext}@127.0.0.1"), "remote_uri": format!("sip:{watcher}@127.0.0.1"),
            "remote_target": format!("sip:{watcher}@192.0.2.7:5062"), "route_set": [],
            "local_cseq": 1, "remote_cseq": 1, "event_id": null, "extension": ext,
            "watcher": watcher, "format": "pidf",
            "expires_at": crate::presence::to_unix_millis(expires),
            "flow": {"local": null, "tcp": true}
        });
        StoredSubscription {
            id: id.to_string(),
            extension: ext.into(),
            expires_at: expires,
            record: record.to_string(),
        }
    };
    let store: &dyn crate::presence::PresenceStore = &*api.store;
    store
        .save_subscription(&record(1, "1002", "1001", 600))
        .unwrap();
    store
        .save_subscription(&record(2, "1003", "1001", 60))
        .unwrap();
    store
        .save_subscription(&record(3, "1003", "1002", 60))
        .unwrap();
    let (status, _, body) = api.get("/api/v1/extensions/1001/watchers", EXT_TOKEN).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let watchers: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["watcher"].as_str().unwrap())
        .collect();
    assert_eq!(watchers, ["1003", "1002"], "soonest expiry first");
    assert_eq!(body[0]["transport"], "tcp");
    assert_eq!(body[0]["contact"], "sip:1003@192.0.2.7:5062");
    let (_, _, board) = api.get("/api/v1/extensions", EXT_TOKEN).await;
    assert_eq!(board["items"][0]["watchers"], 2);
}

/// Reads SSE events (id, data) from a response body until `n` arrived or `limit` passed.
async fn read_events(body: &mut Body, n: usize, limit: Duration) -> Vec<(u64, Value)> {
    let mut text = String::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while out.len() < n {
        let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, body.frame()).await else {
            break;
        };
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let id = block
                .lines()
                .find_map(|l| l.strip_prefix("id:"))
                .and_then(|v| v.trim().parse().ok());
            let data = block
                .lines()
                .find_map(|l| l.strip_prefix("data:"))
                .and_then(|v| serde_json::from_str(v.trim()).ok());
            if let (Some(id), Some(data)) = (id, data) {
                out.push((id, data));
            }
        }
    }
    out
}

async fn open_events(router: &axum::Router, last_event_id: Option<u64>) -> Body {
    let mut request = Request::get("/api/v1/events")
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"));
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id.to_string());
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    response.into_body()
}

#[tokio::test]
async fn events_resume_from_last_event_id_and_then_follow_live_changes() {
    let api = Api::new();
    api.put("1001", ADMIN_TOKEN, json!({"status": "away"}))
        .await;
    api.put("1002", ADMIN_TOKEN, json!({"status": "dnd"})).await;
    api.put("1003", ADMIN_TOKEN, json!({"status": "chat"}))
        .await;
    // A client that saw event 1 reconnects: it gets 2 and 3 from the history, then 4 live.
    let mut body = open_events(&api.router, Some(1)).await;
    let missed = read_events(&mut body, 2, Duration::from_secs(5)).await;
    assert_eq!(missed.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(missed[0].1["extension"], "1002");
    assert_eq!(missed[0].1["status"], "dnd");
    assert_eq!(missed[0].1["actor"], "token:adm1", "admins see who");
    api.put("1001", ADMIN_TOKEN, json!({"status": "unavailable"}))
        .await;
    let live = read_events(&mut body, 1, Duration::from_secs(5)).await;
    assert_eq!(live[0].0, 4);
    assert_eq!(live[0].1["status"], "unavailable");
    // A new client without Last-Event-ID starts from now.
    let mut fresh = open_events(&api.router, None).await;
    api.put("1002", ADMIN_TOKEN, json!({"status": "available"}))
        .await;
    let first = read_events(&mut fresh, 1, Duration::from_secs(5)).await;
    assert_eq!(first[0].0, 5);
}

#[tokio::test]
async fn events_from_another_process_arrive_in_order_once() {
    // The engine's store and a CLI's store on one SQLite file. The CLI's change is
    // committed first but announced later (by polling); the SSE stream fills the gap from
    // the history and drops the late announcement.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("presence.db");
    let engine = Arc::new(SqliteStore::open(&path).unwrap());
    let cli = SqliteStore::open(&path).unwrap();
    let state = Arc::new(WebState {
        store: engine.clone(),
        accounts: engine.clone(),
        gate: Arc::new(gate()),
        secure_cookies: false,
        engine: None,
        metrics: None,
        event_streams: Default::default(),
    });
    let router = router(state);
    let mut body = open_events(&router, None).await;
    let set = |store: &SqliteStore, ext: &str, status: StatusKind| {
        crate::presence::PresenceStore::set(
            store,
            &StatusUpdate {
                extension: ext.into(),
                status,
                custom_text: None,
                source: ChangeSource::Cli,
                at: SystemTime::now(),
                actor: None,
                expected_version: None,
            },
        )
        .unwrap()
    };
    set(&cli, "1001", StatusKind::Away);
    set(&engine, "1002", StatusKind::DoNotDisturb);
    crate::presence::PresenceStore::poll_external_changes(&*engine).unwrap();
    let events = read_events(&mut body, 3, Duration::from_secs(2)).await;
    let seen: Vec<(u64, &str)> = events
        .iter()
        .map(|(id, e)| (*id, e["extension"].as_str().unwrap()))
        .collect();
    assert_eq!(seen, [(1, "1001"), (2, "1002")]);
}

#[test]
fn the_openapi_document_matches_docs_openapi_json() {
    let generated = api::openapi::pretty();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, format!("{generated}\n")).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        committed.trim_end(),
        generated.trim_end(),
        "docs/openapi.json is out of date: run UPDATE_OPENAPI=1 cargo test openapi"
    );
    let doc: Value = serde_json::from_str(&generated).unwrap();
    for path in [
        "/extensions",
        "/extensions/{ext}/presence",
        "/extensions/{ext}/history",
        "/extensions/{ext}/watchers",
        "/events",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is documented");
    }
    assert!(doc["paths"]["/extensions/{ext}/presence"]["put"]["responses"]["412"].is_object());
}

fn login_request(user: &str, password: &str) -> Request<Body> {
    Request::post("/api/v1/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"user": user, "password": password}).to_string(),
        ))
        .unwrap()
}

#[tokio::test]
async fn a_browser_signs_in_gets_a_strict_httponly_cookie_and_signs_out() {
    let api = Api::new();
    let (status, headers, body) = api.call(login_request("alice", "correct horse")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["principal"]["kind"], "admin");
    assert_eq!(body["principal"]["name"], "alice");
    let csrf = body["csrf"].as_str().unwrap().to_string();
    let cookie = headers[header::SET_COOKIE].to_str().unwrap().to_string();
    assert!(cookie.starts_with("starcode_session=s2;"), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let session = cookie.split(';').next().unwrap().to_string();
    let me = || {
        Request::get("/api/v1/me")
            .header(header::COOKIE, session.clone())
            .body(Body::empty())
            .unwrap()
    };
    let (status, _, body) = api.call(me()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["csrf"], csrf.as_str());
    // Signing out needs the CSRF token too, then the cookie stops working.
    let logout = |csrf: Option<&str>| {
        let mut request = Request::post("/api/v1/logout").header(header::COOKIE, session.clone());
        if let Some(csrf) = csrf {
            request = request.header("X-CSRF-Token", csrf);
        }
        request.body(Body::empty()).unwrap()
    };
    let (status, _, _) = api.call(logout(None)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, headers, _) = api.call(logout(Some(&csrf))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let (status, _, _) = api.call(me()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_wrong_password_and_a_throttled_user_are_refused_alike_but_for_the_wait() {
    let api = Api::new();
    for (user, password) in [("alice", "wrong"), ("nobody", "correct horse")] {
        let (status, headers, body) = api.call(login_request(user, password)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["error"], "wrong user or password");
        assert!(!headers.contains_key(header::SET_COOKIE));
    }
    let (status, headers, _) = api.call(login_request("throttled", "x")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers[header::RETRY_AFTER], "30");
    let (status, _, body) = api
        .call(
            Request::post("/api/v1/login")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(json!({"user": "alice"}).to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _, _) = api.call(login_request("", "x")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = api.call(login_request("alice", &"p".repeat(300))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(start_paused = true)]
async fn an_event_stream_ends_when_its_session_does() {
    let store = Arc::new(MemoryStore::new());
    let gate = Arc::new(gate());
    let router = router(Arc::new(WebState {
        store: store.clone(),
        accounts: store.clone(),
        gate: gate.clone(),
        secure_cookies: false,
        engine: None,
        metrics: None,
        event_streams: Default::default(),
    }));
    let set = |ext: &str| {
        crate::presence::PresenceStore::set(
            &*store,
            &StatusUpdate {
                extension: ext.into(),
                status: StatusKind::Away,
                custom_text: None,
                source: ChangeSource::Cli,
                at: SystemTime::now(),
                actor: None,
                expected_version: None,
            },
        )
        .unwrap();
    };
    let request = Request::get("/api/v1/events")
        .header(header::COOKIE, "starcode_session=portal-1003")
        .body(Body::empty())
        .unwrap();
    let response = router.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();

    // A live session keeps its stream past a recheck.
    tokio::time::sleep(api::events::RECHECK_EVERY * 2).await;
    set("1001");
    assert_eq!(
        read_events(&mut body, 1, Duration::from_secs(1))
            .await
            .len(),
        1
    );

    // Signed out elsewhere (or disabled, or expired): the stream ends at the next recheck,
    // and a change after that is not sent.
    gate.logout("portal-1003");
    let ended = tokio::time::timeout(api::events::RECHECK_EVERY * 2, async {
        loop {
            match body.frame().await {
                Some(Ok(_)) => continue,
                _ => return,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream outlived its session");
    set("1002");
    assert!(body.frame().await.is_none());
}

/// Every refusal under `/api/v1` is JSON with a message, whoever answered it: the handlers,
/// the extractors, the router (wrong method, no such endpoint) or the body limit.
#[tokio::test]
async fn every_api_error_is_json_whoever_answers_it() {
    let api = Api::new();
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let too_big = "x".repeat(MAX_BODY + 1);
    let cases: Vec<(Request<Body>, StatusCode)> = vec![
        (
            Request::get("/api/v1/extensions?limit=lots")
                .header(header::AUTHORIZATION, &bearer)
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Request::get("/api/v1/extensions/%FF/presence")
                .header(header::AUTHORIZATION, &bearer)
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Request::delete("/api/v1/extensions")
                .header(header::AUTHORIZATION, &bearer)
                .body(Body::empty())
                .unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Request::get("/api/v1/nothing-here")
                .body(Body::empty())
                .unwrap(),
            StatusCode::NOT_FOUND,
        ),
        (
            Request::put("/api/v1/extensions/1001/presence")
                .header(header::AUTHORIZATION, &bearer)
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CONTENT_LENGTH, too_big.len())
                .body(Body::from(too_big.clone()))
                .unwrap(),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            // No Content-Length: the limit is met while the body streams in.
            Request::put("/api/v1/extensions/1001/presence")
                .header(header::AUTHORIZATION, &bearer)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from_stream(futures_util::stream::iter([Ok::<
                    _,
                    std::io::Error,
                >(
                    too_big.clone(),
                )])))
                .unwrap(),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (request, expected) in cases {
        let what = format!("{} {}", request.method(), request.uri());
        let (status, headers, body) = api.call(request).await;
        assert_eq!(status, expected, "{what}: {body}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json", "{what}");
        assert!(
            !body["error"].as_str().unwrap_or_default().is_empty(),
            "{what}: {body}"
        );
        if status == StatusCode::METHOD_NOT_ALLOWED {
            assert!(headers.contains_key(header::ALLOW), "{what}");
        }
    }
    assert_eq!(api.status_of("1001"), StatusKind::Available);
    // Pages keep their own answers.
    let (status, headers, _) = api
        .call(Request::get("/no-such-page").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_ne!(
        headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );
}

/// Open event streams are bounded: one over `http.max_event_streams` gets 503 in JSON with
/// Retry-After, and a stream that ends gives its place back.
#[tokio::test]
async fn event_streams_over_the_limit_get_503_until_one_ends() {
    let api = Api::with_event_streams(EventStreams::new(2));
    let first = open_events(&api.router, None).await;
    let _second = open_events(&api.router, None).await;
    let (status, headers, body) = api.get("/api/v1/events", ADMIN_TOKEN).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.contains_key(header::RETRY_AFTER));
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("max_event_streams"),
        "{body}"
    );
    drop(first);
    let _third = open_events(&api.router, None).await;
    // The rest of the API is not limited by it.
    let (status, _, _) = api.get("/api/v1/extensions", ADMIN_TOKEN).await;
    assert_eq!(status, StatusCode::OK);
}
