//! The demo on its default engine: an embedded SQLite file and a generated secret key, both in
//! its working folder.

mod support;

use serde_json::json;
use support::{send, visitor, Demo};

#[tokio::test]
async fn the_default_engine_keeps_its_files_in_the_working_folder() {
    let demo = Demo::start(&[]);
    // What the visits count is on every engine is the HTTP suite's; here, where the default
    // engine keeps it.
    let reply = send(visitor().get(demo.url("/api/visits"))).await;
    assert_eq!(reply.json(), json!({ "visits": 1 }));
    assert!(
        demo.dir.join("cloakroom.sqlite3").exists(),
        "the demo made its own SQLite file"
    );
    assert!(
        demo.dir.join("cloakroom-secret.key").exists(),
        "the demo keeps its secret key"
    );
}
