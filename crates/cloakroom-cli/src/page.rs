//! The demo's HTML page, a lesson a learner keeps open: each part of the session API (visit
//! counter, flash message, cart, login and logout, lifetime, a user's sessions) with one
//! sentence on what it shows, its live state, and the handler lines behind it, cut from this
//! file and `user_sessions.rs` as compiled, so the code shown is the code that runs.
//!
//! Plain forms that post and redirect back (Post/Redirect/Get), so it works without
//! JavaScript. The redirect goes to `/?from=post`, and such a load is not counted as a visit:
//! the visitor asked for the form's action, not for another view of the page.

use axum::extract::{Form, State};
use axum::http::{Extensions, HeaderMap, Uri};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use cloakroom::{Expiry, Session, Sessions, StoreError, TypedKey};
use time::OffsetDateTime;

use crate::demo::{
    escape, key_prefix, Item, Login, Message, Result, Seconds, CART, FLASH, USERNAME, VISITS,
};
use crate::user_sessions::{end_everywhere, log_in, of_current_user, Listed};

/// The first characters of the key the session had before its login, kept so the page can
/// show the key change that login makes.
const KEY_BEFORE_LOGIN: TypedKey<String> = TypedKey::new("demo_key_before_login");

/// The query of the page a form post redirects to: a load that is not counted as a visit.
const AFTER_POST: &str = "from=post";

/// What the page needs to know beyond the session.
#[derive(Clone, Copy)]
struct PageConfig {
    /// Whether the admin page is on (the demo was given an `admin_token`).
    admin: bool,
}

/// The page and its forms, for [`crate::demo::app`] to merge under its session layer (which
/// also adds the `Sessions` extension the page reads). `admin` says whether the admin page is
/// on, so the page can say how to turn it on when it is not.
pub fn routes(admin: bool) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/flash", post(form_flash))
        .route("/cart", post(form_cart))
        .route("/checkout", post(form_checkout))
        .route("/login", post(form_login))
        .route("/logout", post(form_logout))
        .route("/expiry", post(form_expiry))
        .route("/logout-everywhere", post(form_logout_everywhere))
        .with_state(PageConfig { admin })
}

/// Where every form goes after its POST: the page, marked as a load that follows a post.
fn back() -> Redirect {
    Redirect::to("/?from=post")
}

async fn form_flash(session: Session, Form(m): Form<Message>) -> Result<Redirect> {
    // snippet flash
    // POST /flash
    FLASH.insert(&session, m.message)?;
    // end snippet
    Ok(back())
}

async fn form_cart(session: Session, Form(Item { item }): Form<Item>) -> Result<Redirect> {
    // snippet cart
    // POST /cart: a Vec<String>, created empty on first use
    CART.update(&session, move |cart| cart.push(item.clone()))?;
    // end snippet
    FLASH.insert(&session, "Added to your cart.".to_owned())?;
    Ok(back())
}

async fn form_checkout(session: Session) -> Result<Redirect> {
    // snippet cart
    // POST /checkout
    CART.remove(&session)?;
    // end snippet
    FLASH.insert(&session, "Thank you for your order!".to_owned())?;
    Ok(back())
}

async fn form_login(
    session: Session,
    headers: HeaderMap,
    extensions: Extensions,
    Form(login): Form<Login>,
) -> Result<Redirect> {
    // snippet login
    // POST /login: login_as (in log_in) gives a new key
    let before = session.session_key();
    log_in(&session, &login.username, &headers, &extensions)?;
    USERNAME.insert(&session, login.username)?;
    // end snippet
    if let Some(key) = before {
        KEY_BEFORE_LOGIN.insert(&session, key_prefix(&key).to_owned())?;
    }
    Ok(back())
}

async fn form_logout(session: Session) -> Result<Redirect> {
    // snippet login
    // POST /logout: the data goes, and the key too
    session.flush()?;
    // end snippet
    Ok(back())
}

async fn form_expiry(session: Session, Form(s): Form<Seconds>) -> Result<Redirect> {
    // snippet lifetime
    // POST /expiry: 0 seconds means until the browser closes
    session.set_expiry(Expiry::seconds(s.seconds))?;
    // end snippet
    Ok(back())
}

