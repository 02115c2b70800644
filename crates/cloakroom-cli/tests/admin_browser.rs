//! The demo's admin page in a real browser (headless Chromium over WebDriver, see
//! `support/browser.rs`), against the real `cloakroom demo` binary on SQLite and on Redis: an
//! operator logs in with the token, finds sessions, filters by user, reads one session's data,
//! revokes one and then all of a user's, and the visitors' next requests are anonymous.

mod support;

use std::path::PathBuf;

use fantoccini::{Client, Locator};
use support::browser::{assert_png, click_and_wait, fill_and_submit, text, Driver, TEST_DEADLINE};
use support::servers::Redis;
use support::{logged_in, send, whoami, Demo};

const TOKEN: &str = "browser-admin-token-0123456789";

/// The key prefixes of the listed sessions, in page order.
async fn listed(browser: &Client) -> Vec<String> {
    let mut prefixes = Vec::new();
    for row in browser
        .find_all(Locator::Css("#sessions tr.session"))
        .await
        .unwrap()
    {
        prefixes.push(row.attr("data-prefix").await.unwrap().unwrap_or_default());
    }
    prefixes
}

fn prefix(key: &str) -> String {
    key[..8].to_owned()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Where the screenshot of `engine`'s admin page goes: the tests' temp folder under target/.
fn screenshot_path(engine: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("admin-{engine}.png"))
}

/// The operator's walk through the admin page of `demo`, a demo with `--admin-token`.
async fn operator_walkthrough(demo: &Demo, engine: &str) {
    let ana = [logged_in(demo, "ana").await, logged_in(demo, "ana").await];
    let bob = logged_in(demo, "bob").await;
    let anonymous = send(support::bare().get(demo.url("/api/visits")))
        .await
        .new_key();
    let everyone = sorted(
        [&ana[0], &ana[1], &bob, &anonymous]
            .map(|k| prefix(k))
            .to_vec(),
    );

    let driver = Driver::start();
    tokio::time::timeout(TEST_DEADLINE, async {
        let browser = driver.open().await;

        // The page sends a stranger to the login form; the token lets the operator in.
        browser.goto(&demo.url("/admin/sessions")).await.unwrap();
        assert_eq!(text(&browser, "h1").await, "cloakroom admin · Log in");
        fill_and_submit(&browser, "#token", "not-the-token-at-all", "#log-in").await;
        assert_eq!(text(&browser, "#error").await, "Wrong admin token.");
        fill_and_submit(&browser, "#token", TOKEN, "#log-in").await;
        assert_eq!(text(&browser, "h1").await, "cloakroom admin · Sessions");
        assert_eq!(sorted(listed(&browser).await), everyone);
        let users = browser
            .find_all(Locator::Css("#sessions td.user"))
            .await
            .unwrap();
        let mut names = Vec::new();
        for cell in users {
            names.push(cell.text().await.unwrap());
        }
        assert_eq!(
            sorted(names),
            ["ana", "ana", "anonymous", "bob"],
            "each session shows its user"
        );

        // What the operator sees, kept for people to look at.
        let png = browser.screenshot().await.unwrap();
        assert_png(&png);
        let shot = screenshot_path(engine);
        std::fs::write(&shot, &png).unwrap();
        assert!(std::fs::metadata(&shot).unwrap().len() > 0);

        // Filter by user.
        fill_and_submit(&browser, "#user-filter", "ana", "#filter").await;
        assert_eq!(
            sorted(listed(&browser).await),
            sorted(ana.iter().map(|k| prefix(k)).collect())
        );
        assert!(text(&browser, "#summary")
            .await
            .starts_with("2 live sessions of user ana"));

        // One session's data, decoded.
        click_and_wait(&browser, "#clear-filter").await;
        click_and_wait(
            &browser,
            &format!(r#"tr[data-prefix="{}"] button.view"#, prefix(&bob)),
        )
        .await;
        assert_eq!(text(&browser, "#user").await, "bob");
        let data = text(&browser, "#data").await;
        assert!(data.contains(r#""_auth_user_id": "bob""#), "{data}");
        assert!(data.contains(r#""username": "bob""#), "{data}");

        // Revoke it: bob's next request is anonymous, and the list no longer has it.
        click_and_wait(&browser, "#revoke").await;
        assert_eq!(text(&browser, "#notice").await, "Revoked 1 session.");
        assert_eq!(whoami(demo, &bob).await, None, "bob's session has ended");
        assert!(!listed(&browser).await.contains(&prefix(&bob)));

        // Revoke all of ana's sessions from the filtered list.
        fill_and_submit(&browser, "#user-filter", "ana", "#filter").await;
        click_and_wait(&browser, "#revoke-user").await;
        assert_eq!(text(&browser, "#notice").await, "Revoked 2 sessions.");
        for key in &ana {
            assert_eq!(whoami(demo, key).await, None, "ana's sessions have ended");
        }
        click_and_wait(&browser, "#clear-filter").await;
        assert_eq!(listed(&browser).await, [prefix(&anonymous)]);

        driver.quit(browser).await;
    })
    .await
    .expect("the browser test finishes in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_finds_views_and_revokes_sessions_on_sqlite() {
    let demo = Demo::start(&["--admin-token", TOKEN]);
    operator_walkthrough(&demo, "sqlite").await;
}

/// On a redis-server of the test's own, so the list holds this test's sessions only (the
/// `cache` engine lists every session in its Redis database).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_finds_views_and_revokes_sessions_on_redis() {
    let redis = Redis::new();
    let demo = Demo::start(&[
        "--admin-token",
        TOKEN,
        "--engine",
        "cache",
        "--cache-url",
        &redis.url(),
    ]);
    operator_walkthrough(&demo, "redis").await;
}
