//! Headless Chromium for the console's browser tests (tests/console.rs), driven over
//! the W3C WebDriver protocol: a `chromedriver` started on a free loopback port, one
//! session with the flags this machine's closed network needs and a fresh profile,
//! and the few commands the tests use (navigate, find, click, type, read, run a
//! script, resize, screenshot). The protocol is JSON over HTTP, spoken with the
//! tests' `reqwest` client.
//!
//! Debian's `chromium` and `chromium-driver` packages give `/usr/bin/chromium` and
//! `/usr/bin/chromedriver` (`.ci/run` installs them when missing); without them the
//! tests fail, never skip.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::Client;
use serde_json::{Value, json};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long any wait for the page lasts before the test fails: generous, since the
/// machine may be busy; a wait ends as soon as its condition holds.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: Client,
    _profile: tempfile::TempDir,
    screenshots: PathBuf,
}

#[derive(Clone, Debug)]
pub struct Element(String);

fn require(path: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: the console's browser tests need Debian's chromium and \
         chromium-driver packages (apt-get install -y chromium chromium-driver; .ci/run \
         installs them)"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session of `width`×`height`;
    /// screenshots go to `target/console-screenshots/<prefix>-…png`.
    pub async fn start(prefix: &str, width: u32, height: u32) -> Browser {
        require(CHROMIUM);
        require(CHROMEDRIVER);
        let port = free_port();
        // In a process group of its own, with the Chromium it starts, so that all of it
        // can be ended together.
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {CHROMEDRIVER}: {e}"));
        let http = Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && let Ok(status) = r.json::<Value>().await
                && status["value"]["ready"] == true
            {
                break;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "chromedriver never became ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            &format!("--window-size={width},{height}"),
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver made no session: {answer}"))
            .to_owned();
        let screenshots = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/console-screenshots")
            .join(prefix);
        let _ = std::fs::remove_dir_all(&screenshots);
        std::fs::create_dir_all(&screenshots).unwrap();
        Browser {
            driver,
            base,
            session,
            http,
            _profile: profile,
            screenshots,
        }
    }

    /// One WebDriver command; `Err` with the driver's error value.
    async fn command(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, Value> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let request = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body.unwrap_or_else(|| json!({}))),
        };
        let response = request.send().await.map_err(|e| json!(e.to_string()))?;
        let ok = response.status().is_success();
        let answer: Value = response.json().await.map_err(|e| json!(e.to_string()))?;
        if ok {
            Ok(answer["value"].clone())
        } else {
            Err(answer["value"].clone())
        }
    }

    async fn must(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.command(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    pub async fn goto(&self, url: &str) {
        self.must("POST", "/url", Some(json!({"url": url}))).await;
    }

    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let found = self
            .command(
                "POST",
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await
            .unwrap_or(Value::Array(vec![]));
        found
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e[ELEMENT].as_str().map(|id| Element(id.to_owned())))
            .collect()
    }

    /// Waits until `css` matches a displayed element, and returns it.
    pub async fn wait_for(&self, css: &str) -> Element {
        let started = Instant::now();
        loop {
            for element in self.find_all(css).await {
                let shown = self
                    .command("GET", &format!("/element/{}/displayed", element.0), None)
                    .await;
                if shown == Ok(Value::Bool(true)) {
                    return element;
                }
            }
            if started.elapsed() > PATIENCE {
                self.screenshot("timeout").await;
                panic!("{css} never appeared on the page");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the text of the element `css` matches `check`; returns the text.
    pub async fn wait_text(&self, css: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        let mut last = String::new();
        loop {
            for element in self.find_all(css).await {
                if let Ok(Value::String(text)) = self
                    .command("GET", &format!("/element/{}/text", element.0), None)
                    .await
                {
                    if check(&text) {
                        return text;
                    }
                    last = text;
                }
            }
            if started.elapsed() > PATIENCE {
                self.screenshot("timeout").await;
                panic!("{css} never showed {what}; last text: {last:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the element `css` once it is shown, again if the page replaced it
    /// meanwhile (panels that poll re-render).
    pub async fn click(&self, css: &str) {
        let started = Instant::now();
        loop {
            let element = self.wait_for(css).await;
            match self
                .command("POST", &format!("/element/{}/click", element.0), None)
                .await
            {
                Ok(_) => return,
                Err(e) if started.elapsed() > PATIENCE => panic!("clicking {css}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Types into the element `css` (after clearing it, for inputs).
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.wait_for(css).await;
        let _ = self
            .command("POST", &format!("/element/{}/clear", element.0), None)
            .await;
        self.send_keys(&element, text).await;
    }

    /// Keys as WebDriver sends them (`\u{E011}` is Home, `\u{E014}` the right arrow).
    pub async fn send_keys(&self, element: &Element, keys: &str) {
        self.must(
            "POST",
            &format!("/element/{}/value", element.0),
            Some(json!({"text": keys})),
        )
        .await;
    }

    pub async fn property(&self, css: &str, name: &str) -> Value {
        let element = self.wait_for(css).await;
        self.must(
            "GET",
            &format!("/element/{}/property/{name}", element.0),
            None,
        )
        .await
    }

    pub async fn script(&self, script: &str) -> Value {
        self.must(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.must(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// Saves the page as `target/console-screenshots/<prefix>/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let encoded = self.must("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("a base64 screenshot"))
            .expect("the screenshot decodes");
        let path = self.screenshots.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // End the session (Chromium with it) if it ends quickly, then the driver's
        // whole process group: the driver and whatever Chromium processes remain.
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = std::thread::spawn(move || {
            let http = Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async { http.delete(url).send().await })
        })
        .join();
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.wait();
    }
}
