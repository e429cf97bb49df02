//! The web pages against the real engine: `starcode run` on loopback with its own web side,
//! headless Chromium signed in through the real `/login` form with accounts made by the real
//! CLI, and sipp as the phones. Issue 11's browser acceptance: a status set on a page reaches a
//! SIP watcher, a feature-code call shows on an open board, an extension cannot set another,
//! and a feature code remapped on the admin page answers the next call.
//!
//! Needs chromium, chromedriver and sipp: without one the tests are skipped with a message,
//! unless `CI` is set (then they fail). The browser side is `tests/support/browser.rs`.

use super::browser::{self, Browser, Session, Tools, ONE_BROWSER};
use super::*;
use starcode::web::api::events::RECHECK_EVERY;

use anyhow::{ensure, Context};
use serde_json::Value;

/// The longest one whole test may take (each takes well under it on a small machine).
const TEST_LIMIT: Duration = Duration::from_secs(90);
/// The admin every test signs in as, made with `starcode admin add`.
const ADMIN: &str = "alice";
const ADMIN_PASSWORD: &str = "Correct-Horse-Battery-9";
/// Extension 1003's portal password, set with `starcode ext add --portal-password-stdin`.
const PASSWORD_1003: &str = "lab-coat-42-staple";

/// Chromium, chromedriver and sipp, or `None` (skip) when one is missing outside CI.
fn tools() -> Option<Tools> {
    if !have_sipp() {
        assert!(!in_ci(), "CI: sipp is needed (apt-get install sip-tester)");
        eprintln!("skipped: sipp missing (apt-get install sip-tester)");
        return None;
    }
    browser::tools()
}

/// A blocking step (the CLI, a sipp call, the engine's log) inside the browser's async test.
fn blocking<T>(step: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(step)
}

impl Engine {
    /// An engine with the admin [`ADMIN`] and an account for each of `extensions`, all made
    /// with the real CLI; `prefix` goes at the top of its config file.
    fn for_the_web(prefix: &str, extensions: &[(&str, &str)]) -> Engine {
        let (dir, port) = Engine::configure("127.0.0.1", "");
        let path = dir.path().join("starcode.toml");
        let config = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{prefix}{config}")).unwrap();
        let engine = Engine::spawn(dir, port, "127.0.0.1");
        manage(
            &engine,
            "admin",
            &["add", ADMIN, "--password-stdin"],
            &format!("{ADMIN_PASSWORD}\n"),
        );
        for (extension, name) in extensions {
            ext(&engine, &["add", extension, "--name", name], "");
        }
        engine
    }

    /// `status get EXT --json --history 1`: the status and its newest history row.
    fn status_with_history(&self, extension: &str) -> Value {
        serde_json::from_slice(
            &self
                .cli(&["get", extension, "--json", "--history", "1"])
                .stdout,
        )
        .unwrap()
    }
}

/// Starts the engine `setup` makes and a browser on its web side, and runs `test` with both,
/// signed in through the login form as `user`; the browser, its driver and the engine are
/// stopped whatever happens.
async fn signed_in<F, Fut>(
    setup: impl FnOnce() -> Engine,
    user: &'static str,
    password: &'static str,
    test: F,
) where
    F: FnOnce(Engine, Browser) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let Some(tools) = tools() else {
        return;
    };
    let _one = ONE_BROWSER.lock().await;
    let mut engine = blocking(setup);
    let base = engine.web_url();
    let session = Session::start(&tools, &base)
        .await
        .expect("a WebDriver session");
    let page = session.browser.clone();
    session
        .run(TEST_LIMIT, async move {
            page.goto("/login").await?;
            page.sign_in(user, password).await?;
            test(engine, page).await
        })
        .await
        .expect("the test");
}

/// Runs a sipp scenario on a blocking thread, so the browser can be driven meanwhile.
fn in_background(
    target: Target,
    scenario: &'static str,
    fill: Vec<(&'static str, &'static str)>,
    keys: Vec<(&'static str, &'static str)>,
) -> tokio::task::JoinHandle<std::process::Output> {
    tokio::task::spawn_blocking(move || target.call(scenario, &fill, &keys, "u1"))
}

