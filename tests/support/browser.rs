//! Headless Chromium driven through chromedriver (WebDriver) with fantoccini, for the tests
//! that use the web pages as a person would: `tests/web_pages.rs` (the router in process)
//! and `tests/e2e/web.rs` (the real engine binary).
//!
//! Finding the tools (a missing one skips the test with a message, or fails it when `CI` is
//! set), starting chromedriver in a process group of its own and stopping it by its id, one
//! browser at a time, bounded waits on the page, and the few gestures the tests repeat.
//! Included by `#[path]`, so each harness uses only part of it.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// The longest any one wait for the page may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// One browser at a time: the machine is small, and Chromium is not.
pub static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Where a program is on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    })
}

/// Whether this is a CI run (`CI` set and not false), where a missing tool fails the test
/// rather than skipping it.
pub fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok(v) if !v.is_empty() && v != "false" && v != "0")
}

/// Chromium and chromedriver, found on PATH.
pub struct Tools {
    pub chromium: PathBuf,
    pub driver: PathBuf,
}

/// Chromium and chromedriver, or `None` (skip) when they are missing outside CI.
pub fn tools() -> Option<Tools> {
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| which(name));
    let driver = which("chromedriver");
    match (chromium, driver) {
        (Some(chromium), Some(driver)) => Some(Tools { chromium, driver }),
        _ if in_ci() => {
            panic!("CI: chromium and chromedriver are needed (apt-get install chromium chromium-driver)")
        }
        _ => {
            eprintln!(
                "skipped: chromium or chromedriver missing (apt-get install chromium chromium-driver)"
            );
            None
        }
    }
}

