//! actix-web servers: bare, actix-session with its cookie store and its Redis store, and
//! cloakroom's actix-web adapter on each engine (`cloakroom-actix-…`).

use actix_session::config::PersistentSession;
use actix_session::storage::{CookieSessionStore, RedisSessionStore};
use actix_session::{Session, SessionMiddleware};
use actix_web::cookie::{time::Duration, Key};
use actix_web::http::header::{COOKIE, SET_COOKIE};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

use super::{bare, stats_json, Prefill, Result, ServeArgs, SESSION_SECONDS};

async fn bare_visits(req: HttpRequest) -> HttpResponse {
    let id = bare::visitor(req.headers().get(COOKIE).map(|v| v.as_bytes()));
    let (n, cookie) = bare::visit(id);
    let mut resp = HttpResponse::Ok();
    if let Some(c) = cookie {
        resp.insert_header((SET_COOKIE, c));
    }
    resp.body(n.to_string())
}

async fn bare_read(req: HttpRequest) -> String {
    let id = bare::visitor(req.headers().get(COOKIE).map(|v| v.as_bytes()));
    bare::read(id).to_string()
}

async fn visits(session: Session) -> actix_web::Result<String> {
    let n: u64 = session.get("visits")?.unwrap_or(0);
    session.insert("visits", n + 1)?;
    Ok((n + 1).to_string())
}

async fn read(session: Session) -> actix_web::Result<String> {
    let n: u64 = session.get("visits")?.unwrap_or(0);
    Ok(n.to_string())
}

/// cloakroom on actix-web: the same handlers as its axum servers (`cloak.rs`).
mod cloakroom_handlers {
    use actix_web::HttpRequest;
    use cloakroom::{Error, Session};

    pub async fn visits(session: Session) -> Result<String, Error> {
        Ok(session.update("visits", |n: &mut u64| *n += 1)?.to_string())
    }

    pub async fn read(session: Session) -> Result<String, Error> {
        Ok(session.get_or::<u64>("visits", 0)?.to_string())
    }

    pub async fn slow(session: Session, req: HttpRequest) -> Result<String, Error> {
        let visits = session.get_or::<u64>("visits", 0)?;
        tokio::time::sleep(super::super::slow_for(Some(req.query_string()))).await;
        Ok(visits.to_string())
    }
}

async fn stats() -> String {
    stats_json()
}

fn key() -> Key {
    // A fixed key: the benchmark needs no secrecy, and a restart keeps cookies readable.
    Key::from(&[7u8; 64])
}

fn middleware<S: actix_session::storage::SessionStore>(store: S) -> SessionMiddleware<S> {
    SessionMiddleware::builder(store, key())
        .cookie_secure(false)
        .session_lifecycle(
            PersistentSession::default().session_ttl(Duration::seconds(SESSION_SECONDS as i64)),
        )
        .build()
}

/// Runs one of the actix-web servers on an actix system (one worker per available core).
pub fn serve(args: ServeArgs) -> Result {
    let prefill = Prefill::start();
    let addr = ("127.0.0.1", args.port);
    actix_web::rt::System::new().block_on(async move {
        let mut prefilled = 0;
        let server = match args.server.as_str() {
            "bare-actix" => HttpServer::new(|| {
                App::new()
                    .route("/visits", web::get().to(bare_visits))
                    .route("/read", web::get().to(bare_read))
                    .route("/__stats", web::get().to(stats))
            })
            .bind(addr)?
            .run(),
            "actix-session-cookie" => HttpServer::new(|| {
                App::new()
                    .wrap(middleware(CookieSessionStore::default()))
                    .route("/visits", web::get().to(visits))
                    .route("/read", web::get().to(read))
                    .route("/__stats", web::get().to(stats))
            })
            .bind(addr)?
            .run(),
            "actix-session-redis" => {
                let store = RedisSessionStore::new(args.redis_url())
                    .await
                    .map_err(|e| format!("redis: {e}"))?;
                HttpServer::new(move || {
                    App::new()
                        .wrap(middleware(store.clone()))
                        .route("/visits", web::get().to(visits))
                        .route("/read", web::get().to(read))
                        .route("/__stats", web::get().to(stats))
                })
                .bind(addr)?
                .run()
            }
            name if name.starts_with("cloakroom-actix-") => {
                let (sessions, stored) = super::cloak::sessions(&args).await?;
                prefilled = stored;
                HttpServer::new(move || {
                    App::new()
                        .wrap(cloakroom_actix::SessionMiddleware::new(sessions.clone()))
                        .route("/visits", web::get().to(cloakroom_handlers::visits))
                        .route("/read", web::get().to(cloakroom_handlers::read))
                        .route("/slow", web::get().to(cloakroom_handlers::slow))
                        .route("/__stats", web::get().to(stats))
                })
                .bind(addr)?
                .run()
            }
            other => return Err(format!("no actix server named `{other}`").into()),
        };
        prefill.ready(prefilled);
        server.await?;
        Ok(())
    })
}