/// `fetch()` inside the page with the browser's own session: `PUT` a status to `ext` with the
/// session's CSRF token (read from `/api/v1/me`), as the page's own script would.
async fn put_from_the_page(page: &Browser, ext: &str, status: &str) -> anyhow::Result<Value> {
    let script = format!(
        "const done = arguments[arguments.length - 1];
         (async () => {{
           const me = await (await fetch('/api/v1/me', {{ credentials: 'same-origin' }})).json();
           const r = await fetch('/api/v1/extensions/{ext}/presence', {{
             method: 'PUT', credentials: 'same-origin',
             headers: {{ 'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf || '' }},
             body: JSON.stringify({{ status: '{status}' }}),
           }});
           done({{ status: r.status, body: await r.text(), csrf: !!me.csrf }});
         }})().catch((e) => done({{ error: String(e) }}));"
    );
    Ok(page.client.execute_async(&script, Vec::new()).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_sets_1001_to_dnd_in_the_browser_and_a_sipp_watcher_sees_busy() {
    let engine = || Engine::for_the_web("", &[("1001", "Ann Lee")]);
    signed_in(
        engine,
        ADMIN,
        ADMIN_PASSWORD,
        |mut engine, page| async move {
            // The watcher checks from sipp's side that the first NOTIFY says open and the next
            // one busy (watcher.xml, `check_it`), then unsubscribes.
            let watching = in_background(
                engine.target(),
                "watcher.xml",
                Vec::new(),
                vec![("ext", "1001"), ("watcher", "2001")],
            );
            blocking(|| engine.wait_for_log("presence subscription", Duration::from_secs(10)));

            // The page lists the engine's own subscription record.
            page.goto("/extensions/1001").await?;
            ensure!(page.text("#title").await? == "Extension 1001 · Ann Lee");
            let watchers = page.text("#watchers").await?;
            ensure!(
                watchers.starts_with("2001 (UDP, sip:2001@127.0.0.1:"),
                "{watchers}"
            );
            page.until_live().await?;
            page.save_status("dnd").await?;
            page.until_saved().await?;
            let watched = watching.await?;
            ensure!(
                watched.status.success(),
                "the sipp watcher did not get the busy NOTIFY (its errors are above)"
            );
            let stored = blocking(|| engine.status_with_history("1001"));
            ensure!(
                stored["status"] == "dnd" && stored["source"] == "web",
                "{stored}"
            );
            ensure!(
                stored["history"][0]["actor"] == format!("admin:{ADMIN}"),
                "{stored}"
            );
            page.until_history_actor("admin:alice").await?;
            Ok(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feature_code_call_changes_the_row_on_an_open_board() {
    let engine = || Engine::for_the_web("", &[("1001", "Ann Lee"), ("1002", "Bob Stone")]);
    signed_in(engine, ADMIN, ADMIN_PASSWORD, |engine, page| async move {
        page.goto("/").await?;
        page.until_live().await?;
        let row = "document.querySelector('tr[data-ext=\"1002\"] .badge').dataset.status";
        ensure!(
            page.is(&format!("{row} === 'available'")).await?,
            "row 1002 before the call"
        );
        page.js("window.sameDocument = true;").await?;

        let call = in_background(
            engine.target(),
            "caller_rfc2833.xml",
            vec![("CHOICE", "3"), ("CONFIRM", "1")],
            caller("1002", "*46", "0", "PCMU"),
        )
        .await?;
        ensure!(call.status.success(), "the call from 1002 did not set away");
        page.until("row 1002 to say away", &format!("{row} === 'away'"))
            .await?;
        ensure!(page.text("tr[data-ext='1002'] .badge").await? == "Away");
        ensure!(
            page.is("window.sameDocument === true").await?,
            "the page reloaded"
        );
        let stored = blocking(|| engine.status("1002"));
        ensure!(stored["source"] == "feature_code", "{stored}");

        // The admin is disabled with the CLI, in another process: the engine ends the open
        // board's event stream at its next check, and the board goes to the sign-in page.
        blocking(|| manage(&engine, "admin", &["disable", ADMIN], ""));
        page.until_within(
            "the sign-in page after the admin was disabled",
            "location.pathname === '/login'",
            RECHECK_EVERY * 4,
        )
        .await?;
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_signed_in_as_1003_cannot_set_1004() {
    let engine = || {
        let engine = Engine::for_the_web("", &[("1004", "Dora Maar")]);
        ext(
            &engine,
            &[
                "add",
                "1003",
                "--name",
                "Cy Twombly",
                "--portal-password-stdin",
            ],
            &format!("{PASSWORD_1003}\n"),
        );
        engine.cli(&["set", "1004", "dnd"]);
        engine
    };
    signed_in(engine, "1003", PASSWORD_1003, |engine, page| async move {
        ensure!(page.text("#who-name").await? == "Signed in as extension 1003");

        // 1004's page shows the status and offers no way to change it.
        page.goto("/extensions/1004").await?;
        ensure!(
            page.is("document.getElementById('set-status') === null && document.getElementById('save') === null")
                .await?,
            "1003 is offered a form on 1004's page"
        );
        ensure!(page.is("!document.getElementById('read-only').hidden").await?);
        ensure!(page.text("#now .badge").await? == "Do not disturb");

        // Its own page does, and saving works.
        page.goto("/extensions/1003").await?;
        ensure!(page.is("!document.getElementById('set-status').hidden").await?);
        page.save_status("away").await?;
        page.until_saved().await?;
        let own = blocking(|| engine.status_with_history("1003"));
        ensure!(own["status"] == "away" && own["source"] == "web", "{own}");
        ensure!(own["history"][0]["actor"] == "ext:1003", "{own}");

        // The API, with this browser's session and CSRF token: yes for 1003, 403 for 1004.
        let mine = put_from_the_page(&page, "1003", "chat").await?;
        ensure!(mine["status"] == 200, "the session's own change: {mine}");
        let before = blocking(|| engine.status("1004"));
        let other = put_from_the_page(&page, "1004", "available").await?;
        ensure!(other["csrf"] == true, "{other}");
        ensure!(other["status"] == 403, "1003 setting 1004: {other}");
        let after = blocking(|| engine.status("1004"));
        ensure!(
            after["status"] == "dnd" && after["version"] == before["version"],
            "1004 changed: {after}"
        );

        // Signing out ends the session in the engine: the same request is now unsigned.
        page.click("#sign-out").await?;
        page.until("the sign-in page", "location.pathname === '/login'")
            .await?;
        let signed_out = put_from_the_page(&page, "1003", "dnd").await?;
        ensure!(signed_out["status"] == 401, "after signing out: {signed_out}");
        ensure!(blocking(|| engine.status("1003"))["status"] == "chat");
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feature_code_remapped_on_the_page_answers_the_next_call() {
    let comments = "# The lab's engine. The codes below reach the presence menu.\n\
                    feature_codes = [\"*46\", \"*48\"] # both on\n";
    let engine = || Engine::for_the_web(comments, &[]);
    signed_in(
        engine,
        ADMIN,
        ADMIN_PASSWORD,
        move |mut engine, page| async move {
            let original = std::fs::read_to_string(engine.config_path())?;
            page.goto("/admin/feature-codes").await?;
            let shown = page.feature_codes().await?;
            ensure!(shown == serde_json::json!(["*46", "*48"]), "{shown}");
            page.retype("#codes tr:nth-child(1) input[type=text]", "*47")
                .await?;
            page.save_feature_codes().await?;
            let shown = page.feature_codes().await?;
            ensure!(shown == serde_json::json!(["*47", "*48"]), "{shown}");
            page.click("#reload").await?;
            page.until(
                "the reload",
                "document.getElementById('codes-result').textContent.startsWith('The configuration file was read again')",
            )
            .await?;

            let status = blocking(|| engine.set_by_call("1011", "*47", "3"));
            ensure!(status == "away", "the call to *47 set {status}");
            blocking(|| engine.refused("*46"));

            let text = std::fs::read_to_string(engine.config_path()).context("the config file")?;
            ensure!(
                text.contains("\"*47\"") && !text.contains("\"*46\""),
                "the new code is not on disk: {text}"
            );
            ensure!(
                text.starts_with("# The lab's engine. The codes below reach the presence menu.\n"),
                "the file's comment is gone: {text}"
            );
            let rest = original
                .split_once('\n')
                .and_then(|(_, rest)| rest.split_once('\n'))
                .map(|(_, rest)| rest)
                .context("the original file's lines")?;
            ensure!(text.ends_with(rest), "the rest of the file changed: {text}");
            Ok(())
        },
    )
    .await;
}
