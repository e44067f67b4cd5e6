//! Headless Chromium under chromedriver, driven over WebDriver (fantoccini), with the
//! WebDriver WebAuthn extension for a virtual authenticator, the browser console, axe-core
//! and screenshots.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::http::Method;
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::elements::Element;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tempfile::TempDir;

/// axe-core, vendored from the npm registry (see `vendor/README.md`).
const AXE: &str = include_str!("vendor/axe.min.js");

/// WebDriver key codes.
pub const TAB: char = '\u{E004}';
pub const ENTER: char = '\u{E007}';

/// Phone and desktop viewport widths for screenshots and accessibility checks.
const WIDTHS: [(&str, u32); 2] = [("phone", 390), ("desktop", 1280)];

fn program(env: &str, default: &str) -> PathBuf {
    let path = std::env::var(env).unwrap_or_else(|_| default.to_owned());
    let path = PathBuf::from(path);
    assert!(
        path.exists(),
        "the browser tests need Chromium and chromedriver ({} not found; set {env} to another \
         path). On Debian: apt-get install chromium chromium-driver — `.ci/run` installs both.",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("bound address")
        .port()
}

/// A WebDriver command that fantoccini has no method for (the WebAuthn extension and the
/// browser log), sent to this session.
#[derive(Debug)]
struct SessionCommand {
    method: Method,
    path: String,
    body: Option<Value>,
}

impl WebDriverCompatibleCommand for SessionCommand {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/{}",
            session_id.unwrap_or_default(),
            self.path
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (Method, Option<String>) {
        (
            self.method.clone(),
            self.body.as_ref().map(Value::to_string),
        )
    }
}

/// One browser: its own chromedriver, Chromium profile and download folder.
pub struct Browser {
    pub client: Client,
    /// Where the pages live, e.g. `http://localhost:41234`.
    pub origin: String,
    /// The UI language this browser asks for (`en` or `zh-CN`).
    pub lang: &'static str,
    pub downloads: PathBuf,
    driver: Child,
    _profile: TempDir,
    _download_dir: TempDir,
}

impl Browser {
    /// Starts headless Chromium asking for pages in `lang`.
    pub async fn launch(origin: &str, lang: &'static str) -> Browser {
        let chromium = program("CUSTODIA_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = program("CUSTODIA_CHROMEDRIVER", "/usr/bin/chromedriver");
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().expect("profile directory");
        let download_dir = tempfile::tempdir().expect("download directory");
        let caps = json!({
            "browserName": "chrome",
            "goog:loggingPrefs": { "browser": "ALL" },
            "goog:chromeOptions": {
                "binary": chromium,
                // What this machine needs: no sandbox as root, no GPU, and no background
                // traffic to hosts that cannot be reached.
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-quic",
                    "--no-first-run",
                    "--hide-scrollbars",
                    "--window-size=1280,900",
                    format!("--lang={lang}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
                "prefs": {
                    "intl.accept_languages": lang,
                    "download.default_directory": download_dir.path(),
                    "download.prompt_for_download": false,
                },
            },
        });
        let caps = match caps {
            Value::Object(map) => map,
            _ => unreachable!("a JSON object literal"),
        };
        let url = format!("http://127.0.0.1:{port}/");
        let mut last = None;
        for _ in 0..100 {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Browser {
                        client,
                        origin: origin.to_owned(),
                        lang,
                        downloads: download_dir.path().to_path_buf(),
                        driver,
                        _profile: profile,
                        _download_dir: download_dir,
                    };
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not start a Chromium session: {last:?}");
    }

    async fn command(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        self.client
            .issue_cmd(SessionCommand {
                method,
                path: path.to_owned(),
                body,
            })
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"))
    }

    /// Adds a platform authenticator that verifies the user (as a fingerprint would) and
    /// keeps discoverable credentials; returns its id.
    pub async fn add_authenticator(&self) -> String {
        let id = self
            .command(
                Method::POST,
                "webauthn/authenticator",
                Some(json!({
                    "protocol": "ctap2",
                    "transport": "internal",
                    "hasResidentKey": true,
                    "hasUserVerification": true,
                    "isUserConsenting": true,
                    "isUserVerified": true,
                })),
            )
            .await;
        id.as_str().expect("authenticator id").to_owned()
    }

    /// The credentials the virtual authenticator holds.
    pub async fn credentials(&self, authenticator: &str) -> Vec<Value> {
        let list = self
            .command(
                Method::GET,
                &format!("webauthn/authenticator/{authenticator}/credentials"),
                None,
            )
            .await;
        list.as_array().cloned().unwrap_or_default()
    }

    /// Console messages since the last call.
    pub async fn console(&self) -> Vec<String> {
        let entries = self
            .command(Method::POST, "se/log", Some(json!({ "type": "browser" })))
            .await;
        entries
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    pub async fn goto(&self, path: &str) {
        self.client
            .goto(&self.url(path))
            .await
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
        self.assert_lang().await;
    }

    /// Every page declares the language it is written in.
    pub async fn assert_lang(&self) {
        let lang = self.js("return document.documentElement.lang").await;
        assert_eq!(lang, self.lang, "html[lang] of {}", self.path().await);
    }

    pub async fn path(&self) -> String {
        self.client
            .current_url()
            .await
            .map(|u| u.path().to_owned())
            .unwrap_or_default()
    }

    /// Waits (up to 15 s) until the page is at `path`, then checks its language.
    pub async fn wait_path(&self, path: &str) {
        for _ in 0..150 {
            if self.path().await == path {
                self.wait_ready().await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let error = self.error_text().await;
        panic!(
            "expected to reach {path}, still at {} (error box: {error:?})",
            self.path().await
        );
    }

    async fn wait_ready(&self) {
        for _ in 0..100 {
            if self.js("return document.readyState").await == "complete" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.assert_lang().await;
    }

    /// Waits (up to 15 s) for an element matching `css` to be displayed.
    pub async fn wait_for(&self, css: &str) -> Element {
        for _ in 0..150 {
            if let Ok(el) = self.client.find(Locator::Css(css)).await
                && el.is_displayed().await.unwrap_or(false)
            {
                return el;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let error = self.error_text().await;
        panic!(
            "{css} did not appear on {} (error box: {error:?})",
            self.path().await
        );
    }

    pub async fn find(&self, css: &str) -> Element {
        match self.client.find(Locator::Css(css)).await {
            Ok(el) => el,
            Err(e) => panic!("{css} on {}: {e}", self.path().await),
        }
    }

    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_default()
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap_or_default()
    }

    /// The page's visible text.
    pub async fn body_text(&self) -> String {
        self.text("body").await
    }

    /// The error box's text, when it is shown.
    pub async fn error_text(&self) -> Option<String> {
        let shown = self
            .client
            .execute(
                "const e = document.getElementById('error'); return e && !e.hidden ? e.textContent : null",
                vec![],
            )
            .await
            .ok()?;
        shown.as_str().map(str::to_owned)
    }

    /// Types into the input with this id, as a user would.
    pub async fn fill(&self, id: &str, text: &str) {
        let el = self.find(&format!("#{id}")).await;
        el.clear().await.ok();
        el.send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into #{id}: {e}"));
    }

    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Runs a script in the page and returns its value as text (JSON for non-strings).
    pub async fn js(&self, script: &str) -> String {
        let value = self
            .client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script {script:?}: {e}"));
        match value {
            Value::String(s) => s,
            other => other.to_string(),
        }
    }

    pub async fn js_value(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script {script:?}: {e}"))
    }

    /// Presses one key on whatever has the focus.
    pub async fn press(&self, key: char) {
        let actions = KeyActions::new("keyboard".to_owned())
            .then(KeyAction::Down { value: key })
            .then(KeyAction::Up { value: key });
        self.client
            .perform_actions(actions)
            .await
            .unwrap_or_else(|e| panic!("press {key:?}: {e}"));
    }

    /// Ctrl+A: selects the focused field's text, so typing replaces it.
    pub async fn select_all(&self) {
        let control = '\u{E009}';
        let actions = KeyActions::new("keyboard".to_owned())
            .then(KeyAction::Down { value: control })
            .then(KeyAction::Down { value: 'a' })
            .then(KeyAction::Up { value: 'a' })
            .then(KeyAction::Up { value: control });
        self.client
            .perform_actions(actions)
            .await
            .unwrap_or_else(|e| panic!("select all: {e}"));
    }

    /// Types text into whatever has the focus.
    pub async fn type_text(&self, text: &str) {
        let mut actions = KeyActions::new("keyboard".to_owned());
        for c in text.chars() {
            actions = actions
                .then(KeyAction::Down { value: c })
                .then(KeyAction::Up { value: c });
        }
        self.client
            .perform_actions(actions)
            .await
            .unwrap_or_else(|e| panic!("type {text:?}: {e}"));
    }

    /// Presses Tab until the focused element matches `css`: proves it is reachable by
    /// keyboard, in order, from where the focus is.
    pub async fn tab_to(&self, css: &str) {
        let check = format!(
            "return document.activeElement ? document.activeElement.matches({}) : false",
            Value::String(css.to_owned())
        );
        let mut seen = Vec::new();
        for _ in 0..40 {
            self.press(TAB).await;
            if self.js_value(&check).await == Value::Bool(true) {
                let outline = self
                    .js("const s = getComputedStyle(document.activeElement); return s.outlineStyle + ' ' + s.outlineWidth")
                    .await;
                assert!(
                    !outline.starts_with("none"),
                    "{css} has no visible focus outline ({outline})"
                );
                return;
            }
            seen.push(
                self.js("const a = document.activeElement; return a.tagName + (a.id ? '#' + a.id : '') + (a.name ? '[' + a.name + ']' : '')")
                    .await,
            );
        }
        panic!("Tab never reached {css}; the focus went through {seen:?}");
    }

    /// Runs axe-core on the page: no serious or critical violation is allowed.
    pub async fn assert_accessible(&self, name: &str) {
        self.client
            .execute(AXE, vec![])
            .await
            .unwrap_or_else(|e| panic!("inject axe-core: {e}"));
        let result = self
            .client
            .execute_async(
                r#"const done = arguments[arguments.length - 1];
                axe.run(document, { resultTypes: ["violations"] })
                  .then((r) => done(r.violations
                    .filter((v) => v.impact === "serious" || v.impact === "critical")
                    .map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                                   nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ") + " — " + n.failureSummary) }))))
                  .catch((e) => done({ error: String(e) }));"#,
                vec![],
            )
            .await
            .unwrap_or_else(|e| panic!("run axe-core: {e}"));
        assert!(
            result.as_array().is_some_and(Vec::is_empty),
            "{name} ({}): serious or critical accessibility violations: {}",
            self.lang,
            serde_json::to_string_pretty(&result).unwrap_or_default()
        );
    }

    /// The main-page check: axe-core at phone and desktop widths, and a full-height
    /// screenshot at each under `target/screenshots/<lang>/`.
    pub async fn check_page(&self, name: &str) {
        self.wait_ready().await;
        let dir = screenshot_dir().join(self.lang);
        std::fs::create_dir_all(&dir).expect("screenshot directory");
        for (label, width) in WIDTHS {
            self.client
                .set_window_size(width, 900)
                .await
                .expect("resize window");
            let height: u32 = self
                .js("return String(Math.ceil(document.documentElement.scrollHeight))")
                .await
                .parse()
                .unwrap_or(900);
            self.client
                .set_window_size(width, height.clamp(600, 6000))
                .await
                .expect("resize window");
            let overflow = self
                .js("return String(document.documentElement.scrollWidth > window.innerWidth + 1)")
                .await;
            assert_eq!(
                overflow, "false",
                "{name} ({}) scrolls sideways at {width} px",
                self.lang
            );
            self.assert_accessible(&format!("{name} at {width} px"))
                .await;
            let png = self.client.screenshot().await.expect("screenshot");
            std::fs::write(dir.join(format!("{name}-{label}.png")), png).expect("write screenshot");
        }
        self.client
            .set_window_size(1280, 900)
            .await
            .expect("resize window");
    }

    /// Waits (up to 15 s) for a finished download and returns its contents.
    pub async fn wait_download(&self, suffix: &str) -> String {
        for _ in 0..150 {
            if let Some(path) = finished_download(&self.downloads, suffix) {
                return std::fs::read_to_string(path).expect("read the download");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "no *{suffix} download arrived in {}",
            self.downloads.display()
        );
    }

    /// Waits (up to 30 s) for a finished download and returns its bytes.
    pub async fn wait_download_bytes(&self, suffix: &str) -> Vec<u8> {
        for _ in 0..300 {
            if let Some(path) = finished_download(&self.downloads, suffix) {
                return std::fs::read(path).expect("read the download");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "no *{suffix} download arrived in {}",
            self.downloads.display()
        );
    }

    /// Ends the WebDriver session; dropping then stops chromedriver.
    pub async fn close(self) {
        self.client.clone().close().await.ok();
    }
}

/// A download that has finished: Chromium reserves the final name with an empty file when
/// a download starts and writes to a `.crdownload` beside it until it is done, so the file
/// counts only once it has bytes and nothing is still being written.
fn finished_download(dir: &Path, suffix: &str) -> Option<PathBuf> {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    if files
        .iter()
        .any(|p| p.to_string_lossy().ends_with(".crdownload"))
    {
        return None;
    }
    files.into_iter().find(|p| {
        p.to_string_lossy().ends_with(suffix) && std::fs::metadata(p).is_ok_and(|m| m.len() > 0)
    })
}

/// `target/screenshots`, beside the test binaries' scratch directory.
pub fn screenshot_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(&tmp).join("screenshots")
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A failed test leaves no chromedriver (and so no Chromium) behind.
        self.driver.kill().ok();
        self.driver.wait().ok();
    }
}
