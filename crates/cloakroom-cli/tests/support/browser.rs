//! The browser side of the tests: Debian's headless Chromium driven over WebDriver by
//! chromedriver (`Driver`), and what a test reads off a page.
//!
//! Needs `chromium` and `chromium-driver` (Debian): `scripts/install-browser.sh` installs them.
//! Without them the tests fail with that hint; they never skip.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use super::{free_port, temp_dir};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A bound on each test, so a wedged browser fails the run instead of hanging it.
pub const TEST_DEADLINE: Duration = Duration::from_secs(90);
/// How long one page may take to replace the previous one after a click.
pub const PAGE_DEADLINE: Duration = Duration::from_secs(15);

/// Fails (never skips) when the browser is missing, saying how to install it.
pub fn require_browser() {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|path| !Path::new(path).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "the browser tests need {missing:?}: install them with \
         `apt-get install -y chromium chromium-driver` (or run scripts/install-browser.sh)"
    );
}

/// A chromedriver on a free loopback port, with a Chromium profile folder of its own.
///
/// Dropping it ends chromedriver and any Chromium still running on the profile, by pid,
/// and removes the folder (kept, with chromedriver's log, when the test failed).
pub struct Driver {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl Driver {
    pub fn start() -> Self {
        require_browser();
        let dir = temp_dir("browser");
        for _ in 0..5 {
            let port = free_port();
            let log = std::fs::File::create(dir.join("chromedriver.log")).unwrap();
            let mut child = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("{CHROMEDRIVER} does not start: {e}"));
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // lost the port to another process: try another
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self {
                        child,
                        url: format!("http://127.0.0.1:{port}"),
                        dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "chromedriver did not start listening; see {}",
            dir.join("chromedriver.log").display()
        );
    }

    /// The one persistent Chromium profile (`--user-data-dir`) of this driver.
    pub fn profile(&self) -> PathBuf {
        self.dir.join("profile")
    }

    /// Starts a headless Chromium on the profile and opens a WebDriver session on it.
    pub async fn open(&self) -> Client {
        let profile = self.profile();
        let args = [
            "--headless=new".to_owned(),
            // Chromium runs as root here, where its sandbox cannot start.
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            // The machine's network is closed: without these Chromium's own background
            // connections are refused and slow or break start-up.
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--window-size=1000,1400".to_owned(),
            format!("--user-data-dir={}", profile.display()),
        ];
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object literal")
        };
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "chromedriver could not start Chromium: {e}; see {}",
                    self.dir.join("chromedriver.log").display()
                )
            })
    }

    /// Quits the browser the way a person does, and waits until it has really exited.
    ///
    /// Ending the WebDriver session makes chromedriver close Chromium cleanly (it is not
    /// killed when the profile is one of ours), and a clean shutdown is when Chromium writes
    /// its cookie store to the profile. Starting the next browser before this one is gone
    /// would race that write and the profile lock.
    pub async fn quit(&self, browser: Client) {
        browser.close().await.unwrap();
        let lock = self.profile().join("SingletonLock");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let running = chromium_pids(&self.profile());
            if running.is_empty() && std::fs::symlink_metadata(&lock).is_err() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Chromium (pids {running:?}) did not exit after the WebDriver session ended"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in chromium_pids(&self.profile()) {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
        if std::thread::panicking() {
            eprintln!(
                "browser test failed: chromedriver's log and the profile are kept in {}",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The processes started on `profile`: every Chromium process we launched names it on
/// its command line, and the folder's random name is ours alone.
pub fn chromium_pids(profile: &Path) -> Vec<u32> {
    let needle = profile.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(&needle))
        })
        .collect()
}

/// The visible text of the element matching `css`.
pub async fn text(browser: &Client, css: &str) -> String {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
        .text()
        .await
        .unwrap()
}

/// Whether an element matching `css` is on the page.
pub async fn shown(browser: &Client, css: &str) -> bool {
    !browser
        .find_all(Locator::Css(css))
        .await
        .unwrap()
        .is_empty()
}

/// Clicks `css` and waits until the page it leads to (a form post and its redirect) has
/// replaced the current one: a mark set on the old document is gone from the new one.
pub async fn click_and_wait(browser: &Client, css: &str) {
    browser
        .execute("window.cloakroomOldPage = true;", Vec::new())
        .await
        .unwrap();
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} to click: {e}"))
        .click()
        .await
        .unwrap();
    let deadline = Instant::now() + PAGE_DEADLINE;
    loop {
        // Mid-navigation the script may fail (no document yet): just try again.
        let loaded = browser
            .execute(
                "return window.cloakroomOldPage === undefined \
                 && document.readyState === 'complete';",
                Vec::new(),
            )
            .await;
        if matches!(loaded, Ok(serde_json::Value::Bool(true))) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "clicking {css} did not load a new page"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Types `value` into the field `field` and clicks `button`.
pub async fn fill_and_submit(browser: &Client, field: &str, value: &str, button: &str) {
    browser
        .find(Locator::Css(field))
        .await
        .unwrap_or_else(|e| panic!("no {field} to type into: {e}"))
        .send_keys(value)
        .await
        .unwrap();
    click_and_wait(browser, button).await;
}

/// Checks `png` is a PNG image with a non-empty picture (signature, then IHDR's size).
pub fn assert_png(png: &[u8]) {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    assert!(png.starts_with(SIGNATURE), "the screenshot is not a PNG");
    assert!(
        png.len() > 1000,
        "the screenshot is only {} bytes",
        png.len()
    );
    assert_eq!(
        &png[12..16],
        b"IHDR",
        "the PNG starts with its header chunk"
    );
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert!(
        width > 0 && height > 0,
        "the screenshot is {width}x{height}"
    );
}
