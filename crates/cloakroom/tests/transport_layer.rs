//! `cloakroom::layer::TransportLayer` over real HTTP: one app whose browser pages keep the
//! cookie and whose API takes the key in a header, per route; and `header_name`.

use axum::routing::get;
use axum::Router;
use cloakroom::engines::memory::MemoryStore;
use cloakroom::layer::TransportLayer;
use cloakroom::{Session, SessionLayer, Sessions, Settings, Transport};

async fn count(session: Session) -> Result<String, cloakroom::Error> {
    Ok(session.update("n", |n: &mut u64| *n += 1)?.to_string())
}

/// The app: `/web/count` on the settings' transport, `/api/count` on the header.
async fn serve(settings: Settings) -> String {
    let sessions = Sessions::new(MemoryStore::new(1000), settings).unwrap();
    let api = Router::new()
        .route("/api/count", get(count))
        .route_layer(TransportLayer::new(Transport::Header));
    let app = Router::new()
        .route("/web/count", get(count))
        .merge(api)
        .layer(SessionLayer::new(sessions));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

struct Seen {
    body: String,
    header: Option<String>,
    cookie: Option<String>,
    vary: Vec<String>,
}

async fn fetch(url: String, cookie: Option<&str>, header: Option<(&str, &str)>) -> Seen {
    let mut request = reqwest::Client::new().get(url);
    if let Some(key) = cookie {
        request = request.header("cookie", format!("sessionid={key}"));
    }
    if let Some((name, key)) = header {
        request = request.header(name, key);
    }
    let response = request.send().await.unwrap();
    let headers = response.headers().clone();
    let text = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    Seen {
        header: text("x-session-token").or_else(|| text("x-auth-key")),
        cookie: text("set-cookie").map(|c| {
            c.split(';')
                .next()
                .unwrap()
                .trim_start_matches("sessionid=")
                .to_owned()
        }),
        vary: headers
            .get_all("vary")
            .iter()
            .map(|v| v.to_str().unwrap().to_ascii_lowercase())
            .collect(),
        body: response.text().await.unwrap(),
    }
}

#[tokio::test]
async fn a_route_layer_takes_the_key_in_the_header_on_its_routes_only() {
    let base = serve(Settings::default()).await;
    let (web, api) = (format!("{base}/web/count"), format!("{base}/api/count"));

    let page = fetch(web.clone(), None, None).await;
    let cookie_key = page.cookie.expect("the page sets the cookie");
    assert_eq!(page.header, None, "a cookie route sent the key header");
    assert_eq!(page.vary, ["cookie"]);

    let call = fetch(api.clone(), None, None).await;
    let header_key = call.header.expect("the API sends the key header");
    assert_eq!(call.cookie, None, "a header route set a cookie");
    assert_eq!(call.vary, ["x-session-token"]);

    // Each route reads its own transport only.
    let by_cookie = fetch(api.clone(), Some(&cookie_key), None).await;
    assert_eq!(by_cookie.body, "1", "the API read the cookie");
    let by_header = fetch(web.clone(), None, Some(("x-session-token", &header_key))).await;
    assert_eq!(by_header.body, "1", "the page read the header");

    // A key is a key: the page's session is reachable from the API by its key in the header.
    let same = fetch(api, None, Some(("x-session-token", &cookie_key))).await;
    assert_eq!(same.body, "2");
    assert_eq!(same.header.as_deref(), Some(cookie_key.as_str()));
}

#[tokio::test]
async fn header_name_names_the_key_header() {
    let settings = Settings::default()
        .with_transport(Transport::Header)
        .with_header_name("X-Auth-Key");
    let base = serve(settings).await;
    let first = fetch(format!("{base}/web/count"), None, None).await;
    let key = first.header.expect("the key in X-Auth-Key");
    assert_eq!(first.vary, ["x-auth-key"]);
    let ignored = fetch(
        format!("{base}/web/count"),
        None,
        Some(("x-session-token", &key)),
    )
    .await;
    assert_eq!(
        ignored.body, "1",
        "the default header name still carried the key"
    );
    let again = fetch(
        format!("{base}/web/count"),
        None,
        Some(("X-Auth-Key", &key)),
    )
    .await;
    assert_eq!(again.body, "2");
}
