//! The test kit's HTTP suite (`cloakroom_testkit::http_suite!`) on the axum adapter: the real
//! `cloakroom demo` binary, whose JSON API is the suite's contract, on every engine over real
//! HTTP against each engine's real server. One module per engine; run one engine with
//! `cargo nextest run -p cloakroom-cli --test http_suite postgres::`.

mod support;

use std::sync::OnceLock;

use cloakroom_testkit::http::{AppUnderTest, Setup};
use support::Demo;

/// Starts `cloakroom demo` with the engine's `args` and the flags that apply `setup`.
fn demo(args: &[&str], setup: &Setup) -> AppUnderTest {
    let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    if setup.save_every_request {
        args.push("--save-every-request".to_owned());
    }
    if let Some(age) = setup.cookie_age {
        args.extend(["--cookie-age".to_owned(), age.to_string()]);
    }
    if setup.expire_at_browser_close {
        args.push("--expire-at-browser-close".to_owned());
    }
    args.extend(["--transport".to_owned(), setup.transport.to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let demo = Demo::start(&args);
    AppUnderTest::new(demo.url(""), demo)
}

/// The demo on a server database: one table of its own per test binary, migrated once (keys
/// are random, so the tests of one run can share it).
fn on_database(url: String, table: &'static OnceLock<String>, setup: &Setup) -> AppUnderTest {
    let table = table.get_or_init(|| {
        let table = support::unique_table("http_suite");
        support::migrate(&url, &table);
        table
    });
    demo(&["--database-url", &url, "--table", table], setup)
}

mod sqlite {
    cloakroom_testkit::http_suite!(|setup| async move { super::demo(&[], &setup) });
}

mod sqlite_encrypted {
    cloakroom_testkit::http_suite!(|setup| async move {
        super::demo(
            &["--encrypt-data", "--secret-key", "http-suite-secret"],
            &setup,
        )
    });
}

mod in_process_cache {
    cloakroom_testkit::http_suite!(
        |setup| async move { super::demo(&["--engine", "cache"], &setup) }
    );
}

mod postgres {
    static TABLE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    cloakroom_testkit::http_suite!(|setup| async move {
        super::on_database(super::support::postgres_url(), &TABLE, &setup)
    });
}

mod mysql {
    static TABLE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    cloakroom_testkit::http_suite!(|setup| async move {
        super::on_database(super::support::mysql_url(), &TABLE, &setup)
    });
}

mod redis {
    cloakroom_testkit::http_suite!(|setup| async move {
        let url = super::support::redis_url();
        super::demo(&["--engine", "cache", "--cache-url", &url], &setup)
    });
}

mod redis_encrypted {
    cloakroom_testkit::http_suite!(|setup| async move {
        let url = super::support::redis_url();
        super::demo(
            &[
                "--engine",
                "cache",
                "--cache-url",
                &url,
                "--encrypt-data",
                "--secret-key",
                "http-suite-secret",
            ],
            &setup,
        )
    });
}

mod redis_cluster {
    cloakroom_testkit::http_suite!(|setup| async move {
        // One cluster of our own for the whole test binary, stopped when the binary exits.
        let url = super::support::redis_cluster::shared().url();
        super::demo(&["--engine", "cache", "--cache-url", &url], &setup)
    });
}

mod redis_sentinel {
    cloakroom_testkit::http_suite!(|setup| async move {
        // A primary, a replica and three sentinels of our own for the whole test binary; the
        // demo knows only the sentinels.
        let url = tokio::task::spawn_blocking(|| super::support::redis_sentinel::shared().url())
            .await
            .unwrap();
        super::demo(&["--engine", "cache", "--cache-url", &url], &setup)
    });
}

mod cached_db_on_sqlite_and_redis {
    cloakroom_testkit::http_suite!(|setup| async move {
        let url = super::support::redis_url();
        super::demo(&["--engine", "cached_db", "--cache-url", &url], &setup)
    });
}

mod cached_db_on_sqlite_and_in_process_cache {
    cloakroom_testkit::http_suite!(|setup| async move {
        super::demo(&["--engine", "cached_db"], &setup)
    });
}

mod file {
    // The demo's own working folder, removed with it.
    cloakroom_testkit::http_suite!(|setup| async move {
        super::demo(&["--engine", "file", "--file-path", "."], &setup)
    });
}

mod signed_cookies {
    cloakroom_testkit::http_suite!(
        |setup| async move {
            super::demo(
                &[
                    "--engine",
                    "signed_cookies",
                    "--secret-key",
                    "http-suite-secret",
                ],
                &setup,
            )
        },
        without(server_side)
    );
}

mod private_cookies {
    cloakroom_testkit::http_suite!(
        |setup| async move {
            super::demo(
                &[
                    "--engine",
                    "private_cookies",
                    "--secret-key",
                    "http-suite-secret",
                ],
                &setup,
            )
        },
        without(server_side)
    );
}
