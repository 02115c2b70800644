//! Typed session data: a `TypedKey` names a key and the type of its value once, and a whole
//! struct (here a shopping cart) is stored as one value with serde.
//!
//! ```text
//! cargo run -p cloakroom --example typed
//! curl -c jar -b jar -X POST 'http://127.0.0.1:3000/cart?item=apple'
//! curl -c jar -b jar http://127.0.0.1:3000/cart
//! ```

use axum::extract::Query;
use axum::routing::get;
use axum::{Json, Router};
use cloakroom::engines::memory::MemoryStore;
use cloakroom::{Session, SessionLayer, Sessions, Settings, TypedKey};
use serde::{Deserialize, Serialize};

/// What the cart holds: stored as JSON, `{"items": [...], "updated": N}`.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct Cart {
    /// The items, in the order they were added.
    pub items: Vec<String>,
    /// How many times the cart changed.
    pub updated: u32,
}

/// The cart's key: every handler that uses it agrees on its name and type, checked by the
/// compiler. A value of another shape under that key (written by other code) is an
/// `Error::Type`, not a panic.
const CART: TypedKey<Cart> = TypedKey::new("cart");

/// The app: GET shows the cart, POST `?item=NAME` adds to it.
pub fn app() -> Result<Router, cloakroom::ConfigError> {
    let sessions = Sessions::new(MemoryStore::default(), Settings::default())?;
    Ok(Router::new()
        .route("/cart", get(show).post(add))
        .layer(SessionLayer::new(sessions)))
}

async fn show(session: Session) -> Result<Json<Cart>, cloakroom::Error> {
    Ok(Json(CART.get(&session)?.unwrap_or_default()))
}

#[derive(Deserialize)]
struct Add {
    item: String,
}

async fn add(session: Session, Query(add): Query<Add>) -> Result<Json<Cart>, cloakroom::Error> {
    // The closure may run again if another request of this visitor saved the cart meanwhile:
    // the change is replayed on the newer cart, so neither request's item is lost.
    let cart = CART.update(&session, move |cart| {
        cart.items.push(add.item.clone());
        cart.updated += 1;
    })?;
    Ok(Json(cart))
}

#[tokio::main]
async fn main() -> Result<(), cloakroom::BoxError> {
    serve("typed", "/cart", app()?).await
}

include!("support/serve.rs");
