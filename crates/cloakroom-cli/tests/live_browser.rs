//! The demo's live page in a real browser (headless Chromium over WebDriver): two demo servers
//! on one PostgreSQL; a visitor logs in on server B and keeps `/live` open (its WebSocket); in
//! another tab an operator revokes the visitor's sessions from server A's admin page, whose
//! live feed shows the revocation, and the live page on B says at once that its session ended.

mod support;

use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use support::browser::{click_and_wait, fill_and_submit, text, Driver, TEST_DEADLINE};
use support::Demo;

const TOKEN: &str = "browser-admin-token-0123456789";

/// Waits (at most `limit`) until the text of `css` is `want`; the last text seen otherwise.
async fn text_becomes(browser: &Client, css: &str, want: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let seen = browser
            .find(Locator::Css(css))
            .await
            .map(|e| async move { e.text().await.unwrap_or_default() });
        let seen = match seen {
            Ok(read) => read.await,
            Err(_) => String::new(),
        };
        if seen == want || Instant::now() >= deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_page_ends_when_the_admin_revokes_its_session_on_another_server() {
    let (url, table) = (support::postgres_url(), support::unique_table("live_page"));
    support::migrate(&url, &table);
    let args = [
        "--database-url",
        url.as_str(),
        "--table",
        table.as_str(),
        "--admin-token",
        TOKEN,
    ];
    let (a, b) = (Demo::start(&args), Demo::start(&args));

    let driver = Driver::start();
    tokio::time::timeout(TEST_DEADLINE, async {
        let browser = driver.open().await;
        // The visitor logs in on B and opens the live page.
        browser.goto(&b.url("/")).await.unwrap();
        fill_and_submit(&browser, "#username", "ana", "#login").await;
        browser.goto(&b.url("/live")).await.unwrap();
        assert_eq!(text(&browser, "#user").await, "ana");
        let state = text_becomes(&browser, "#state", "live", Duration::from_secs(5)).await;
        assert_eq!(state, "live", "the live page connects");
        let visitor_tab = browser.window().await.unwrap();

        // An operator, in another tab, revokes ana's sessions on A's admin page.
        let admin_tab = browser.new_window(true).await.unwrap().handle;
        browser.switch_to_window(admin_tab).await.unwrap();
        browser.goto(&a.url("/admin/sessions")).await.unwrap();
        fill_and_submit(&browser, "#token", TOKEN, "#log-in").await;
        fill_and_submit(&browser, "#user-filter", "ana", "#filter").await;
        click_and_wait(&browser, "#revoke-user").await;
        let revoked_at = Instant::now();
        assert_eq!(text(&browser, "#notice").await, "Revoked 1 session.");

        // A's live feed shows the revocation, with ana's name.
        click_and_wait(&browser, "#feed").await;
        let revoked = browser
            .find(Locator::Css(
                r#"#events tr.event[data-kind="revoked"] td.user"#,
            ))
            .await
            .expect("the feed lists the revocation");
        assert_eq!(revoked.text().await.unwrap(), "ana");

        // Back on B's live page: it has ended.
        browser.switch_to_window(visitor_tab).await.unwrap();
        let state = text_becomes(
            &browser,
            "#state",
            "session ended: revoked",
            Duration::from_secs(3),
        )
        .await;
        assert_eq!(state, "session ended: revoked");
        println!(
            "Chromium: the live page had ended when the test looked, {:?} after the admin's \
             revoke returned (a visit to the feed in between)",
            revoked_at.elapsed()
        );
        driver.quit(browser).await;
    })
    .await
    .expect("the browser test finishes in time");
}
