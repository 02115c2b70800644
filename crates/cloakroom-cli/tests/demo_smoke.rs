//! The demo answers its JSON contract over real HTTP on the default engine.

mod support;

use serde_json::{json, Value};
use support::{visitor, Demo};

#[tokio::test]
async fn visits_count_one_two_three_for_one_visitor() {
    let demo = Demo::start(&[]);
    let client = visitor();
    for expected in 1..=3 {
        let body: Value = client
            .get(demo.url("/api/visits"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body, json!({ "visits": expected }));
    }
    assert!(
        demo.dir.join("cloakroom.sqlite3").exists(),
        "the demo made its own SQLite file"
    );
    assert!(
        demo.dir.join("cloakroom-secret.key").exists(),
        "the demo keeps its secret key"
    );
}
