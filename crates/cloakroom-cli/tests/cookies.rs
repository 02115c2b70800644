//! The session cookie's settings: each changing what it names (as a flag, a `CLOAKROOM_*`
//! variable or a `--config` file, in that order of precedence). Django's defaults, the cookie
//! age, browser-session cookies and per-session expiry are the HTTP suite's
//! (`tests/http_suite.rs`).

mod support;

use serde_json::json;
use support::{bare, is_key, row, send, Demo, Scratch, SetCookie};

/// The `name` cookie that a new visitor's first visit to `demo` gets (checked to hold a key).
async fn first_cookie(demo: &Demo, name: &str) -> SetCookie {
    let reply = send(bare().get(demo.url("/api/visits"))).await;
    assert_eq!(reply.status, 200);
    let cookie = reply
        .cookie(name)
        .unwrap_or_else(|| panic!("no {name} cookie in {:?}", reply.headers));
    assert!(is_key(&cookie.value), "{cookie:?}");
    cookie
}

/// The `sessionid` cookie of a first visit to a demo started with `args`.
async fn cookie_with(args: &[&str]) -> SetCookie {
    first_cookie(&Demo::start(args), "sessionid").await
}

#[tokio::test]
async fn cookie_name_flag_renames_the_cookie_it_sets_and_reads() {
    let demo = Demo::start(&["--cookie-name", "sid"]);
    let first = send(bare().get(demo.url("/api/visits"))).await;
    assert!(first.cookie("sessionid").is_none(), "{:?}", first.headers);
    let key = first.cookie("sid").expect("a sid cookie").value;
    assert!(is_key(&key));
    let again = send(
        bare()
            .get(demo.url("/api/visits"))
            .header("cookie", format!("sid={key}")),
    )
    .await;
    assert_eq!(
        again.json(),
        json!({ "visits": 2 }),
        "the server reads `sid`"
    );
    let wrong_name = send(
        bare()
            .get(demo.url("/api/visits"))
            .header("cookie", format!("sessionid={key}")),
    )
    .await;
    assert_eq!(
        wrong_name.json(),
        json!({ "visits": 1 }),
        "and no longer reads `sessionid`"
    );
}

#[tokio::test]
async fn cookie_age_flag_sets_the_stored_expiry() {
    // The cookie's Max-Age and Expires are the HTTP suite's `cookie_age_sets_max_age_and_expires`.
    let demo = Demo::start(&["--cookie-age", "300"]);
    let cookie = first_cookie(&demo, "sessionid").await;
    let (_, expire) = row(&demo.db().await, &cookie.value).await.unwrap();
    let stored = time::PrimitiveDateTime::parse(
        &expire[..19],
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
    )
    .unwrap()
    .assume_utc();
    let from_now = (stored - time::OffsetDateTime::now_utc()).whole_seconds();
    assert!(
        (295..=300).contains(&from_now),
        "the record expires with the cookie: {expire}"
    );
}

#[tokio::test]
async fn cookie_domain_flag_sets_domain() {
    let cookie = cookie_with(&["--cookie-domain", "example.test"]).await;
    assert_eq!(cookie.get("domain"), Some("example.test"), "{}", cookie.raw);
}

#[tokio::test]
async fn cookie_path_flag_sets_path() {
    let cookie = cookie_with(&["--cookie-path", "/api"]).await;
    assert_eq!(cookie.get("path"), Some("/api"), "{}", cookie.raw);
}

#[tokio::test]
async fn cookie_secure_flag_adds_secure() {
    let cookie = cookie_with(&["--cookie-secure"]).await;
    assert!(cookie.has("secure"), "{}", cookie.raw);
}

#[tokio::test]
async fn cookie_httponly_false_drops_httponly() {
    let cookie = cookie_with(&["--cookie-httponly", "false"]).await;
    assert!(!cookie.has("httponly"), "{}", cookie.raw);
}

#[tokio::test]
async fn cookie_samesite_strict() {
    let cookie = cookie_with(&["--cookie-samesite", "Strict"]).await;
    assert_eq!(cookie.get("samesite"), Some("Strict"), "{}", cookie.raw);
}