async fn form_logout_everywhere(
    Extension(sessions): Extension<Sessions>,
    session: Session,
) -> Result<Redirect> {
    if let Some(ended) = end_everywhere(&sessions, &session).await? {
        FLASH.insert(
            &session,
            format!("Logged out everywhere: {}.", count(ended, "session")),
        )?;
    }
    Ok(back())
}

/// The ending of a regular noun counted `n` times: "" for 1, "s" otherwise ("1 time",
/// "0 times", "2 times").
fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `n` and `noun`, plural unless `n` is 1.
fn count(n: u64, noun: &str) -> String {
    format!("{n} {noun}{}", plural(n))
}

/// The lines between `// snippet NAME` and `// end snippet` in the page's sources, each
/// region dedented (each starts with a comment naming its route); empty when there is none
/// (a unit test checks every section finds its snippet).
fn snippet(name: &str) -> String {
    const SOURCES: [&str; 3] = [
        include_str!("page.rs"),
        include_str!("user_sessions.rs"),
        include_str!("live.rs"),
    ];
    let start = format!("// snippet {name}");
    let mut regions = Vec::new();
    for source in SOURCES {
        let mut region: Option<Vec<&str>> = None;
        for line in source.lines() {
            let trimmed = line.trim();
            match &mut region {
                None if trimmed == start => region = Some(Vec::new()),
                None => {}
                Some(lines) if trimmed == "// end snippet" => {
                    regions.push(dedent(lines));
                    region = None;
                }
                Some(lines) => lines.push(line),
            }
        }
    }
    regions.join("\n")
}

/// `lines` without the indentation they all share, as one text.
fn dedent(lines: &[&str]) -> String {
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    lines
        .iter()
        .map(|l| l.get(indent..).unwrap_or("").trim_end())
        .collect::<Vec<_>>()
        .join("\n")
}

/// One part of the lesson: its title, the sentence that says what it shows, what the visitor
/// sees of it now, and the snippet of handler code behind it.
fn section(id: &str, title: &str, sentence: &str, live: &str) -> String {
    format!(
        r#"<section id="{id}-part"><h2>{title}</h2><p class="what">{sentence}</p>{live}
<pre><code id="{id}-code">{code}</code></pre></section>"#,
        code = escape(&snippet(id)),
    )
}

/// `when` as `HH:MM UTC`.
fn clock(when: OffsetDateTime) -> String {
    format!("{:02}:{:02} UTC", when.hour(), when.minute())
}

