//! `save_keeps_expiry`: a save that changes the data keeps the stored expiry until
//! `refresh_threshold` of the session's age has passed, so that on PostgreSQL the indexed
//! `expire_date` stays and the save can be a HOT update. Seen as a user sees it: the cookie's
//! `Max-Age` on the in-process cache with a settable clock, and the table's own statistics on
//! the machine's PostgreSQL (`CLOAKROOM_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`).

use std::time::Duration;

use cloakroom::clock::ManualClock;
use cloakroom::engines::memory::MemoryStore;
use cloakroom::{CookieAction, Sessions, Settings};

const AGE: u64 = 1000;

/// A session created now; returns its key.
async fn create(sessions: &Sessions) -> String {
    let lazy = sessions.start(None);
    lazy.load().await.unwrap().insert("visits", 0).unwrap();
    let CookieAction::Set { value, .. } = lazy.commit(200).await.unwrap().cookie else {
        panic!("a new session sends its cookie");
    };
    value
}

/// One request that changes the data (and, when `shorter` is set, asks for a shorter expiry);
/// returns the cookie's `Max-Age`.
async fn save(sessions: &Sessions, key: &str, shorter: Option<u64>) -> Option<i64> {
    let lazy = sessions.start(Some(key));
    let session = lazy.load().await.unwrap();
    session.update("visits", |n: &mut i64| *n += 1).unwrap();
    if let Some(secs) = shorter {
        session
            .set_expiry(cloakroom::Expiry::AfterEachSave(Duration::from_secs(secs)))
            .unwrap();
    }
    match lazy.commit(200).await.unwrap().cookie {
        CookieAction::Set { max_age, .. } => max_age,
        other => panic!("a save sends the cookie, got {other:?}"),
    }
}

fn settings(keep: bool) -> Settings {
    Settings::default()
        .with_cookie_age(AGE)
        .with_save_keeps_expiry(keep)
}

#[tokio::test]
async fn saves_keep_the_stored_expiry_until_the_threshold_has_passed() {
    let clock = ManualClock::starting_now();
    let sessions = Sessions::new(MemoryStore::default(), settings(true))
        .unwrap()
        .with_clock(clock.clone());
    let key = create(&sessions).await;

    // 10% and then 20% of the age later: the expiry stays where the create put it, and the
    // cookie counts down to it.
    clock.advance(Duration::from_secs(100));
    assert_eq!(save(&sessions, &key, None).await, Some(900));
    clock.advance(Duration::from_secs(100));
    assert_eq!(save(&sessions, &key, None).await, Some(800));
    // Past 20% (the default refresh_threshold): the save moves it to now + age, as Django.
    clock.advance(Duration::from_secs(1));
    assert_eq!(save(&sessions, &key, None).await, Some(1000));
    // A shorter expiry set by the handler applies at once.
    clock.advance(Duration::from_secs(10));
    assert_eq!(save(&sessions, &key, Some(60)).await, Some(60));

    // The data of every save is there.
    let lazy = sessions.start(Some(&key));
    let visits = lazy.load().await.unwrap().get::<i64>("visits").unwrap();
    assert_eq!(visits, Some(4));
}

#[tokio::test]
async fn without_the_setting_every_save_moves_the_expiry_as_django() {
    let clock = ManualClock::starting_now();
    let sessions = Sessions::new(MemoryStore::default(), settings(false))
        .unwrap()
        .with_clock(clock.clone());
    let key = create(&sessions).await;
    for _ in 0..3 {
        clock.advance(Duration::from_secs(100));
        assert_eq!(save(&sessions, &key, None).await, Some(1000));
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use cloakroom::engines::postgres::PostgresStore;
    use sqlx::postgres::PgPool;

    const SAVES: i64 = 40;

    fn url() -> String {
        std::env::var("CLOAKROOM_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
    }

    /// `SAVES` saves one second apart of one session, in a table of their own made as Django
    /// makes it (with its `expire_date` index); returns the table's updates and HOT updates as
    /// PostgreSQL counts them, and how many distinct `expire_date`s the saves wrote.
    async fn run(keep: bool) -> (i64, i64, usize) {
        let url = url();
        let table = format!(
            "hot_{}_{}",
            std::process::id(),
            &cloakroom::key::generate().unwrap()[..8]
        );
        let store = PostgresStore::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {url} is unreachable: {e}"))
            .with_table(&table)
            .unwrap();
        store.migrate().await.unwrap();
        let db = PgPool::connect(&url).await.unwrap();
        let clock = ManualClock::starting_now();
        let sessions = Sessions::new(store, settings(keep))
            .unwrap()
            .with_clock(clock.clone());
        let key = create(&sessions).await;
        let mut expiries = std::collections::BTreeSet::new();
        for _ in 0..SAVES {
            clock.advance(Duration::from_secs(1));
            save(&sessions, &key, None).await;
            let (expire,): (time::OffsetDateTime,) = sqlx::query_as(&format!(
                r#"SELECT expire_date FROM "{table}" WHERE session_key = $1"#
            ))
            .bind(&key)
            .fetch_one(&db)
            .await
            .unwrap();
            expiries.insert(expire);
        }
        drop(sessions);
        // Backends report their counts to the statistics at most once a second (and an idle
        // one within ten): wait until every update is counted.
        let mut counts = (0, 0);
        for _ in 0..150 {
            counts = sqlx::query_as(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = $1",
            )
            .bind(&table)
            .fetch_optional(&db)
            .await
            .unwrap()
            .unwrap_or((0, 0));
            if counts.0 >= SAVES {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        sqlx::query(&format!(r#"DROP TABLE IF EXISTS "{table}" CASCADE"#))
            .execute(&db)
            .await
            .unwrap();
        eprintln!(
            "save_keeps_expiry = {keep}: {} updates, {} HOT, {} distinct expire_date",
            counts.0,
            counts.1,
            expiries.len()
        );
        (counts.0, counts.1, expiries.len())
    }

    #[tokio::test]
    async fn saves_that_keep_the_expiry_are_hot_updates() {
        let (updates, hot, expiries) = run(true).await;
        assert!(updates >= SAVES, "{updates} updates counted of {SAVES}");
        assert_eq!(expiries, 1, "the saves moved expire_date");
        assert!(
            hot * 10 >= updates * 9,
            "{hot} of {updates} updates were HOT with the expiry kept"
        );
    }

    #[tokio::test]
    async fn saves_that_move_the_expiry_are_not_hot() {
        let (updates, hot, expiries) = run(false).await;
        assert!(updates >= SAVES, "{updates} updates counted of {SAVES}");
        assert_eq!(expiries, usize::try_from(SAVES).unwrap());
        assert_eq!(
            hot, 0,
            "{hot} of {updates} updates were HOT with the index changing"
        );
    }
}