/// chromedriver, started on a free loopback port in a process group of its own; dropping it
/// ends that group (the driver and the browsers it started), by the driver's id.
pub struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start(driver: &Path) -> anyhow::Result<Driver> {
        let port = StdListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?
            .local_addr()?
            .port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", driver.display()))?;
        Ok(Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebDriver session on headless Chromium; chromedriver needs a moment to listen.
async fn connect(driver: &str, chromium: &Path) -> anyhow::Result<Client> {
    let capabilities = json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--lang=en-US"],
        }
    });
    let serde_json::Value::Object(capabilities) = capabilities else {
        unreachable!("a JSON object")
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities.clone())
            .connect(driver)
            .await
        {
            Ok(client) => return Ok(client),
            Err(error) if Instant::now() > deadline => {
                return Err(anyhow!("no WebDriver session from {driver}: {error}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// A running chromedriver with one browser in it; [`Session::run`] ends both.
pub struct Session {
    pub browser: Browser,
    driver: Driver,
}

impl Session {
    /// Starts chromedriver and a headless Chromium, pointed at the site at `base`.
    pub async fn start(tools: &Tools, base: &str) -> anyhow::Result<Session> {
        let driver = Driver::start(&tools.driver)?;
        let client = connect(&driver.url, &tools.chromium).await?;
        Ok(Session {
            browser: Browser {
                client,
                base: base.trim_end_matches('/').to_string(),
            },
            driver,
        })
    }

    /// Runs `test` on a task of its own (a panic in it is an error) for at most `limit`,
    /// then closes the browser and stops the driver whatever happened.
    pub async fn run<Fut>(self, limit: Duration, test: Fut) -> anyhow::Result<()>
    where
        Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let mut task = tokio::spawn(test);
        let outcome = tokio::time::timeout(limit, &mut task).await;
        if outcome.is_err() {
            // Dropped at its next await: what it owns (an engine, say) is stopped now.
            task.abort();
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
        let _ = self.browser.client.clone().close().await;
        drop(self.driver);
        match outcome {
            Ok(Ok(result)) => result,
            Ok(Err(panicked)) => Err(anyhow!("the test panicked: {panicked}")),
            Err(_) => Err(anyhow!("the test took longer than {limit:?}")),
        }
    }
}

/// A browser on one site: the gestures and the bounded waits the tests share.
#[derive(Clone)]
pub struct Browser {
    pub client: Client,
    /// The site's base URL, without a trailing `/`.
    pub base: String,
}

impl Browser {
    /// Opens `path` on the site and waits until the page says it is ready.
    pub async fn goto(&self, path: &str) -> anyhow::Result<()> {
        self.client.goto(&format!("{}{path}", self.base)).await?;
        self.until(
            &format!("{path} loaded"),
            "document.body.dataset.ready === '1'",
        )
        .await
    }

    /// Runs `script` (a function body) and returns its value.
    pub async fn js(&self, script: &str) -> anyhow::Result<Value> {
        Ok(self.client.execute(script, Vec::new()).await?)
    }

    /// Waits, at most [`WAIT`], until the expression is true.
    pub async fn until(&self, what: &str, expression: &str) -> anyhow::Result<()> {
        self.until_within(what, expression, WAIT).await
    }

    /// Waits, at most `limit`, until the expression is true.
    pub async fn until_within(
        &self,
        what: &str,
        expression: &str,
        limit: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        let script = format!("try {{ return !!({expression}); }} catch (e) {{ return false; }}");
        loop {
            if self.js(&script).await? == Value::Bool(true) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let alert = self
                    .js("const a = document.getElementById('alert'); return a ? a.textContent : '';")
                    .await
                    .unwrap_or_default();
                bail!("waited {limit:?} for {what}; the page's alert says {alert}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether the expression is true now.
    pub async fn is(&self, expression: &str) -> anyhow::Result<bool> {
        Ok(self.js(&format!("return !!({expression});")).await? == Value::Bool(true))
    }

    /// Signs in through the login form (already open) and waits for the page it leads to.
    pub async fn sign_in(&self, user: &str, password: &str) -> anyhow::Result<()> {
        self.client
            .find(Locator::Css("#user"))
            .await?
            .send_keys(user)
            .await?;
        self.client
            .find(Locator::Css("#password"))
            .await?
            .send_keys(password)
            .await?;
        self.click("#sign-in").await?;
        self.until(
            "the page after signing in",
            "location.pathname !== '/login' && document.body.dataset.ready === '1'",
        )
        .await
    }

    /// Chooses a status on the extension page and presses Save.
    pub async fn save_status(&self, status: &str) -> anyhow::Result<()> {
        self.click(&format!("label[for=st-{status}]")).await?;
        self.click("#save").await
    }

    /// Waits for the extension page to say the status was saved.
    pub async fn until_saved(&self) -> anyhow::Result<()> {
        self.until(
            "the saved message",
            "document.getElementById('saved').textContent.startsWith('Saved')",
        )
        .await
    }

    /// Waits until the newest row of the extension page's history names `actor`.
    pub async fn until_history_actor(&self, actor: &str) -> anyhow::Result<()> {
        self.until(
            &format!("{actor} in the history"),
            &format!(
                "document.querySelector('#history tr td:nth-child(3)').textContent === '{actor}'"
            ),
        )
        .await
    }

    /// Waits until the page follows the live event stream.
    pub async fn until_live(&self) -> anyhow::Result<()> {
        self.until(
            "the live stream",
            "document.getElementById('live').dataset.state === 'live'",
        )
        .await
    }

    /// The text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        Ok(self.client.find(Locator::Css(css)).await?.text().await?)
    }

    /// Clicks the first element matching `css`.
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        self.client
            .find(Locator::Css(css))
            .await
            .with_context(|| format!("finding {css}"))?
            .click()
            .await?;
        Ok(())
    }

    /// Replaces what the field matching `css` holds with `text`, typed as a person would.
    pub async fn retype(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let field = self
            .client
            .find(Locator::Css(css))
            .await
            .with_context(|| format!("finding {css}"))?;
        field.clear().await?;
        field.send_keys(text).await?;
        Ok(())
    }

    /// The codes the feature-codes page shows, in its order.
    pub async fn feature_codes(&self) -> anyhow::Result<Value> {
        self.js(
            "return [...document.querySelectorAll('#codes input[type=text]')].map(i => i.value);",
        )
        .await
    }

    /// Presses Save on the feature-codes page and waits until the page says they were saved.
    pub async fn save_feature_codes(&self) -> anyhow::Result<()> {
        self.click("#save-codes").await?;
        self.until(
            "the saved message",
            "document.getElementById('codes-result').textContent.startsWith('Saved')",
        )
        .await
    }

    /// Saves a picture of the page at this window size under `docs/screenshots/`.
    pub async fn screenshot(&self, width: u32, height: u32, file: &str) -> anyhow::Result<()> {
        self.client.set_window_size(width, height).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let png = self.client.screenshot().await?;
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(file), png)?;
        Ok(())
    }
}
