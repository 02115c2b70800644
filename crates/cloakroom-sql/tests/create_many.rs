//! `CreateMany` on the real PostgreSQL and MariaDB of the test machine: a batch lands whole,
//! and a batch that meets taken keys (live or expired rows) creates the others and overwrites
//! nothing, as `create` does one at a time.
#![cfg(all(feature = "postgres", feature = "mysql"))]

use cloakroom_core::store::{Created, Record, SessionStore};
use cloakroom_sql::mysql::MySqlStore;
use cloakroom_sql::postgres::PostgresStore;
use cloakroom_sql::sql::CreateMany;
use time::{Duration, OffsetDateTime};

fn url(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

/// A table of its own per run, so parallel runs never share rows.
fn table() -> String {
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
    format!("t_many_{}_{}", std::process::id(), nanos % 1_000_000_000)
}

fn record(data: &str, seconds: i64) -> Record {
    Record {
        data: data.as_bytes().to_vec().into(),
        expires_at: (OffsetDateTime::now_utc() + Duration::seconds(seconds))
            .replace_nanosecond(0)
            .unwrap(),
    }
}

async fn check<S: SessionStore + CreateMany>(store: S) {
    let now = OffsetDateTime::now_utc();
    // 1,200 sessions: more than one statement's worth.
    let first: Vec<(String, Record)> = (0..1_200)
        .map(|i| {
            (
                format!("key{i:029}"),
                record(&format!("{{\"n\":{i}}}"), 600),
            )
        })
        .collect();
    let outcomes = store.create_many(&first).await.unwrap();
    assert!(
        outcomes.iter().all(|o| *o == Created::Stored),
        "{outcomes:?}"
    );
    for (key, record) in [&first[0], &first[777], &first[1_199]] {
        assert_eq!(store.load(key, now).await.unwrap().as_ref(), Some(record));
    }

    // An expired row still holds its key.
    store
        .create("expired000000000000000000000000", &record("{}", -60))
        .await
        .unwrap();
    let second = vec![
        (
            "new0000000000000000000000000001".to_owned(),
            record("{\"new\":1}", 600),
        ),
        (first[5].0.clone(), record("{\"overwrite\":true}", 900)),
        (
            "expired000000000000000000000000".to_owned(),
            record("{\"x\":1}", 600),
        ),
        (
            "new0000000000000000000000000002".to_owned(),
            record("{\"new\":2}", 600),
        ),
    ];
    let outcomes = store.create_many(&second).await.unwrap();
    assert_eq!(
        outcomes,
        [
            Created::Stored,
            Created::Taken,
            Created::Taken,
            Created::Stored
        ]
    );
    assert_eq!(
        store.load(&first[5].0, now).await.unwrap(),
        Some(first[5].1.clone()),
        "not overwritten"
    );
    assert_eq!(
        store.load(&second[0].0, now).await.unwrap(),
        Some(second[0].1.clone())
    );
    assert_eq!(
        store.load(&second[3].0, now).await.unwrap(),
        Some(second[3].1.clone())
    );
    assert_eq!(
        store.load(&second[2].0, now).await.unwrap(),
        None,
        "the expired row stays expired"
    );
    assert!(store.create_many(&[]).await.unwrap().is_empty());
}

/// One test per server: connect, make a table of its own, run [`check`].
macro_rules! on_server {
    ($name:ident, $store:ty, $var:literal, $default:literal) => {
        #[tokio::test]
        async fn $name() {
            let store = <$store>::connect(&url($var, $default))
                .await
                .unwrap()
                .with_table(&table())
                .unwrap();
            store.migrate().await.unwrap();
            check(store).await;
        }
    };
}

on_server!(
    postgres_creates_many_and_overwrites_none,
    PostgresStore,
    "CLOAKROOM_TEST_POSTGRES_URL",
    "postgres://postgres@127.0.0.1:5432/test"
);
on_server!(
    mysql_creates_many_and_overwrites_none,
    MySqlStore,
    "CLOAKROOM_TEST_MYSQL_URL",
    "mysql://root@127.0.0.1:3306/test"
);
