//! The demo's Prometheus endpoint: the core's counters move with real requests.

mod support;

use serde_json::json;
use support::{bare, migrate, postgres_url, send, unique_table, visitor, Demo};

/// The value of the sample `name{labels}` in a Prometheus text page, 0 when absent. `labels`
/// must all appear in the sample's label set (in any order).
fn sample(page: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
            if metric != name {
                return None;
            }
            let set = rest.trim_end_matches('}');
            let all = labels
                .iter()
                .all(|(k, v)| set.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
            all.then(|| value.parse::<f64>().unwrap())
        })
        .sum()
}

async fn metrics_page(demo: &Demo) -> String {
    let reply = send(bare().get(demo.url("/metrics"))).await;
    assert_eq!(reply.status, 200, "GET /metrics: {}", reply.body);
    reply.body
}

#[tokio::test]
async fn counters_move_with_requests_on_sqlite() {
    let demo = Demo::start(&[]);
    let client = visitor();
    let sqlite = [("engine", "sqlite")];

    // A first visit creates the session; two more load and save it; a logout deletes it.
    let first = send(client.get(demo.url("/api/visits"))).await;
    let key = first.new_key();
    for _ in 0..2 {
        let reply = send(client.get(demo.url("/api/visits"))).await;
        assert_eq!(reply.status, 200);
    }
    let reply = send(client.post(demo.url("/api/logout"))).await;
    assert_eq!(reply.status, 204);

    let page = metrics_page(&demo).await;
    let creates = sample(
        &page,
        "cloakroom_session_creates_total",
        &[("engine", "sqlite"), ("outcome", "stored")],
    );
    let hits = sample(
        &page,
        "cloakroom_session_loads_total",
        &[("engine", "sqlite"), ("outcome", "hit")],
    );
    let saves = sample(
        &page,
        "cloakroom_session_saves_total",
        &[
            ("engine", "sqlite"),
            ("kind", "update"),
            ("outcome", "stored"),
        ],
    );
    let deletes = sample(&page, "cloakroom_session_deletes_total", &sqlite);
    assert_eq!(creates, 1.0, "one session created:\n{page}");
    assert_eq!(hits, 3.0, "three loads found the session:\n{page}");
    assert_eq!(saves, 2.0, "two visits saved the session:\n{page}");
    assert_eq!(deletes, 1.0, "the logout deleted it:\n{page}");
    let timed = sample(
        &page,
        "cloakroom_store_duration_seconds_count",
        &[("engine", "sqlite"), ("operation", "load")],
    );
    assert_eq!(timed, 3.0, "each load is timed:\n{page}");

    // The counters keep moving.
    send(
        client
            .post(demo.url("/api/cart"))
            .json(&json!({ "item": "socks" })),
    )
    .await;
    let page = metrics_page(&demo).await;
    assert_eq!(
        sample(
            &page,
            "cloakroom_session_creates_total",
            &[("engine", "sqlite"), ("outcome", "stored")]
        ),
        2.0,
        "{page}"
    );
    assert!(
        !page.contains(&key),
        "the session key never reaches the metrics"
    );
}

#[tokio::test]
async fn errors_are_counted_by_kind_on_postgres() {
    // A table dropped under the running demo: every load fails with `missing_table`. (The
    // demo refuses to start on a table that is missing already.)
    let missing = unique_table("metrics_missing");
    let demo = Demo::start(&[
        "--migrate",
        "--database-url",
        &postgres_url(),
        "--table",
        &missing,
    ]);
    let dropped = std::process::Command::new("psql")
        .args([
            &postgres_url(),
            "-c",
            &format!("DROP TABLE \"{missing}_user\", \"{missing}\""),
        ])
        .output()
        .expect("psql runs");
    assert!(dropped.status.success(), "{dropped:?}");
    let cookie = support::session("abcdefghijklmnopqrstuvwxyz012345");
    for _ in 0..2 {
        let reply = send(
            bare()
                .get(demo.url("/api/visits"))
                .header("cookie", &cookie),
        )
        .await;
        assert_eq!(
            reply.status,
            503,
            "a missing table is a store failure (is PostgreSQL at {} running?)",
            postgres_url()
        );
    }
    let page = metrics_page(&demo).await;
    assert_eq!(
        sample(
            &page,
            "cloakroom_store_errors_total",
            &[("engine", "postgres"), ("kind", "missing_table")]
        ),
        2.0,
        "{page}"
    );
    assert_eq!(
        sample(
            &page,
            "cloakroom_session_loads_total",
            &[("engine", "postgres"), ("outcome", "error")]
        ),
        2.0,
        "{page}"
    );

    // And once migrated, the same engine counts successes.
    let table = unique_table("metrics_ok");
    migrate(&postgres_url(), &table);
    let demo = Demo::start(&["--database-url", &postgres_url(), "--table", &table]);
    let client = visitor();
    send(client.get(demo.url("/api/visits"))).await;
    send(client.get(demo.url("/api/visits"))).await;
    let page = metrics_page(&demo).await;
    assert_eq!(
        sample(
            &page,
            "cloakroom_session_loads_total",
            &[("engine", "postgres"), ("outcome", "hit")]
        ),
        1.0,
        "{page}"
    );
    assert_eq!(
        sample(
            &page,
            "cloakroom_store_errors_total",
            &[("engine", "postgres")]
        ),
        0.0,
        "{page}"
    );
}
