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

/// Where the screenshot goes: `target/browser-demo.png`.
fn screenshot_path() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")); // <target>/tmp
    tmp.parent().unwrap_or(tmp).join("browser-demo.png")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_sees_the_counter_flash_cart_and_login_work() {
    let demo = Demo::start(&[]);
    let driver = Driver::start();
    tokio::time::timeout(TEST_DEADLINE, async {
        let browser = driver.open().await;

        // The counter survives reloads.
        browser.goto(&demo.url("/")).await.unwrap();
        assert_eq!(text(&browser, "h1").await, "cloakroom demo");
        assert_eq!(visits(&browser).await, 1);
        browser.refresh().await.unwrap();
        assert_eq!(visits(&browser).await, 2);
        browser.refresh().await.unwrap();
        assert_eq!(visits(&browser).await, 3, "the counter counts reloads");

        // A flash message shows once, then is gone.
        fill_and_submit(&browser, "#message", "Saved!", "#send-flash").await;
        assert_eq!(text(&browser, "#flash").await, "Saved!");
        browser.refresh().await.unwrap();
        assert!(
            !shown(&browser, "#flash").await,
            "the flash message is gone on the next load"
        );

        // The cart fills.
        fill_and_submit(&browser, "#item", "apple", "#add").await;
        fill_and_submit(&browser, "#item", "pear", "#add").await;
        let mut items = Vec::new();
        for li in browser.find_all(Locator::Css("#cart li")).await.unwrap() {
            items.push(li.text().await.unwrap());
        }
        assert_eq!(items, ["apple", "pear"]);
        assert_eq!(text(&browser, "#count").await, "2");
        assert_eq!(text(&browser, "#flash").await, "Added to your cart.");

        // Logging in shows the name (and keeps the cart: the key cycles, the data stays).
        fill_and_submit(&browser, "#username", "alice", "#login").await;
        assert_eq!(text(&browser, "#user").await, "Signed in as alice");
        assert_eq!(text(&browser, "#count").await, "2");

        // What a person sees at this point, kept for people to look at.
        let png = browser.screenshot().await.unwrap();
        assert_png(&png);
        std::fs::write(screenshot_path(), &png).unwrap();

        // Checking out empties the cart.
        click_and_wait(&browser, "#checkout").await;
        assert_eq!(text(&browser, "#count").await, "0");
        assert!(!shown(&browser, "#cart li").await, "the cart is empty");
        assert_eq!(text(&browser, "#flash").await, "Thank you for your order!");

        // Logging out forgets the visitor.
        click_and_wait(&browser, "#logout").await;
        assert_eq!(text(&browser, "#user").await, "Not signed in");
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
        assert_eq!(visits(&browser).await, 1);
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
        assert_eq!(visits(&browser).await, 2);
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
            3,
            "after a browser restart the two-week session goes on"
        );
        driver.quit(browser).await;
    })
    .await
    .expect("the browser test finishes in time");
}
