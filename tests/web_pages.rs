//! The web pages in a real browser: headless Chromium driven through chromedriver (WebDriver)
//! with fantoccini, against the web router running in this process over a `MemoryStore`.
//!
//! What a person does, and what the store then holds: the board lists everyone and follows
//! changes made elsewhere without a reload, the extension page saves a status (and says so
//! when someone else was faster), an extension sees no form where it may not set, the custom
//! text counter counts. The board's screenshots in `docs/screenshots/` come from this run.
//!
//! Sessions come from a stand-in `Gatekeeper` (one admin, one extension); the cookie is set
//! through WebDriver, so only the login test goes through the login form.
//!
//! Needs `chromium` and `chromedriver` (Debian: chromium, chromium-driver; see
//! scripts/bootstrap.sh). Without them the tests are skipped with a message, unless `CI` is
//! set: then they fail. The browser side is shared with `tests/e2e/web.rs`
//! (`tests/support/browser.rs`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{ensure, Context};
use fantoccini::cookies::Cookie;
use fantoccini::Locator;
use serde_json::{json, Value};

#[path = "support/browser.rs"]
mod browser;
use browser::{Browser, Session, ONE_BROWSER};

use starcode::accounts::{AccountStore, NewAccount};
use starcode::presence::memory::MemoryStore;
use starcode::presence::{
    to_unix_millis, ChangeSource, PresenceStore, StatusKind, StatusUpdate, StoredSubscription,
};
use starcode::web::{
    Credential, Gatekeeper, LoggedIn, LoginRefused, Principal, StoreUnavailable, Verified, WebState,
};

/// The admin's session cookie value.
const ADMIN: &str = "sess-admin";
/// Extension 1003's session cookie value.
const EXT_1003: &str = "sess-1003";
/// The longest one whole test may take.
const TEST_LIMIT: Duration = Duration::from_secs(120);

