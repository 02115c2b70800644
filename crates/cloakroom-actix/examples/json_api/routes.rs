//! The JSON contract of cloakroom's HTTP suite (the table in `cloakroom_testkit::http`), as
//! `cloakroom demo` serves it with axum, here on actix-web. `tests/http_suite.rs` runs the
//! suite on these routes for every engine.

use actix_web::{web, HttpResponse};
use cloakroom::{Expiry, Session, TypedKey};
use serde::Deserialize;
use serde_json::{json, Value};

const VISITS: TypedKey<u64> = TypedKey::new("visits");
const FLASH: TypedKey<String> = TypedKey::new("flash");
const CART: TypedKey<Vec<String>> = TypedKey::new("cart");
const USERNAME: TypedKey<String> = TypedKey::new("username");

type Answer = Result<web::Json<Value>, cloakroom::Error>;

/// The contract's routes; wrap them in a `SessionMiddleware`.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/api/visits", web::get().to(visits))
        .service(
            web::resource("/api/flash")
                .route(web::get().to(flash_get))
                .route(web::post().to(flash_post)),
        )
        .service(
            web::resource("/api/cart")
                .route(web::get().to(cart_get))
                .route(web::post().to(cart_post)),
        )
        .route("/api/checkout", web::post().to(checkout))
        .route("/api/login", web::post().to(login))
        .route("/api/whoami", web::get().to(whoami))
        .route("/api/logout", web::post().to(logout))
        .route("/api/expiry", web::post().to(expiry))
        .route("/health", web::get().to(|| async { "ok" }));
}

fn cart(items: Vec<String>) -> Answer {
    Ok(web::Json(json!({ "count": items.len(), "items": items })))
}

async fn visits(session: Session) -> Answer {
    let visits = VISITS.update(&session, |n| *n += 1)?;
    Ok(web::Json(json!({ "visits": visits })))
}

#[derive(Deserialize)]
struct Message {
    message: String,
}

async fn flash_post(
    session: Session,
    m: web::Json<Message>,
) -> Result<HttpResponse, cloakroom::Error> {
    FLASH.insert(&session, m.into_inner().message)?;
    Ok(HttpResponse::NoContent().finish())
}

async fn flash_get(session: Session) -> Answer {
    Ok(web::Json(json!({ "message": FLASH.remove(&session)? })))
}

#[derive(Deserialize)]
struct Item {
    item: String,
}

async fn cart_post(session: Session, item: web::Json<Item>) -> Answer {
    let item = item.into_inner().item;
    cart(CART.update(&session, move |cart| cart.push(item.clone()))?)
}

async fn cart_get(session: Session) -> Answer {
    cart(CART.get(&session)?.unwrap_or_default())
}

async fn checkout(session: Session) -> Answer {
    CART.remove(&session)?;
    cart(Vec::new())
}

#[derive(Deserialize)]
struct Login {
    username: String,
}

/// A new key, as Django's `login` (`login_as` cycles it and links the user's index), then the
/// name.
async fn login(session: Session, login: web::Json<Login>) -> Answer {
    let username = login.into_inner().username;
    session.login_as(&username, "json_api", "")?;
    USERNAME.insert(&session, username.clone())?;
    Ok(web::Json(json!({ "username": username })))
}

async fn whoami(session: Session) -> Answer {
    Ok(web::Json(json!({ "username": USERNAME.get(&session)? })))
}

async fn logout(session: Session) -> Result<HttpResponse, cloakroom::Error> {
    session.flush()?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
struct Seconds {
    seconds: u64,
}

async fn expiry(session: Session, s: web::Json<Seconds>) -> Answer {
    session.set_expiry(Expiry::seconds(s.seconds))?;
    Ok(web::Json(json!({
        "expiry_age": session.expiry_age(),
        "expire_at_browser_close": session.expire_at_browser_close(),
    })))
}
