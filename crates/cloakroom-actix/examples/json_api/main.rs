//! The HTTP suite's JSON API (visits, flash, cart, login, logout, expiry) on actix-web, with the
//! engine the settings name.
//!
//! ```text
//! cargo run -p cloakroom-actix --example json_api                  # in-process cache
//! cargo run -p cloakroom-actix --example json_api -- cloakroom.toml # any engine
//! curl -c jar -b jar http://127.0.0.1:3000/api/visits
//! ```

mod routes;

use actix_web::{App, HttpServer};
use cloakroom::{Backing, Sessions, Settings};
use cloakroom_actix::SessionMiddleware;

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let settings = match std::env::args().nth(1) {
        Some(path) => Settings::from_toml_file(path)?,
        None => Settings::from_toml_str(r#"engine = "cache""#)?,
    };
    let backing = cloakroom::engines::open(&settings).await?;
    if let Backing::Server(server) = &backing {
        if let Some(migrate) = &server.migrate {
            migrate.migrate().await?;
        }
    }
    let sessions = Sessions::from_backing(backing, settings)?;
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    println!("json_api on http://{addr} ({})", sessions.engine());
    HttpServer::new(move || {
        App::new()
            .wrap(SessionMiddleware::new(sessions.clone()))
            .configure(routes::routes)
    })
    .bind(addr)?
    .run()
    .await?;
    Ok(())
}
