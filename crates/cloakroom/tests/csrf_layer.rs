//! `cloakroom::csrf::CsrfLayer` over real HTTP (issue 14, point 8): the token lives in the
//! session under Django's `_csrftoken`; unsafe methods need it in `X-CSRFToken` and must not
//! come from another site; safe methods pass.

use axum::routing::{get, post};
use axum::Router;
use cloakroom::csrf::CsrfLayer;
use cloakroom::engines::memory::MemoryStore;
use cloakroom::keys::CSRF_SESSION_KEY;
use cloakroom::{Session, SessionLayer, Sessions, Settings};

async fn serve() -> String {
    let sessions = Sessions::new(MemoryStore::new(1000), Settings::default()).unwrap();
    let app = Router::new()
        .route(
            "/token",
            get(|s: Session| async move { cloakroom::csrf::token(&s).unwrap_or_default() }),
        )
        .route(
            "/stored",
            get(|s: Session| async move {
                s.get::<String>(CSRF_SESSION_KEY)
                    .ok()
                    .flatten()
                    .unwrap_or_default()
            }),
        )
        .route("/read", get(|| async { "read" }))
        .route("/change", post(|| async { "changed" }))
        .route("/echo", post(|body: String| async move { body }))
        .layer(CsrfLayer::new().with_trusted_origin("https://partner.example"))
        .layer(SessionLayer::new(sessions));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap()
}

#[tokio::test]
async fn csrf_layer_refuses_cross_site_and_tokenless_posts_and_accepts_the_token() {
    let base = serve().await;
    let browser = client();
    // Safe methods pass, token or not.
    let read = browser.get(format!("{base}/read")).send().await.unwrap();
    assert_eq!(read.status(), 200);

    let token = browser
        .get(format!("{base}/token"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(token.len(), 32, "{token:?}");
    // Kept in the session under Django's key, and stable.
    let stored = browser.get(format!("{base}/stored")).send().await.unwrap();
    assert_eq!(stored.text().await.unwrap(), token);
    let again = browser.get(format!("{base}/token")).send().await.unwrap();
    assert_eq!(again.text().await.unwrap(), token);

    let post = |extra: &[(&str, &str)]| {
        let mut request = browser.post(format!("{base}/change"));
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        request.send()
    };
    let own_origin = base.clone();
    for (what, headers, status) in [
        ("no token", vec![], 403),
        ("a wrong token", vec![("x-csrftoken", "x".repeat(32))], 403),
        (
            "cross-site, with the token",
            vec![
                ("x-csrftoken", token.clone()),
                ("origin", "https://evil.example".to_owned()),
            ],
            403,
        ),
        (
            "Sec-Fetch-Site: cross-site, with the token",
            vec![
                ("x-csrftoken", token.clone()),
                ("sec-fetch-site", "cross-site".to_owned()),
            ],
            403,
        ),
        (
            "Origin: null",
            vec![
                ("x-csrftoken", token.clone()),
                ("origin", "null".to_owned()),
            ],
            403,
        ),
        ("the token", vec![("x-csrftoken", token.clone())], 200),
        (
            "the token, same origin",
            vec![
                ("x-csrftoken", token.clone()),
                ("origin", own_origin.clone()),
                ("sec-fetch-site", "same-origin".to_owned()),
            ],
            200,
        ),
        (
            "the token, a trusted origin",
            vec![
                ("x-csrftoken", token.clone()),
                ("origin", "https://partner.example".to_owned()),
            ],
            200,
        ),
    ] {
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let reply = post(&pairs).await.unwrap();
        assert_eq!(reply.status(), status, "{what}");
        let body = reply.text().await.unwrap();
        if status == 403 {
            assert!(body.contains("CSRF"), "{what}: {body}");
        } else {
            assert_eq!(body, "changed", "{what}");
        }
    }

    // A plain HTML form carries the token in `csrfmiddlewaretoken`; the handler still gets
    // the whole body.
    let echo = format!("{base}/echo");
    let form = browser
        .post(&echo)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("item=apple&csrfmiddlewaretoken={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 200);
    assert_eq!(
        form.text().await.unwrap(),
        format!("item=apple&csrfmiddlewaretoken={token}")
    );
    let wrong = browser
        .post(&echo)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("item=apple&csrfmiddlewaretoken=nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);

    // Another visitor's token is not this one's.
    let other = client();
    let reply = other
        .post(format!("{base}/change"))
        .header("x-csrftoken", token)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 403);
}