/// The "your sessions" part's live state: the list and its button, or why there is none.
fn your_sessions(listed: std::result::Result<Option<Vec<Listed>>, String>) -> String {
    let listed = match listed {
        Ok(Some(listed)) => listed,
        Ok(None) => {
            return r#"<p id="sessions-note">Log in to see your sessions.</p>"#.to_owned();
        }
        Err(why) => return format!(r#"<p id="sessions-note">{}</p>"#, escape(&why)),
    };
    let rows: String = listed
        .iter()
        .map(
            |Listed {
                 current,
                 session: s,
             }| {
                format!(
                    "<li><code>{id}…</code>{this} {agent}, {ip}, logged in {at}</li>",
                    id = escape(&s.id),
                    this = if *current { " <b>(this one)</b>" } else { "" },
                    agent = escape(s.user_agent.as_deref().unwrap_or("unknown browser")),
                    ip = escape(s.ip.as_deref().unwrap_or("unknown address")),
                    at = clock(s.created_at),
                )
            },
        )
        .collect();
    format!(
        r#"<ul id="sessions">{rows}</ul>
<form method="post" action="/logout-everywhere"><button id="logout-everywhere" type="submit">Log out everywhere</button></form>"#
    )
}

async fn page(
    State(config): State<PageConfig>,
    Extension(sessions): Extension<Sessions>,
    uri: Uri,
    session: Session,
) -> Result<Response> {
    // snippet visits
    // GET /: not counted when a form post redirected here
    let visits = if uri.query() == Some(AFTER_POST) {
        VISITS.get(&session)?.unwrap_or(0)
    } else {
        VISITS.update(&session, |n| *n += 1)?
    };
    // end snippet
    // snippet flash
    // GET /: remove() reads it and deletes it: shown once
    let flash = FLASH.remove(&session)?;
    // end snippet
    let cart = CART.get(&session)?.unwrap_or_default();
    let user = USERNAME.get(&session)?;
    let before = KEY_BEFORE_LOGIN.get(&session)?;
    // snippet lifetime
    // GET /: what is left of this session's life
    let lifetime = if session.expire_at_browser_close() {
        "until you close the browser".to_owned()
    } else {
        format!("{} more seconds", session.expiry_age())
    };
    // end snippet
    let listed = match of_current_user(&sessions, &session).await {
        Ok(found) => Ok(found.map(|(_, listed)| listed)),
        Err(cloakroom::Error::Store(e @ StoreError::NoUserIndex { .. })) => Err(e.to_string()),
        Err(e) => return Err(e),
    };

    let flash_html = flash
        .map(|m| format!(r#"<p class="flash" id="flash">{}</p>"#, escape(&m)))
        .unwrap_or_default();
    let not_counted = if uri.query() == Some(AFTER_POST) {
        r#" <span class="note">(this load followed a form post, so it was not counted)</span>"#
    } else {
        ""
    };
    let items: String = cart
        .iter()
        .map(|i| format!("<li>{}</li>", escape(i)))
        .collect();
    let key_now = match session.session_key() {
        Some(key) => format!(
            r#"Your session key starts with <code id="key-now">{}</code>."#,
            escape(key_prefix(&key))
        ),
        None => "You have no session key yet: this response's save makes one.".to_owned(),
    };
    let key_before = match (&user, &before) {
        (Some(_), Some(old)) => format!(
            r#" Before you logged in it started with <code id="key-before">{}</code>."#,
            escape(old)
        ),
        _ => String::new(),
    };
    let account = match &user {
        Some(name) => format!(
            r#"<p id="user">Signed in as <b>{}</b></p>
<form method="post" action="/logout"><button id="logout" type="submit">Log out</button></form>"#,
            escape(name)
        ),
        None => r#"<p id="user">Not signed in</p>
<form method="post" action="/login"><input id="username" name="username" placeholder="name" required>
<button id="login" type="submit">Log in</button></form>"#
            .to_owned(),
    };
    let admin_note = if config.admin {
        "log in there with the demo's admin token"
    } else {
        "off now: start the demo with <code>CLOAKROOM_ADMIN_TOKEN</code> (16+ characters) set to \
         turn it on"
    };

    let parts = [
        section(
            "visits",
            "Visits",
            "A session is a small dictionary kept per visitor: this counter lives in it, so it \
             survives reloads and is yours alone.",
            &format!(
                r#"<p id="visits-line">You have viewed this page <b id="visits">{visits}</b> time{}.{not_counted}</p>"#,
                plural(visits)
            ),
        ),
        section(
            "flash",
            "Flash message",
            "A value removed as it is read: it shows on the next page and then is gone.",
            r#"<form method="post" action="/flash"><input id="message" name="message" placeholder="Saved!" required>
<button id="send-flash" type="submit">Show once</button></form>"#,
        ),
        section(
            "cart",
            "Cart",
            "Any serde type can be stored: the cart is a Vec<String> that grows with each add, \
             and checking out removes it.",
            &format!(
                r#"<p><span id="count">{count}</span> in your cart</p><ul id="cart">{items}</ul>
<form method="post" action="/cart"><input id="item" name="item" placeholder="apple" required>
<button id="add" type="submit">Add</button></form>
<form method="post" action="/checkout"><button id="checkout" type="submit">Check out</button></form>"#,
                count = cart.len(),
            ),
        ),
        section(
            "login",
            "Log in and out",
            "Logging in gives the session a new key and keeps its data, so a key someone planted \
             before the login is worthless after it; logging out throws both away.",
            &format!(r#"<p id="key">{key_now}{key_before}</p>{account}"#),
        ),
        section(
            "lifetime",
            "Session lifetime",
            "Each session can have its own lifetime: until the browser closes (a cookie without \
             Max-Age) or a number of seconds.",
            &format!(
                r#"<p id="lifetime">This session lasts {lifetime}.</p>
<form method="post" action="/expiry"><input type="hidden" name="seconds" value="0">
<button id="browser-close" type="submit">End at browser close</button></form>
<form method="post" action="/expiry"><input type="hidden" name="seconds" value="1209600">
<button id="two-weeks" type="submit">Remember me for two weeks</button></form>"#
            ),
        ),
        section(
            "sessions",
            "Your sessions",
            "The store keeps an index of sessions by user, so a user's sessions can be listed \
             and all ended at once, on every server sharing the store.",
            &your_sessions(listed),
        ),
        section(
            "live",
            "Live connections",
            "A WebSocket opened under a session closes the moment the session ends, on whichever \
             server ended it: log out everywhere, or revoke it from the admin page. Every \
             session event (created, login, logout, revoked …) is logged and fed to the admin \
             page.",
            r#"<p><a id="live-link" href="/live">Open the live page</a> (log in first).</p>"#,
        ),
    ];
    let body = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cloakroom demo</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{STYLE}</style></head>
<body>
<h1>cloakroom demo</h1>
<p class="intro">Each part below shows one thing a session does: try it, then read the lines of
this demo's handlers behind it. A form posts, changes the session and redirects back here.</p>
<p id="warning"><b>A demo, not an app:</b> its login is passwordless (anyone can sign in under
any name and see that name's sessions). Keep it on your own machine; do not expose it.</p>
{flash_html}
<main>{parts}</main>
<footer><p>Operators: the <a id="admin-link" href="/admin/sessions">admin page</a> lists every
session and revokes them ({admin_note}). Scripts: the same parts as JSON under
<code>/api/</code>.</p></footer>
</body></html>"#,
        parts = parts.concat(),
    );
    Ok(Html(body).into_response())
}

/// The page's style sheet: readable type, each part a card, code in a shaded box.
const STYLE: &str = "\
body{font-family:system-ui,sans-serif;font-size:15px;max-width:62rem;margin:1rem auto;\
padding:0 1rem;color:#222;line-height:1.35}\
p{margin:.4rem 0}ul{margin:.3rem 0;padding-left:1.2rem}\
#sessions li{white-space:nowrap;overflow:hidden;text-overflow:ellipsis}\
h1{margin:.2rem 0}h2{font-size:1.1rem;margin:0 0 .3rem}\
main{display:grid;grid-template-columns:repeat(auto-fit,minmax(24rem,1fr));gap:.8rem}\
section{border:1px solid #ddd;border-radius:6px;padding:.6rem .8rem}\
.what{color:#555;font-size:.93em}.note{color:#777;font-size:.85rem}\
.flash{background:#e7f6e7;border:1px solid #9c9;padding:.5rem;border-radius:4px}\
#warning{background:#fff6e0;border:1px solid #eb5;padding:.5rem;border-radius:4px}\
form{display:inline-block;margin:.2rem .4rem .2rem 0}\
pre{background:#f5f6f8;border-radius:4px;padding:.5rem;margin:.6rem 0 0;\
white-space:pre-wrap;font-size:.75rem}\
footer{margin-top:1rem;color:#555}";

#[cfg(test)]
mod tests {
    use super::{count, snippet};

    #[test]
    fn every_part_shows_the_handler_lines_behind_it() {
        for (part, line) in [
            ("visits", "VISITS.update(&session, |n| *n += 1)?"),
            ("flash", "FLASH.remove(&session)?"),
            ("cart", "CART.remove(&session)?;"),
            ("login", "session.flush()?;"),
            (
                "lifetime",
                "session.set_expiry(Expiry::seconds(s.seconds))?;",
            ),
            ("sessions", "sessions.revoke_user(&user).await?;"),
            ("live", "let ended = session.ended();"),
            ("live", "let mut events = sessions.events();"),
        ] {
            let code = snippet(part);
            assert!(
                code.contains(line),
                "the {part} snippet lacks {line:?}:\n{code}"
            );
            assert!(!code.contains("snippet"), "markers stay out: {code}");
        }
    }

    #[test]
    fn a_snippet_is_cut_at_its_markers_and_dedented() {
        let flash = snippet("flash");
        assert_eq!(
            flash.lines().collect::<Vec<_>>(),
            [
                "// POST /flash",
                "FLASH.insert(&session, m.message)?;",
                "// GET /: remove() reads it and deletes it: shown once",
                "let flash = FLASH.remove(&session)?;",
            ],
        );
        assert_eq!(snippet("no-such-part"), "");
    }

    #[test]
    fn counts_say_one_time_and_two_times() {
        assert_eq!(count(0, "time"), "0 times");
        assert_eq!(count(1, "time"), "1 time");
        assert_eq!(count(2, "time"), "2 times");
    }
}