#[tokio::test]
async fn cookie_samesite_none_with_secure() {
    let cookie = cookie_with(&["--cookie-samesite", "None", "--cookie-secure"]).await;
    assert_eq!(cookie.get("samesite"), Some("None"), "{}", cookie.raw);
    assert!(cookie.has("secure"), "{}", cookie.raw);
}

#[tokio::test]
async fn cookie_partitioned_with_secure() {
    let cookie = cookie_with(&["--cookie-partitioned", "--cookie-secure"]).await;
    assert!(cookie.has("partitioned"), "{}", cookie.raw);
    assert!(cookie.has("secure"), "{}", cookie.raw);
}

#[tokio::test]
async fn host_prefixed_name_with_secure_is_host_only() {
    let demo = Demo::start(&["--cookie-name", "__Host-sid", "--cookie-secure"]);
    let cookie = first_cookie(&demo, "__Host-sid").await;
    assert!(
        cookie.has("secure") && !cookie.has("domain"),
        "{}",
        cookie.raw
    );
    assert_eq!(cookie.get("path"), Some("/"));
}

#[tokio::test]
async fn settings_come_from_cloakroom_env_vars() {
    let dir = Scratch::new("env");
    let demo = Demo::start_with_env(
        &dir,
        &[],
        &[
            ("CLOAKROOM_COOKIE_NAME", "envsid"),
            ("CLOAKROOM_COOKIE_AGE", "600"),
            ("CLOAKROOM_COOKIE_SAMESITE", "Strict"),
            ("CLOAKROOM_COOKIE_SECURE", "true"),
            ("CLOAKROOM_COOKIE_PATH", "/api"),
        ],
    );
    let cookie = first_cookie(&demo, "envsid").await;
    cookie.assert_lifetime(600);
    assert_eq!(cookie.get("samesite"), Some("Strict"));
    assert_eq!(cookie.get("path"), Some("/api"));
    assert!(cookie.has("secure"), "{}", cookie.raw);
}

#[tokio::test]
async fn settings_come_from_a_config_file() {
    let dir = Scratch::new("config");
    let file = dir.join("cloakroom.toml");
    // Django's spelling of SameSite values works in the file as on the command line.
    std::fs::write(
        &file,
        "cookie_name = \"filesid\"\ncookie_age = 700\ncookie_samesite = \"Strict\"\n\
         cookie_domain = \"example.test\"\nexpire_at_browser_close = false\n",
    )
    .unwrap();
    let demo = Demo::start_in(&dir, &["--config", file.to_str().unwrap()]);
    let cookie = first_cookie(&demo, "filesid").await;
    cookie.assert_lifetime(700);
    assert_eq!(cookie.get("samesite"), Some("Strict"), "{}", cookie.raw);
    assert_eq!(cookie.get("domain"), Some("example.test"), "{}", cookie.raw);
}

#[tokio::test]
async fn a_flag_beats_env_which_beats_the_file() {
    let dir = Scratch::new("precedence");
    let file = dir.join("cloakroom.toml");
    std::fs::write(
        &file,
        "cookie_name = \"filesid\"\ncookie_age = 700\ncookie_path = \"/api\"\n",
    )
    .unwrap();
    let demo = Demo::start_with_env(
        &dir,
        &[
            "--config",
            file.to_str().unwrap(),
            "--cookie-name",
            "flagsid",
        ],
        &[
            ("CLOAKROOM_COOKIE_NAME", "envsid"),
            ("CLOAKROOM_COOKIE_AGE", "600"),
        ],
    );
    let cookie = first_cookie(&demo, "flagsid").await;
    cookie.assert_lifetime(600);
    assert_eq!(
        cookie.get("path"),
        Some("/api"),
        "the file beats the default"
    );

    // The file named by CLOAKROOM_CONFIG, under a flag.
    let demo = Demo::start_with_env(
        &dir,
        &["--cookie-age", "900"],
        &[("CLOAKROOM_CONFIG", file.to_str().unwrap())],
    );
    let cookie = first_cookie(&demo, "filesid").await;
    cookie.assert_lifetime(900);
}
