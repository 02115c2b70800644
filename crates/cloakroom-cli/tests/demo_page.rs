//! The demo's HTML page over real HTTP, without a browser: what it counts as a visit, how it
//! words the count, the key it shows before and after login, the sessions it lists and "log
//! out everywhere", the admin link, and the start-up message that names the URLs.
//! (`browser.rs` walks the same page in Chromium.)

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::{send, temp_dir, visitor, Demo, Reply};

/// The text inside the element with `id` (up to its first tag), if the page has it.
fn by_id<'a>(page: &'a Reply, id: &str) -> Option<&'a str> {
    let open = format!(r#"id="{id}">"#);
    let start = page.body.find(&open)? + open.len();
    let rest = &page.body[start..];
    Some(&rest[..rest.find('<').unwrap_or(rest.len())])
}

/// Loads the page as `client` does when it asks for it.
async fn load(client: &reqwest::Client, demo: &Demo) -> Reply {
    let page = send(client.get(demo.url("/"))).await;
    assert_eq!(page.status, 200, "{}", page.body);
    page
}

/// Posts a form as a browser does, and follows the redirect back to the page.
async fn post_form(
    client: &reqwest::Client,
    demo: &Demo,
    path: &str,
    form: &[(&str, &str)],
) -> Reply {
    let posted = send(client.post(demo.url(path)).form(form)).await;
    assert_eq!(posted.status, 303, "{path}: {}", posted.body);
    let location = posted.headers["location"].to_str().unwrap();
    assert_eq!(location, "/?from=post", "{path} redirects back to the page");
    let page = send(client.get(demo.url(location))).await;
    assert_eq!(page.status, 200, "{}", page.body);
    page
}

#[tokio::test]
async fn the_page_says_1_time_then_2_times() {
    let demo = Demo::start(&[]);
    let ana = visitor();
    let first = load(&ana, &demo).await;
    assert!(
        first.body.contains(r#"<b id="visits">1</b> time."#),
        "{}",
        first.body
    );
    let second = load(&ana, &demo).await;
    assert!(
        second.body.contains(r#"<b id="visits">2</b> times."#),
        "{}",
        second.body
    );
}

/// Post/Redirect/Get: the page a form post redirects to is not a view the visitor asked for,
/// so 2 loads and 4 posts count 2 visits, and the next load counts 3.
#[tokio::test]
async fn the_counter_counts_page_loads_not_the_redirect_after_a_form_post() {
    let demo = Demo::start(&[]);
    let ana = visitor();
    load(&ana, &demo).await;
    load(&ana, &demo).await;
    let mut after = None;
    for (path, form) in [
        ("/flash", &[("message", "Saved!")][..]),
        ("/cart", &[("item", "apple")]),
        ("/login", &[("username", "ana")]),
        ("/expiry", &[("seconds", "0")]),
    ] {
        let page = post_form(&ana, &demo, path, form).await;
        assert_eq!(by_id(&page, "visits"), Some("2"), "after {path}");
        after = Some(page);
    }
    let after = after.unwrap();
    let why = "(this load followed a form post, so it was not counted)";
    assert!(
        after.body.contains(why),
        "the page says why: {}",
        after.body
    );
    let next = load(&ana, &demo).await;
    assert_eq!(by_id(&next, "visits"), Some("3"));
    assert!(!next.body.contains(why), "{}", next.body);
}

#[tokio::test]
async fn the_page_shows_the_key_change_at_login_and_ends_every_session_on_log_out_everywhere() {
    let demo = Demo::start(&[]);
    let (phone, laptop) = (visitor(), visitor());
    let first = load(&phone, &demo).await;
    assert!(
        by_id(&first, "key-now").is_none(),
        "no key before the first save: {}",
        first.body
    );
    let anonymous = load(&phone, &demo).await;
    let before = by_id(&anonymous, "key-now")
        .expect("a key once saved")
        .to_owned();
    assert_eq!(before.len(), 8, "only a prefix is shown: {before:?}");

    let logged_in = post_form(&phone, &demo, "/login", &[("username", "ana")]).await;
    let after = by_id(&logged_in, "key-now").unwrap();
    assert_ne!(after, before, "login gives the session a new key");
    assert_eq!(by_id(&logged_in, "key-before"), Some(before.as_str()));

    // A second device of the same user: both sessions are listed, this one marked.
    post_form(&laptop, &demo, "/login", &[("username", "ana")]).await;
    let page = load(&phone, &demo).await;
    let listed = page.body.matches("<li><code>").count();
    assert_eq!(listed, 2, "{}", page.body);
    assert!(page
        .body
        .contains(&format!("<li><code>{after}…</code> <b>(this one)</b>")));

    let ended = post_form(&phone, &demo, "/logout-everywhere", &[]).await;
    assert_eq!(
        by_id(&ended, "flash"),
        Some("Logged out everywhere: 2 sessions.")
    );
    assert_eq!(
        by_id(&ended, "sessions-note"),
        Some("Log in to see your sessions.")
    );
    let laptop_page = load(&laptop, &demo).await;
    assert!(
        laptop_page
            .body
            .contains(r#"<p id="user">Not signed in</p>"#),
        "the other device is logged out too: {}",
        laptop_page.body
    );
}

#[tokio::test]
async fn the_page_links_the_admin_page_and_says_how_to_turn_it_on() {
    let off = Demo::start(&[]);
    let page = load(&visitor(), &off).await;
    assert!(page
        .body
        .contains(r#"<a id="admin-link" href="/admin/sessions">"#));
    assert!(page.body.contains("CLOAKROOM_ADMIN_TOKEN"), "{}", page.body);

    let on = Demo::start(&["--admin-token", "a-token-of-sixteen-chars"]);
    let page = load(&visitor(), &on).await;
    assert!(page
        .body
        .contains(r#"<a id="admin-link" href="/admin/sessions">"#));
    assert!(
        !page.body.contains("CLOAKROOM_ADMIN_TOKEN"),
        "{}",
        page.body
    );
}

/// The first lines `cloakroom demo` prints (on a port the OS picks), then stops it.
fn startup_lines(args: &[&str]) -> Vec<String> {
    let dir = temp_dir("demo-startup");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .args(["demo", "--addr", "127.0.0.1:0"])
        .args(args)
        .current_dir(&dir)
        .env("RUST_LOG", "warn")
        .env_remove("CLOAKROOM_ADMIN_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the cloakroom binary runs");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let lines: Vec<String> = (0..2)
        .map_while(|_| rx.recv_timeout(Duration::from_secs(20)).ok())
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    lines
}

#[test]
fn the_start_up_message_names_the_page_and_the_admin_page() {
    let lines = startup_lines(&[]);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let page = lines[0]
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no page URL in {lines:?}"));
    assert!(page.ends_with('/'), "{page}");
    let admin = format!("{page}admin/sessions");
    assert!(
        lines[1].contains(&admin) && lines[1].contains("CLOAKROOM_ADMIN_TOKEN"),
        "off, it says how to turn it on: {lines:?}"
    );

    let token = "a-token-of-sixteen-chars";
    let lines = startup_lines(&["--admin-token", token]);
    assert!(
        lines.len() == 2 && lines[1].starts_with("admin page: http://127.0.0.1:"),
        "{lines:?}"
    );
    assert!(lines[1].contains("/admin/sessions (log in with the admin token"));
    assert!(!lines.concat().contains(token), "never the token itself");
}
