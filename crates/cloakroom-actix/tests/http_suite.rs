//! The test kit's HTTP suite (`cloakroom_testkit::http_suite!`) on the actix-web adapter: the
//! suite's JSON contract served by actix-web (`examples/json_api/routes.rs`) under
//! `SessionMiddleware`, on every engine the axum run has (`cloakroom-cli`'s
//! `tests/http_suite.rs`), over real HTTP against each engine's real server. One module per
//! engine; run one with `cargo nextest run -p cloakroom-actix --test http_suite postgres::`.

mod support;

use std::sync::OnceLock;

use cloakroom_testkit::http::{AppUnderTest, Setup};
use support::contract_app;

/// The contract app on a server database: one table of its own per test binary, migrated by
/// the first app (keys are random, so the tests of one run can share it).
fn on_database(url: String, table: &'static OnceLock<String>, setup: &Setup) -> AppUnderTest {
    let table =
        table.get_or_init(|| cloakroom_testkit::servers::unique("t_actix_suite").replace('-', "_"));
    contract_app(
        &format!("database_url = \"{url}\"\ntable = \"{table}\""),
        setup,
    )
}

mod sqlite {
    cloakroom_testkit::http_suite!(|setup| async move {
        super::contract_app(
            r#"database_url = "sqlite://{dir}/sessions.sqlite3?mode=rwc""#,
            &setup,
        )
    });
}

mod in_process_cache {
    cloakroom_testkit::http_suite!(|setup| async move {
        super::contract_app(r#"engine = "cache""#, &setup)
    });
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
        super::contract_app(
            &format!("engine = \"cache\"\ncache_url = \"{url}\""),
            &setup,
        )
    });
}

mod redis_cluster {
    cloakroom_testkit::http_suite!(|setup| async move {
        // One cluster of our own for the whole test binary, stopped when the binary exits.
        let url = super::support::redis_cluster::shared().url();
        super::contract_app(
            &format!("engine = \"cache\"\ncache_url = \"{url}\""),
            &setup,
        )
    });
}

mod redis_sentinel {
    cloakroom_testkit::http_suite!(|setup| async move {
        // A primary, a replica and three sentinels of our own for the whole test binary; the
        // app knows only the sentinels.
        let url = tokio::task::spawn_blocking(|| super::support::redis_sentinel::shared().url())
            .await
            .expect("the sentinels start");
        super::contract_app(
            &format!("engine = \"cache\"\ncache_url = \"{url}\""),
            &setup,
        )
    });
}

mod sqlite_encrypted {
    cloakroom_testkit::http_suite!(|setup| async move {
        super::contract_app(
            "database_url = \"sqlite://{dir}/sessions.sqlite3?mode=rwc\"\n\
             encrypt_data = true\nsecret_key = \"http-suite-secret\"",
            &setup,
        )
    });
}

mod redis_encrypted {
    cloakroom_testkit::http_suite!(|setup| async move {
        let url = super::support::redis_url();
        super::contract_app(
            &format!(
                "engine = \"cache\"\ncache_url = \"{url}\"\n\
                 encrypt_data = true\nsecret_key = \"http-suite-secret\""
            ),
            &setup,
        )
    });
}

mod cached_db_on_sqlite_and_redis {
    cloakroom_testkit::http_suite!(|setup| async move {
        let url = super::support::redis_url();
        super::contract_app(
            &format!(
                "engine = \"cached_db\"\n\
                 database_url = \"sqlite://{{dir}}/sessions.sqlite3?mode=rwc\"\n\
                 cache_url = \"{url}\""
            ),
            &setup,
        )
    });
}

mod cached_db_on_sqlite_and_in_process_cache {
    cloakroom_testkit::http_suite!(|setup| async move {
        super::contract_app(
            "engine = \"cached_db\"\n\
             database_url = \"sqlite://{dir}/sessions.sqlite3?mode=rwc\"",
            &setup,
        )
    });
}

mod file {
    cloakroom_testkit::http_suite!(|setup| async move {
        super::contract_app("engine = \"file\"\nfile_path = \"{dir}\"", &setup)
    });
}

mod signed_cookies {
    cloakroom_testkit::http_suite!(
        |setup| async move {
            super::contract_app(
                "engine = \"signed_cookies\"\nsecret_key = \"http-suite-secret\"",
                &setup,
            )
        },
        without(server_side)
    );
}

mod private_cookies {
    cloakroom_testkit::http_suite!(
        |setup| async move {
            super::contract_app(
                "engine = \"private_cookies\"\nsecret_key = \"http-suite-secret\"",
                &setup,
            )
        },
        without(server_side)
    );
}
