//! Issue 14, point 4: `Debug` of the settings, and so of `Sessions` and `SessionLayer`, printed
//! `database_url` and `cache_url` with their passwords.

use cloakroom::engines::memory::MemoryStore;
use cloakroom::{SessionLayer, Sessions, Settings};

#[test]
fn debug_of_settings_sessions_and_layer_never_prints_url_passwords() {
    let settings = Settings::default()
        .with_database_url(Some("postgres://u:hunter2@h/db".to_owned()))
        .with_cache_url(Some("redis://:hunter2@h".to_owned()));
    let sessions = Sessions::new(MemoryStore::default(), settings.clone()).unwrap();
    let layer = SessionLayer::new(sessions.clone());
    for debug in [
        format!("{settings:?}"),
        format!("{sessions:?}"),
        format!("{layer:?}"),
        format!("{settings:#?}"),
    ] {
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("postgres://u:***@h/db"), "{debug}");
        assert!(debug.contains("redis://:***@h"), "{debug}");
    }
}
