//! The demo page in a real browser: Debian's headless Chromium, driven over WebDriver by
//! chromedriver, against the real `cloakroom demo` binary.
//!
//! The assertions are what a person sees on the page. The browser is also the judge of our
//! cookies: which ones it keeps when it is quit and started again on the same profile.
//!
//! Needs `chromium` and `chromium-driver` (Debian): `scripts/install-browser.sh` installs them
//! (see `support/browser.rs`).

mod support;

use std::path::{Path, PathBuf};

use fantoccini::{Client, Locator};
use support::browser::{
    assert_png, click_and_wait, fill_and_submit, shown, text, Driver, TEST_DEADLINE,
};
use support::Demo;

/// The visit counter the page shows.
async fn visits(browser: &Client) -> u64 {
    let shown = text(browser, "#visits").await;
    shown
        .parse()
        .unwrap_or_else(|_| panic!("#visits shows {shown:?}, not a number"))
}

/// Where the screenshot goes: `target/browser-demo.png`, and with
/// `CLOAKROOM_UPDATE_SCREENSHOT=1` also `docs/demo.png`, the picture the demo guide and the
/// README show (not on every run: each run's picture differs by its keys and times, and a test
/// should not leave the working tree changed).
fn screenshot_paths() -> Vec<PathBuf> {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")); // <target>/tmp
    let mut paths = vec![tmp.parent().unwrap_or(tmp).join("browser-demo.png")];
    if std::env::var_os("CLOAKROOM_UPDATE_SCREENSHOT").is_some_and(|v| v == "1") {
        paths.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/demo.png"));
    }
    paths
}

/// The texts of every element matching `css`.
async fn texts(browser: &Client, css: &str) -> Vec<String> {
    let mut texts = Vec::new();
    for element in browser.find_all(Locator::Css(css)).await.unwrap() {
        texts.push(element.text().await.unwrap());
    }
    texts
}