/// Sessions by cookie value; passwords for the login form.
struct Gate(Mutex<HashMap<&'static str, Verified>>);

/// Extension 1003's portal password.
const PASSWORD_1003: &str = "lab-coat-42";

impl Gatekeeper for Gate {
    fn bearer(&self, _token: &str) -> Result<Option<Verified>, StoreUnavailable> {
        Ok(None)
    }
    fn session(&self, session_id: &str) -> Result<Option<Verified>, StoreUnavailable> {
        let sessions = self.0.lock().map_err(|_| StoreUnavailable)?;
        Ok(sessions.get(session_id).cloned())
    }
    fn login(
        &self,
        user: &str,
        password: &str,
        _source: Option<IpAddr>,
    ) -> Result<LoggedIn, LoginRefused> {
        if user != "1003" || password != PASSWORD_1003 {
            return Err(LoginRefused::Wrong);
        }
        let verified = session(Principal::Extension("1003".into()), "csrf-1003");
        self.0
            .lock()
            .map_err(|_| LoginRefused::Unavailable("poisoned".into()))?
            .insert(EXT_1003, verified.clone());
        Ok(LoggedIn {
            session_id: EXT_1003.into(),
            verified,
        })
    }
    fn logout(&self, session_id: &str) {
        if let Ok(mut sessions) = self.0.lock() {
            sessions.retain(|id, _| *id != session_id);
        }
    }
}

fn session(principal: Principal, csrf: &str) -> Verified {
    Verified {
        principal,
        credential: Credential::Session { csrf: csrf.into() },
    }
}

fn gate() -> Gate {
    Gate(Mutex::new(HashMap::from([
        (
            ADMIN,
            session(Principal::Admin("alice".into()), "csrf-admin"),
        ),
        (
            EXT_1003,
            session(Principal::Extension("1003".into()), "csrf-1003"),
        ),
    ])))
}

/// The extensions on the board, with a few statuses set, as a small office would have.
const PEOPLE: [(&str, &str); 8] = [
    ("1001", "Ann Lee"),
    ("1002", "Bob Stone"),
    ("1003", "Cy Twombly"),
    ("1004", "Dora Maar"),
    ("1005", "Ed Ruscha"),
    ("1006", "Frida Kahlo"),
    ("1007", "Gustav Klimt"),
    ("1008", "Hilma af Klint"),
];

fn set(
    store: &MemoryStore,
    ext: &str,
    status: StatusKind,
    text: Option<&str>,
) -> anyhow::Result<()> {
    store.set(&StatusUpdate {
        extension: ext.into(),
        status,
        custom_text: text.map(str::to_string),
        source: ChangeSource::Cli,
        at: SystemTime::now(),
        actor: None,
        expected_version: None,
    })?;
    Ok(())
}

fn office() -> anyhow::Result<Arc<MemoryStore>> {
    let store = Arc::new(MemoryStore::new());
    for (extension, name) in PEOPLE {
        store.add_account(&NewAccount {
            extension: extension.into(),
            name: name.into(),
            language: None,
            enabled: true,
            credentials: Vec::new(),
            portal_password: None,
        })?;
    }
    set(&store, "1002", StatusKind::Away, None)?;
    set(&store, "1004", StatusKind::DoNotDisturb, None)?;
    set(
        &store,
        "1005",
        StatusKind::Custom,
        Some("In the lab until 3"),
    )?;
    set(&store, "1006", StatusKind::Chat, None)?;
    set(&store, "1008", StatusKind::Unavailable, None)?;
    store.save_subscription(&watching("1002", "1001"))?;
    Ok(store)
}

/// A SIP subscription of `watcher` to `ext` for ten minutes, as the engine stores one.
fn watching(watcher: &str, ext: &str) -> StoredSubscription {
    let expires = SystemTime::now() + Duration::from_secs(600);
    let record = json!({
        "id": 1, "call_id": "c-1", "local_tag": "l", "remote_tag": "r",
        "local_uri": format!("sip:{ext}@127.0.0.1"), "remote_uri": format!("sip:{watcher}@127.0.0.1"),
        "remote_target": format!("sip:{watcher}@192.0.2.7:5062"), "route_set": [],
        "local_cseq": 1, "remote_cseq": 1, "event_id": null, "extension": ext,
        "watcher": watcher, "format": "pidf",
        "expires_at": to_unix_millis(expires),
        "flow": {"local": null, "tcp": false}
    });
    StoredSubscription {
        id: "1".into(),
        extension: ext.into(),
        expires_at: expires,
        record: record.to_string(),
    }
}

/// The office's config file (in its own directory), which the feature-codes page edits.
type Codes = Arc<tempfile::TempDir>;

/// The feature codes the office's config file has now.
fn codes_in(dir: &tempfile::TempDir) -> anyhow::Result<Value> {
    let config = starcode::config::Config::load(&dir.path().join("starcode.toml"))?;
    Ok(
        json!({"codes": config.feature_codes.iter().map(|c| json!({"code": c.code, "enabled": c.enabled})).collect::<Vec<_>>()}),
    )
}

/// The web side on a loopback port, in this process, over the office's store and config
/// file (reloads only validate it: there is no engine behind this web side).
async fn serve(store: Arc<MemoryStore>, codes: Codes) -> anyhow::Result<String> {
    let config_path = codes.path().join("starcode.toml");
    let state = Arc::new(WebState {
        store: store.clone(),
        accounts: store,
        gate: Arc::new(gate()),
        secure_cookies: false,
        engine: Some(starcode::web::EngineHooks {
            reload: starcode::runtime::ReloadHandle::validate_only(config_path.clone()),
            config_path,
        }),
        metrics: None,
        event_streams: Default::default(),
    });
    let app = starcode::web::router(state);
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            eprintln!("web server stopped: {error}");
        }
    });
    Ok(format!("http://{addr}"))
}

/// A browser on the site, with the office it shows.
struct Page {
    browser: Browser,
    store: Arc<MemoryStore>,
    codes: Codes,
}

