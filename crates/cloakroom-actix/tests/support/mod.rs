//! Serves an actix-web app under the session middleware on a free loopback port, in a thread of
//! its own (actix-web runs on its own system), and stops it when dropped.

#![allow(dead_code)]

#[path = "../../examples/json_api/routes.rs"]
pub mod contract;

use std::net::TcpListener;
use std::sync::mpsc;
use std::thread::JoinHandle;

use actix_web::dev::ServerHandle;
use actix_web::middleware::Condition;
use actix_web::{web, App, HttpServer};
use cloakroom::{Backing, Sessions, Settings};
use cloakroom_actix::SessionMiddleware;
use cloakroom_testkit::http::{AppUnderTest, Setup};

#[allow(unused_imports)]
pub use cloakroom_testkit::servers::{redis_cluster, redis_sentinel, Scratch};

/// A running server: its base URL; stopped (and its thread joined) when dropped.
pub struct Server {
    url: String,
    handle: ServerHandle,
    thread: Option<JoinHandle<()>>,
    /// Files the server's engine keeps (SQLite, sessions files), removed after it stops.
    _scratch: Option<Scratch>,
}

impl Server {
    /// The base URL + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Sends the stop at once; the future only waits for it, which joining does instead.
        drop(self.handle.stop(false));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// How a test's app wraps its routes: the session middleware it is given (with whatever the
/// test adds to it) around `routes`.
pub type Routes = fn(&mut web::ServiceConfig);

/// Opens the engine `settings` name (migrating its tables), and serves `routes` under
/// `middleware(sessions)` (under no session middleware at all when `None`) on a free loopback
/// port, in a thread with its own actix system.
pub fn serve(
    settings: Settings,
    middleware: Option<fn(Sessions) -> SessionMiddleware>,
    routes: Routes,
    scratch: Option<Scratch>,
) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    let addr = listener.local_addr().expect("the bound address");
    let (started, handle) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let sessions = open(settings).await;
            let server = HttpServer::new(move || {
                let wrap = middleware.unwrap_or(SessionMiddleware::new);
                App::new()
                    .wrap(Condition::new(middleware.is_some(), wrap(sessions.clone())))
                    .configure(routes)
            })
            .workers(1)
            .disable_signals()
            .listen(listener)
            .expect("actix-web takes the listener")
            .run();
            let _ = started.send(server.handle());
            let _ = server.await;
        });
    });
    let handle = handle
        .recv()
        .expect("the server starts (its engine opens and migrates)");
    Server {
        url: format!("http://{addr}"),
        handle,
        thread: Some(thread),
        _scratch: scratch,
    }
}

/// The engine `settings` name, opened and migrated, as [`Sessions`].
pub async fn open(settings: Settings) -> Sessions {
    let backing = cloakroom::engines::open(&settings)
        .await
        .unwrap_or_else(|e| panic!("the engine opens (is its server running?): {e}"));
    if let Backing::Server(server) = &backing {
        if let Some(migrate) = &server.migrate {
            // Tests of one binary share a server table: one migration at a time (CREATE TABLE
            // IF NOT EXISTS races on PostgreSQL), each harmless after the first.
            static MIGRATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
            let _one = MIGRATING.lock().await;
            migrate.migrate().await.expect("the tables migrate");
        }
    }
    Sessions::from_backing(backing, settings).expect("the settings are valid")
}

/// Settings from TOML with the HTTP suite's `setup` applied.
pub fn settings(toml: &str, setup: &Setup) -> Settings {
    let mut settings = Settings::from_toml_str(toml).expect("the test's settings parse");
    settings.session.save_every_request = setup.save_every_request;
    settings.session.expire_at_browser_close = setup.expire_at_browser_close;
    if let Some(age) = setup.cookie_age {
        settings.session.cookie_age = age;
    }
    settings.session.transport = setup.transport;
    settings
}

/// The contract app (the HTTP suite's routes) on the engine `toml` names, with `setup`
/// applied; `{dir}` in `toml` is a scratch folder of this app's own.
pub fn contract_app(toml: &str, setup: &Setup) -> AppUnderTest {
    let scratch = Scratch::new("actix");
    let toml = toml.replace("{dir}", &scratch.display().to_string());
    let server = serve(
        settings(&toml, setup),
        Some(SessionMiddleware::new),
        contract::routes,
        Some(scratch),
    );
    let url = server.url("");
    AppUnderTest::new(url, server)
}

/// The PostgreSQL the tests use (`CLOAKROOM_TEST_POSTGRES_URL`).
pub fn postgres_url() -> String {
    std::env::var("CLOAKROOM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The MariaDB/MySQL the tests use (`CLOAKROOM_TEST_MYSQL_URL`).
pub fn mysql_url() -> String {
    std::env::var("CLOAKROOM_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned())
}

/// The Redis the tests use (`CLOAKROOM_TEST_REDIS_URL`).
pub fn redis_url() -> String {
    std::env::var("CLOAKROOM_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned())
}