/// A learner walks the page: 2 loads and 4 form posts (flash, two cart adds, login). The
/// counter counts loads the learner asked for, not the page each post redirects to, so it
/// says 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_walks_the_page_counter_flash_cart_login_key_and_sessions() {
    let demo = Demo::start(&[]);
    let driver = Driver::start();
    tokio::time::timeout(TEST_DEADLINE, async {
        let browser = driver.open().await;

        browser.goto(&demo.url("/")).await.unwrap();
        assert_eq!(text(&browser, "h1").await, "cloakroom demo");
        assert_eq!(
            text(&browser, "#visits-line").await,
            "You have viewed this page 1 time."
        );
        assert!(
            text(&browser, "#visits-code")
                .await
                .contains("VISITS.update"),
            "each part shows its handler lines"
        );
        browser.goto(&demo.url("/")).await.unwrap();
        assert_eq!(
            text(&browser, "#visits-line").await,
            "You have viewed this page 2 times."
        );
        let key_before = text(&browser, "#key-now").await;
        assert_eq!(key_before.len(), 8, "a prefix of the key: {key_before:?}");

        // A flash message shows once, then is gone; the page a post leads to is not a visit.
        fill_and_submit(&browser, "#message", "Saved!", "#send-flash").await;
        assert_eq!(text(&browser, "#flash").await, "Saved!");
        assert_eq!(
            visits(&browser).await,
            2,
            "the redirect after a post is not counted"
        );
        assert!(text(&browser, "#visits-line").await.contains("not counted"));

        // The cart fills.
        fill_and_submit(&browser, "#item", "apple", "#add").await;
        fill_and_submit(&browser, "#item", "pear", "#add").await;
        assert_eq!(texts(&browser, "#cart li").await, ["apple", "pear"]);
        assert_eq!(text(&browser, "#count").await, "2");
        assert_eq!(text(&browser, "#flash").await, "Added to your cart.");

        // Logging in shows the name, a new key, the old one, and keeps the cart.
        fill_and_submit(&browser, "#username", "alice", "#login").await;
        assert_eq!(text(&browser, "#user").await, "Signed in as alice");
        assert_eq!(text(&browser, "#count").await, "2");
        let key_after = text(&browser, "#key-now").await;
        assert_ne!(key_after, key_before, "login gives the session a new key");
        assert_eq!(text(&browser, "#key-before").await, key_before);
        assert_eq!(visits(&browser).await, 2, "2 loads and 4 posts: 2 visits");

        // The user's sessions: this one, marked.
        let listed = texts(&browser, "#sessions li").await;
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert!(
            listed[0].starts_with(&format!("{key_after}… (this one)")),
            "{listed:?}"
        );
        let admin = browser
            .find(Locator::Css("#admin-link"))
            .await
            .unwrap()
            .attr("href")
            .await
            .unwrap();
        assert_eq!(admin.as_deref(), Some("/admin/sessions"));

        // What a learner sees at this point, kept for people to look at: the whole page, so
        // the window grows to the page's height (plus the window's own frame).
        let heights = browser
            .execute(
                "return [document.documentElement.scrollHeight, \
                 window.outerHeight - window.innerHeight];",
                Vec::new(),
            )
            .await
            .unwrap();
        let height: u64 = heights
            .as_array()
            .map(|h| h.iter().filter_map(serde_json::Value::as_u64).sum())
            .unwrap_or(1400);
        let height = u32::try_from(height).unwrap_or(1400).min(4000);
        browser.set_window_size(1000, height).await.unwrap();
        let png = browser.screenshot().await.unwrap();
        assert_png(&png);
        for path in screenshot_paths() {
            std::fs::write(&path, &png).unwrap();
        }

        // Checking out empties the cart.
        click_and_wait(&browser, "#checkout").await;
        assert_eq!(text(&browser, "#count").await, "0");
        assert!(!shown(&browser, "#cart li").await, "the cart is empty");
        assert_eq!(text(&browser, "#flash").await, "Thank you for your order!");

        // Logging out everywhere ends the session: the learner is a stranger again.
        click_and_wait(&browser, "#logout-everywhere").await;
        assert_eq!(
            text(&browser, "#flash").await,
            "Logged out everywhere: 1 session."
        );
        assert_eq!(text(&browser, "#user").await, "Not signed in");
        assert_eq!(
            text(&browser, "#sessions-note").await,
            "Log in to see your sessions."
        );
        assert_eq!(
            visits(&browser).await,
            0,
            "the counter went with the session"
        );
        assert!(shown(&browser, "#login").await);

        driver.quit(browser).await;
    })
    .await
    .expect("the browser test finishes in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_drops_a_browser_close_session_and_keeps_a_two_week_one_across_restarts() {
    let demo = Demo::start(&[]);
    let driver = Driver::start();
    tokio::time::timeout(TEST_DEADLINE, async {
        // A session that ends at browser close: no Max-Age, so Chromium must not keep it.
        let browser = driver.open().await;
        browser.goto(&demo.url("/")).await.unwrap();
        browser.goto(&demo.url("/")).await.unwrap();
        assert_eq!(visits(&browser).await, 2);
        click_and_wait(&browser, "#browser-close").await;
        assert_eq!(visits(&browser).await, 2);
        assert_eq!(
            text(&browser, "#lifetime").await,
            "This session lasts until you close the browser."
        );
        driver.quit(browser).await;

        let browser = driver.open().await;
        browser.goto(&demo.url("/")).await.unwrap();
        assert_eq!(
            visits(&browser).await,
            1,
            "after a browser restart the browser-close session is gone"
        );

        // The same profile, now with a two-week session: Chromium keeps it on disk.
        click_and_wait(&browser, "#two-weeks").await;
        assert_eq!(visits(&browser).await, 1);
        let lifetime = text(&browser, "#lifetime").await;
        let seconds_left: Option<u64> = lifetime
            .strip_prefix("This session lasts ")
            .and_then(|rest| rest.strip_suffix(" more seconds."))
            .and_then(|n| n.parse().ok());
        assert!(
            seconds_left.is_some_and(|s| (1_209_000..=1_209_600).contains(&s)),
            "about two weeks (1209600 s) left: {lifetime:?}"
        );
        driver.quit(browser).await;

        let browser = driver.open().await;
        browser.goto(&demo.url("/")).await.unwrap();
        assert_eq!(
            visits(&browser).await,
            2,
            "after a browser restart the two-week session goes on"
        );
        driver.quit(browser).await;
    })
    .await
    .expect("the browser test finishes in time");
}