impl std::ops::Deref for Page {
    type Target = Browser;
    fn deref(&self) -> &Browser {
        &self.browser
    }
}

/// Runs `body` in a fresh browser signed in with `session` (or not signed in), against a
/// fresh office; closes the browser and stops the driver whatever happens (a failure, a
/// panic, a hang).
async fn in_browser<F, Fut>(session: Option<&'static str>, body: F)
where
    F: FnOnce(Arc<Page>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let Some(tools) = browser::tools() else {
        return;
    };
    let _one = ONE_BROWSER.lock().await;
    let store = office().expect("the office");
    let codes: Codes = Arc::new(tempfile::tempdir().expect("a temp dir"));
    std::fs::write(
        codes.path().join("starcode.toml"),
        "# The office.\nfeature_codes = [\"*46\", \"*48\"] # both on\n",
    )
    .expect("the config file");
    let base = serve(store.clone(), codes.clone())
        .await
        .expect("the web server");
    let browser_session = Session::start(&tools, &base)
        .await
        .expect("a WebDriver session");
    let page = Arc::new(Page {
        browser: browser_session.browser.clone(),
        store,
        codes,
    });
    let run = body(page.clone());
    let test = async move {
        page.client.goto(&format!("{}/healthz", page.base)).await?;
        if let Some(session) = session {
            let mut cookie = Cookie::new("starcode_session", session);
            cookie.set_path("/");
            // As the login sets it. chromedriver refuses a cookie without a domain, and
            // Chromium one with SameSite=None (fantoccini's default) on plain HTTP.
            cookie.set_domain("127.0.0.1");
            cookie.set_same_site(cookie::SameSite::Strict);
            cookie.set_http_only(true);
            page.client.add_cookie(cookie).await?;
        }
        run.await
    };
    browser_session
        .run(TEST_LIMIT, test)
        .await
        .expect("the test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_lists_every_extension_on_a_desktop_and_a_phone() {
    in_browser(Some(ADMIN), |page| async move {
        page.goto("/").await?;
        let rows = page.js("return [...document.querySelectorAll('#rows tr')].map(tr => [tr.dataset.ext, tr.querySelector('.name').textContent, tr.querySelector('.badge').textContent, tr.querySelector('.text').textContent]);").await?;
        let rows = rows.as_array().context("rows")?;
        ensure!(rows.len() == PEOPLE.len(), "{rows:?}");
        for (row, (ext, name)) in rows.iter().zip(PEOPLE) {
            ensure!(row[0] == ext && row[1] == name, "{row}");
        }
        ensure!(rows[3][2] == "Do not disturb", "the badge says it in words: {}", rows[3]);
        ensure!(rows[4][3] == "In the lab until 3", "{}", rows[4]);
        ensure!(
            page.text("tr[data-ext='1001'] .watchers").await? == "1",
            "1002 watches 1001"
        );
        let edits = page.js("return document.querySelectorAll('#rows a.edit').length;").await?;
        ensure!(edits == PEOPLE.len(), "an admin may change every row: {edits}");
        ensure!(page.text("#who-name").await? == "Signed in as admin alice");
        page.until_live().await?;

        // The filters, then back to everyone for the pictures.
        page.client.find(Locator::Css("#filter")).await?.send_keys("lab").await?;
        page.until("the search", "document.querySelectorAll('#rows tr:not([hidden])').length === 1").await?;
        page.js("const f = document.getElementById('filter'); f.value = ''; f.dispatchEvent(new Event('input'));").await?;
        page.js("const s = document.getElementById('status-filter'); s.value = 'dnd'; s.dispatchEvent(new Event('change'));").await?;
        page.until("the status filter", "document.querySelectorAll('#rows tr:not([hidden])').length === 1").await?;
        page.js("const s = document.getElementById('status-filter'); s.value = ''; s.dispatchEvent(new Event('change'));").await?;
        page.until("every row again", "document.querySelectorAll('#rows tr:not([hidden])').length === 8").await?;

        page.js("document.activeElement.blur();").await?;
        page.screenshot(1280, 800, "board.png").await?;
        page.screenshot(390, 844, "board-phone.png").await?;
        ensure!(
            page.is("document.documentElement.scrollWidth <= window.innerWidth")
                .await?,
            "the board scrolls sideways on a phone"
        );
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_reads_thousands_in_pages() {
    in_browser(Some(EXT_1003), |page| async move {
        // 1,200 more extensions with a status: three pages of 500.
        for n in 0..1200 {
            set(&page.store, &format!("2{n:03}"), StatusKind::Away, None)?;
        }
        page.goto("/").await?;
        let total = PEOPLE.len() + 1200;
        ensure!(
            page.is(&format!(
                "document.querySelectorAll('#rows tr').length === {total}"
            ))
            .await?,
            "not every row is on the board"
        );
        ensure!(page.text("#count").await? == format!("{total} extensions"));
        page.until_live().await?;
        set(&page.store, "21199", StatusKind::DoNotDisturb, None)?;
        page.until(
            "the last row to change",
            "document.querySelector('tr[data-ext=\"21199\"] .badge').dataset.status === 'dnd'",
        )
        .await?;
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setting_1001_to_dnd_through_the_page_saves_it() {
    in_browser(Some(ADMIN), |page| async move {
        page.goto("/extensions/1001").await?;
        ensure!(page.text("#title").await? == "Extension 1001 · Ann Lee");
        let watchers = page.text("#watchers").await?;
        ensure!(
            watchers.starts_with("1002 (UDP, sip:1002@192.0.2.7:5062)"),
            "{watchers}"
        );
        page.save_status("dnd").await?;
        page.until_saved().await?;
        let stored = page.store.get("1001")?;
        ensure!(stored.status == StatusKind::DoNotDisturb, "{stored:?}");
        ensure!(stored.source == Some(ChangeSource::Web), "{stored:?}");
        let history = page.store.history("1001", 1)?;
        ensure!(
            history[0].actor.as_deref() == Some("admin:alice"),
            "{history:?}"
        );
        page.until_history_actor("admin:alice").await?;
        page.screenshot(1280, 900, "extension.png").await?;
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_in_the_store_shows_on_the_open_board_without_a_reload() {
    in_browser(Some(EXT_1003), |page| async move {
        page.goto("/").await?;
        page.until_live().await?;
        page.js("window.sameDocument = true;").await?;
        set(
            &page.store,
            "1007",
            StatusKind::Custom,
            Some("Painting, back at 4"),
        )?;
        page.until(
            "row 1007 to change",
            "document.querySelector('tr[data-ext=\"1007\"] .badge').dataset.status === 'custom'",
        )
        .await?;
        ensure!(page.text("tr[data-ext='1007'] .text").await? == "Painting, back at 4");
        ensure!(page.text("tr[data-ext='1007'] .badge").await? == "Custom");
        ensure!(
            page.is("window.sameDocument === true").await?,
            "the page reloaded"
        );
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_changes_only_itself() {
    in_browser(Some(EXT_1003), |page| async move {
        page.goto("/extensions/1004").await?;
        ensure!(
            page.is("document.getElementById('set-status') === null").await?,
            "1003 sees a form on 1004's page"
        );
        ensure!(page.is("!document.getElementById('read-only').hidden").await?);
        ensure!(page.text("#now .badge").await? == "Do not disturb");

        page.goto("/").await?;
        let editable = page
            .js("return [...document.querySelectorAll('#rows tr')].filter(tr => tr.querySelector('a.edit')).map(tr => tr.dataset.ext);")
            .await?;
        ensure!(editable == json!(["1003"]), "{editable}");
        ensure!(
            page.is("document.getElementById('nav-admin').hidden").await?,
            "an extension is offered the admin page"
        );

        page.goto("/extensions/1003").await?;
        ensure!(page.is("!document.getElementById('set-status').hidden").await?);
        page.goto("/admin/feature-codes").await?;
        ensure!(page.is("document.getElementById('codes-form') === null && !document.getElementById('not-admin').hidden").await?);
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_custom_text_counter_counts_characters() {
    in_browser(Some(EXT_1003), |page| async move {
        page.goto("/extensions/1003").await?;
        ensure!(page.text("#counter").await? == "0/64");
        let input = page.client.find(Locator::Css("#custom-text")).await?;
        input.send_keys("In the lab").await?;
        ensure!(page.text("#counter").await? == "10/64");
        input.send_keys(" · café").await?;
        ensure!(
            page.text("#counter").await? == "17/64",
            "characters, not bytes"
        );
        ensure!(
            page.is("document.getElementById('st-custom').checked")
                .await?,
            "typing a text chooses Custom"
        );
        input.send_keys(&"x".repeat(60)).await?;
        ensure!(page.text("#counter").await? == "64/64", "at most 64");
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_meanwhile_is_not_overwritten() {
    in_browser(Some(ADMIN), |page| async move {
        page.goto("/extensions/1002").await?;
        page.until_live().await?;
        // The user has chosen, not saved yet, when someone else sets Chat: the page shows
        // it at once but leaves the user's choice alone.
        page.click("label[for=st-dnd]").await?;
        set(&page.store, "1002", StatusKind::Chat, None)?;
        page.until(
            "the other change on the page",
            "document.querySelector('#now .badge').dataset.status === 'chat'",
        )
        .await?;
        ensure!(
            page.is("document.getElementById('st-dnd').checked").await?,
            "a live change overwrote the user's choice"
        );
        page.click("#save").await?;
        page.until(
            "the alert",
            "document.getElementById('alert').textContent.includes('meanwhile')",
        )
        .await?;
        ensure!(
            page.store.get("1002")?.status == StatusKind::Chat,
            "the other change was overwritten"
        );
        ensure!(
            page.text("#now .badge").await? == "Chat",
            "the page shows the current status"
        );
        ensure!(
            page.is("document.getElementById('st-chat').checked")
                .await?
        );
        // Saving again, now from the version shown, works.
        page.save_status("dnd").await?;
        page.until_saved().await?;
        ensure!(page.store.get("1002")?.status == StatusKind::DoNotDisturb);
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_extension_page_follows_changes_made_elsewhere() {
    in_browser(Some(ADMIN), |page| async move {
        page.goto("/extensions/1007").await?;
        page.until_live().await?;
        page.js("window.sameDocument = true;").await?;
        set(&page.store, "1007", StatusKind::Custom, Some("At the dentist"))?;
        page.until(
            "the change on the page",
            "document.querySelector('#now .badge').dataset.status === 'custom'",
        )
        .await?;
        ensure!(page.text("#now").await?.contains("At the dentist"));
        ensure!(
            page.is("document.getElementById('st-custom').checked && document.getElementById('custom-text').value === 'At the dentist'")
                .await?,
            "the untouched form follows"
        );
        page.until(
            "the change in the history",
            "document.querySelector('#history tr td:nth-child(2)').textContent.includes('At the dentist')",
        )
        .await?;
        // The form now holds the latest version: saving from it is not a lost race.
        page.save_status("away").await?;
        page.until_saved().await?;
        ensure!(page.store.get("1007")?.status == StatusKind::Away);
        ensure!(
            page.is("window.sameDocument === true").await?,
            "the page reloaded"
        );
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_edits_the_feature_codes() {
    in_browser(Some(ADMIN), |page| async move {
        page.goto("/admin/feature-codes").await?;
        let codes = page.feature_codes().await?;
        ensure!(codes == json!(["*46", "*48"]), "{codes}");
        page.click("#add-code").await?;
        page.client.active_element().await?.send_keys("*47").await?;
        page.click("#codes tr:nth-child(2) input[type=checkbox]")
            .await?;
        page.save_feature_codes().await?;
        let saved = codes_in(&page.codes)?;
        ensure!(
            saved
                == json!({"codes": [
                    {"code": "*46", "enabled": true}, {"code": "*48", "enabled": false},
                    {"code": "*47", "enabled": true}
                ]}),
            "{saved}"
        );

        // A refused change shows the API's error and the field it names.
        page.click("#codes tr:nth-child(1) button").await?;
        page.retype("#codes tr:nth-child(1) input[type=text]", "46x")
            .await?;
        page.click("#save-codes").await?;
        page.until(
            "the error",
            "document.getElementById('alert').textContent.includes('feature_codes[0]')",
        )
        .await?;
        ensure!(codes_in(&page.codes)?["codes"].as_array().map(Vec::len) == Some(3));
        let text = std::fs::read_to_string(page.codes.path().join("starcode.toml"))?;
        ensure!(
            text.starts_with("# The office.\n"),
            "the file's comments are kept: {text}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_signs_in_and_out() {
    in_browser(None, |page| async move {
        page.client
            .goto(&format!("{}/extensions/1003", page.base))
            .await?;
        page.until(
            "the sign-in page",
            "location.pathname === '/login' && document.body.dataset.ready === '1'",
        )
        .await?;
        ensure!(page.js("return location.search;").await? == "?next=%2Fextensions%2F1003");

        page.client
            .find(Locator::Css("#user"))
            .await?
            .send_keys("1003")
            .await?;
        let password = page.client.find(Locator::Css("#password")).await?;
        password.send_keys("wrong").await?;
        page.click("#sign-in").await?;
        page.until(
            "the refusal",
            "document.getElementById('alert').textContent === 'Wrong name or password.'",
        )
        .await?;

        password.clear().await?;
        password.send_keys(PASSWORD_1003).await?;
        password.send_keys("\u{E007}").await?; // Enter submits the form
        page.until(
            "the page asked for",
            "location.pathname === '/extensions/1003' && document.body.dataset.ready === '1'",
        )
        .await?;
        ensure!(page.text("#who-name").await? == "Signed in as extension 1003");
        ensure!(
            page.is("!document.getElementById('set-status').hidden")
                .await?
        );
        ensure!(
            !page
                .is("document.cookie.includes('starcode_session')")
                .await?,
            "the session cookie is readable by scripts"
        );

        page.click("#sign-out").await?;
        page.until("the sign-in page", "location.pathname === '/login'")
            .await?;
        page.client.goto(&format!("{}/", page.base)).await?;
        page.until(
            "the sign-in page again",
            "location.pathname === '/login' && document.body.dataset.ready === '1'",
        )
        .await?;

        // After signing in, only a path on this site is followed.
        page.client
            .goto(&format!("{}/login?next=//example.com/", page.base))
            .await?;
        page.until("the sign-in page", "document.body.dataset.ready === '1'")
            .await?;
        page.sign_in("1003", PASSWORD_1003).await?;
        page.until(
            "the board",
            "location.href === location.origin + '/' && document.body.dataset.ready === '1'",
        )
        .await?;
        Ok(())
    })
    .await;
}

/// Without a browser: every page and asset is served with its type and the security headers;
/// what is not a page is a 404.
#[tokio::test]
async fn pages_and_assets_are_served_with_their_headers() {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    let store = office().expect("the office");
    let app = starcode::web::router(Arc::new(WebState {
        store: store.clone(),
        accounts: store,
        gate: Arc::new(gate()),
        secure_cookies: false,
        engine: None,
        metrics: None,
        event_streams: Default::default(),
    }));
    let get = |path: &str| {
        let request = Request::get(path).body(Body::empty()).expect("a request");
        app.clone().oneshot(request)
    };
    for (path, status, kind) in [
        ("/", StatusCode::OK, "text/html"),
        ("/login", StatusCode::OK, "text/html"),
        ("/extensions/1001", StatusCode::OK, "text/html"),
        ("/admin/feature-codes", StatusCode::OK, "text/html"),
        ("/assets/app.css", StatusCode::OK, "text/css"),
        ("/assets/board.js", StatusCode::OK, "text/javascript"),
        ("/extensions/not%20one", StatusCode::NOT_FOUND, "text/html"),
        ("/assets/nothing.js", StatusCode::NOT_FOUND, "text/html"),
    ] {
        let response = get(path).await.expect("an answer");
        assert_eq!(response.status(), status, "{path}");
        let headers = response.headers();
        let content_type = headers["content-type"].to_str().unwrap_or_default();
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
        assert_eq!(
            headers["content-security-policy"],
            starcode::web::pages::CONTENT_SECURITY_POLICY,
            "{path}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
    }
}

/// axe-core's rules (Deque's accessibility engine, fetched by scripts/bootstrap.sh into
/// `target/tools/axe-core/`), run inside Chromium on every page.
fn axe_source() -> String {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/axe-core/4.10.2/axe.min.js");
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (scripts/bootstrap.sh fetches axe-core)",
            path.display()
        )
    })
}

/// Every axe violation on the page now, one line each (rule, impact, the elements).
async fn accessibility_violations(page: &Page, axe: &str) -> anyhow::Result<Vec<String>> {
    page.js(axe).await?;
    let found = page
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, { resultTypes: ['violations'] })
               .then(r => done(r.violations.map(v => v.id + ' (' + v.impact + '): ' + v.help + ' at '
                  + v.nodes.map(n => n.target.join(' ')).join(', '))))
               .catch(e => done(['axe failed: ' + e]));",
            Vec::new(),
        )
        .await?;
    Ok(serde_json::from_value(found)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_passes_the_axe_accessibility_rules() {
    in_browser(Some(ADMIN), |page| async move {
        let axe = axe_source();
        let mut all = Vec::new();
        for path in ["/", "/extensions/1003", "/extensions/1004", "/admin/feature-codes", "/login"] {
            page.goto(path).await?;
            for v in accessibility_violations(&page, &axe).await? {
                all.push(format!("{path}: {v}"));
            }
        }
        ensure!(all.is_empty(), "axe found:\n{}", all.join("\n"));
        // The rules do run: an image without a text alternative is caught.
        page.js("const i = document.createElement('img'); i.src = '/x.png'; document.querySelector('main').appendChild(i);")
            .await?;
        let caught = accessibility_violations(&page, &axe).await?;
        ensure!(
            caught.iter().any(|v| v.starts_with("image-alt")),
            "axe did not run: {caught:?}"
        );
        Ok(())
    })
    .await;
}

/// WebDriver's codes for the keys a keyboard user presses.
const TAB: &str = "\u{E004}";
const ENTER: &str = "\u{E007}";
const ARROW_RIGHT: &str = "\u{E014}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_is_set_with_the_keyboard_alone() {
    in_browser(Some(EXT_1003), |page| async move {
        page.goto("/extensions/1003").await?;
        // Tab from the top of the page to the status choices, as a keyboard user does.
        let mut tabs = 0;
        while !page.is("document.activeElement.name === 'status'").await? {
            ensure!(tabs < 40, "Tab never reaches the status choices");
            page.client.active_element().await?.send_keys(TAB).await?;
            tabs += 1;
        }
        // Arrow keys move the choice within the group.
        let mut arrows = 0;
        while !page.is("document.getElementById('st-dnd').checked").await? {
            ensure!(arrows < 6, "the arrow keys never reach Do not disturb");
            page.client
                .active_element()
                .await?
                .send_keys(ARROW_RIGHT)
                .await?;
            arrows += 1;
        }
        let mut more = 0;
        while !page.is("document.activeElement.id === 'save'").await? {
            ensure!(more < 10, "Tab never reaches Save");
            page.client.active_element().await?.send_keys(TAB).await?;
            more += 1;
        }
        page.client.active_element().await?.send_keys(ENTER).await?;
        page.until_saved().await?;
        ensure!(page.store.get("1003")?.status == StatusKind::DoNotDisturb);
        Ok(())
    })
    .await;
}
