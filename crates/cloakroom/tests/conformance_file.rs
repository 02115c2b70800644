//! The store contract on the `file` engine (a fresh folder per store), and what is particular
//! to it: Django's file layout, expiry by mtime, keys that try to leave the folder, and
//! compare-and-swap across threads and processes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cloakroom::codec::{Codec, Data};
use cloakroom::config::DEFAULT_COOKIE_AGE;
use cloakroom::engines::file::FileStore;
use cloakroom::{ClearExpired, Created, Record, SessionStore, Sessions, Settings, Updated};
use time::OffsetDateTime;

/// A new empty folder, unique to this call, in one folder per test process under the system
/// temp folder.
fn fresh_dir() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir()
        .join(format!("cloakroom-file-test-{}", std::process::id()))
        .join(N.fetch_add(1, Ordering::Relaxed).to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn store_in(dir: &Path) -> FileStore {
    FileStore::new(dir, "sessionid", DEFAULT_COOKIE_AGE).unwrap()
}

fn store() -> Arc<FileStore> {
    Arc::new(store_in(&fresh_dir()))
}

cloakroom::conformance_tests!(async { store() }, clear);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_entries_are_held_by_their_user() {
    cloakroom::testing::index_entries_are_held_by_their_user(&*store()).await;
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn record(data: &str, expires_at: OffsetDateTime) -> Record {
    Record {
        data: data.to_owned().into(),
        expires_at,
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn files_are_named_and_written_as_django_writes_them() {
    let dir = fresh_dir();
    let store = store_in(&dir);
    let key = "by69nuk5kk5jgr551yo27njie0fffa9c";
    let at = now() + Duration::from_secs(600);
    let content = "eyJjYXJ0Ijp7Iml0ZW1zIjpbeyJza3UiOiJBLTEiLCJxdHkiOjJ9XSwiY3VycmVuY3kiOiJFVVIifX0:1tSm9Y:lL_IGsiS9T0Ke_JUoOxGtYPSmDh1JfEI-Wt1lPuiMGY";
    assert_eq!(
        store.create(key, &record(content, at)).await.unwrap(),
        Created::Stored
    );
    assert_eq!(
        names_in(&dir),
        [format!("sessionid{key}")],
        "no temp file left"
    );
    let path = dir.join(format!("sessionid{key}"));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        content,
        "no trailing newline"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // Django's expiry rule: mtime + SESSION_COOKIE_AGE.
    let mtime = OffsetDateTime::from(std::fs::metadata(&path).unwrap().modified().unwrap());
    let expected = at - Duration::from_secs(DEFAULT_COOKIE_AGE);
    assert!(
        (mtime - expected).abs() < time::Duration::milliseconds(10),
        "{mtime} vs {expected}"
    );
}

#[tokio::test]
async fn a_file_django_wrote_loads_through_the_django_codec() {
    let vectors: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/django-vectors.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let f = &vectors["file_backend"];
    let dir = fresh_dir();
    // As Django leaves it: written just now, so live for SESSION_COOKIE_AGE.
    std::fs::write(
        dir.join(f["file_name"].as_str().unwrap()),
        f["file_content"].as_str().unwrap(),
    )
    .unwrap();
    let secret = cloakroom::Secret::new(vectors["settings"]["SECRET_KEY"].as_str().unwrap());
    let sessions = Sessions::new(store_in(&dir), Settings::default())
        .unwrap()
        .with_codec(Codec::django(secret, vec![]));
    let lazy = sessions.start(Some(f["session_key"].as_str().unwrap()));
    let s = lazy.load().await.unwrap();
    let want: Data = f["session"].as_object().unwrap().clone();
    assert_eq!(s.data(), want);
    // A change is written back in Django's format, under the same name.
    s.insert("visits", 1).unwrap();
    lazy.commit(200).await.unwrap();
    let text = std::fs::read_to_string(dir.join(f["file_name"].as_str().unwrap())).unwrap();
    assert!(text.is_ascii() && text.matches(':').count() == 2, "{text}");
}

#[tokio::test]
async fn expiry_follows_mtime_and_an_empty_placeholder_is_no_session() {
    let dir = fresh_dir();
    let store = store_in(&dir);
    let key = "a".repeat(32);
    let at = now() + Duration::from_secs(60);
    store.create(&key, &record("{}", at)).await.unwrap();
    assert!(store
        .load(&key, at - Duration::from_secs(1))
        .await
        .unwrap()
        .is_some());
    assert!(
        store.load(&key, at).await.unwrap().is_none(),
        "live at its expiry"
    );
    // Django's create leaves an empty file for a moment; it is no session yet.
    let placeholder = "b".repeat(32);
    std::fs::write(dir.join(format!("sessionid{placeholder}")), "").unwrap();
    assert!(store.load(&placeholder, now()).await.unwrap().is_none());
    assert!(store.exists(&placeholder).await.unwrap());
}

#[tokio::test]
async fn keys_can_never_name_a_path_outside_the_folder() {
    let parent = fresh_dir();
    let dir = parent.join("sessions");
    std::fs::create_dir(&dir).unwrap();
    // Bait outside the folder, under names a traversal would reach.
    std::fs::write(parent.join("sessionidbait0000"), "{}").unwrap();
    std::fs::write(parent.join("bait0000"), "{}").unwrap();
    let store = store_in(&dir);
    let at = now() + Duration::from_secs(600);
    let long = "a".repeat(300);
    let hostile = [
        "../sessionidbait0000",
        "/../bait0000",
        "..%2fbait0000",
        "/etc/passwd",
        &format!("{}/bait0000", parent.display()),
        "abc\0defgh",
        "abcdefgh\0",
        "ABCDEFGHIJ",
        "a.b.c.d.e.f",
        "..",
        "abcdefgh/",
        "abcdefgh\\..\\x",
        "c:abcdefgh",
        long.as_str(),
        "",
    ];
    for key in hostile {
        assert!(store.path_of(key).is_none(), "{key:?} made a path");
        assert_eq!(store.load(key, now()).await.unwrap(), None, "{key:?}");
        assert!(!store.exists(key).await.unwrap(), "{key:?}");
        store.delete(key).await.unwrap();
        assert!(
            store.create(key, &record("{}", at)).await.is_err(),
            "{key:?} created"
        );
        let out = store
            .update(key, b"{}", &record("{}", at), now())
            .await
            .unwrap();
        assert_eq!(out, Updated::Missing, "{key:?}");
    }
    assert!(
        names_in(&dir).is_empty(),
        "wrote into the folder: {:?}",
        names_in(&dir)
    );
    assert_eq!(
        names_in(&parent),
        ["bait0000", "sessionidbait0000", "sessions"]
    );
    // A valid key always stays inside.
    let path = store.path_of("abcdefgh12345678").unwrap();
    assert_eq!(path.parent().unwrap(), dir);
}

#[tokio::test]
async fn invalid_folders_and_prefixes_are_config_errors() {
    let missing = fresh_dir().join("nope");
    let err = FileStore::new(&missing, "sessionid", 60).unwrap_err();
    assert!(err.to_string().contains("file_path"), "{err}");
    for bad in ["", "../x", "a/b", "a\0b", &"x".repeat(201)] {
        let err = FileStore::new(fresh_dir(), bad, 60).unwrap_err();
        assert!(err.to_string().contains("cookie_name"), "{bad:?}: {err}");
    }
}

#[cfg(unix)]
#[tokio::test]
async fn symlinks_and_foreign_files_are_not_sessions() {
    let dir = fresh_dir();
    let store = store_in(&dir);
    let outside = fresh_dir().join("secret.json");
    std::fs::write(&outside, r#"{"_auth_user_id":"1"}"#).unwrap();
    let key = "c".repeat(32);
    std::os::unix::fs::symlink(&outside, dir.join(format!("sessionid{key}"))).unwrap();
    assert_eq!(
        store.load(&key, now()).await.unwrap(),
        None,
        "followed a symlink"
    );
    let at = now() + Duration::from_secs(600);
    let out = store
        .update(&key, br#"{"_auth_user_id":"1"}"#, &record("{}", at), now())
        .await;
    assert_eq!(out.unwrap(), Updated::Missing);
    // And a name that is taken stays taken, whatever is there.
    assert_eq!(
        store.create(&key, &record("{}", at)).await.unwrap(),
        Created::Taken
    );
    assert_eq!(
        std::fs::read_to_string(&outside).unwrap(),
        r#"{"_auth_user_id":"1"}"#
    );
}

#[tokio::test]
async fn clear_expired_touches_only_expired_session_files() {
    let dir = fresh_dir();
    let store = store_in(&dir);
    let soon = now() + Duration::from_secs(2);
    let (dead, live) = ("d".repeat(32), "e".repeat(32));
    store.create(&dead, &record("{}", soon)).await.unwrap();
    store
        .create(&live, &record("{}", soon + Duration::from_secs(3600)))
        .await
        .unwrap();
    // Other files in the folder, some with the prefix, are not sessions.
    std::fs::write(dir.join("unrelated.txt"), "x").unwrap();
    std::fs::write(dir.join("sessionid-NOT-A-KEY"), "x").unwrap();
    let fresh_temp = format!("sessionid{live}_out_abcdef");
    std::fs::write(dir.join(&fresh_temp), "x").unwrap();
    let cleared = store
        .clear_expired(soon + Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(cleared, 1);
    assert_eq!(
        names_in(&dir),
        [
            "sessionid-NOT-A-KEY".to_owned(),
            format!("sessionid{live}"),
            fresh_temp,
            "unrelated.txt".to_owned()
        ]
    );
}

/// Increments a counter in one session `times` times through raw compare-and-swap.
async fn increment(store: &FileStore, key: &str, times: u32) {
    let at = now() + Duration::from_secs(3600);
    for _ in 0..times {
        loop {
            let current = store
                .load(key, now())
                .await
                .unwrap()
                .expect("session exists");
            let n: u64 = std::str::from_utf8(&current.data).unwrap().parse().unwrap();
            let next = record(&(n + 1).to_string(), at);
            match store
                .update(key, &current.data, &next, now())
                .await
                .unwrap()
            {
                Updated::Stored => break,
                Updated::Conflict(_) => continue,
                Updated::Missing => panic!("session vanished"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_updates_from_threads_never_lose_a_change() {
    let dir = fresh_dir();
    let key = "f".repeat(32);
    store_in(&dir)
        .create(&key, &record("0", now() + Duration::from_secs(3600)))
        .await
        .unwrap();
    // Separate store values, as separate app servers would have.
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (store, key) = (store_in(&dir), key.clone());
            tokio::spawn(async move { increment(&store, &key, 50).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let last = store_in(&dir).load(&key, now()).await.unwrap().unwrap();
    assert_eq!(last.data, "200");
    assert_eq!(
        names_in(&dir),
        [format!("sessionid{key}")],
        "temp files left"
    );
}

const WORKER_DIR: &str = "CLOAKROOM_FILE_RACE_DIR";

/// The other process of `racing_updates_from_processes_never_lose_a_change`: does nothing
/// unless that test started it.
#[tokio::test]
async fn race_worker_process() {
    let Ok(dir) = std::env::var(WORKER_DIR) else {
        return;
    };
    increment(&store_in(Path::new(&dir)), &"9".repeat(32), 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_updates_from_processes_never_lose_a_change() {
    let dir = fresh_dir();
    let key = "9".repeat(32);
    let store = store_in(&dir);
    store
        .create(&key, &record("0", now() + Duration::from_secs(3600)))
        .await
        .unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "race_worker_process", "--test-threads=1"])
                .env(WORKER_DIR, &dir)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    increment(&store, &key, 100).await;
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a worker process failed");
    }
    assert_eq!(store.load(&key, now()).await.unwrap().unwrap().data, "300");
}

#[tokio::test]
async fn an_update_waiting_for_a_delete_does_not_bring_the_session_back() {
    let dir = fresh_dir();
    let store = store_in(&dir);
    let key = "7".repeat(32);
    let at = now() + Duration::from_secs(3600);
    store.create(&key, &record("0", at)).await.unwrap();
    // Many deletes and updates at once: whatever the order, once a delete has run no update
    // may answer Stored for the old data.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (store, key) = (store.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            if i == 10 {
                store.delete(&key).await.unwrap();
                None
            } else {
                Some(
                    store
                        .update(&key, b"0", &record("1", at), now())
                        .await
                        .unwrap(),
                )
            }
        }));
    }
    let mut stored = 0;
    for t in tasks {
        if let Some(Updated::Stored) = t.await.unwrap() {
            stored += 1;
        }
    }
    assert!(
        stored <= 1,
        "{stored} updates of the same old data succeeded"
    );
    assert_eq!(
        store.load(&key, now()).await.unwrap(),
        None,
        "deleted session came back"
    );
}

#[tokio::test]
async fn open_builds_the_file_engine_from_settings() {
    use cloakroom::engines::open;
    use cloakroom::Engine;
    let dir = fresh_dir();
    let settings = Settings::default()
        .with_engine(Engine::File)
        .with_file_path(Some(dir.clone()))
        .with_cookie_name("appsession")
        .with_cookie_age(600u64);
    let opened = open(&settings).await.unwrap().into_server().unwrap();
    assert_eq!(opened.store.engine(), "file");
    assert!(opened.clear.is_some());
    let key = "k".repeat(32);
    let at = now() + Duration::from_secs(60);
    opened.store.create(&key, &record("{}", at)).await.unwrap();
    let path = dir.join(format!("appsession{key}"));
    let mtime = OffsetDateTime::from(std::fs::metadata(&path).unwrap().modified().unwrap());
    assert!((mtime - (at - Duration::from_secs(600))).abs() < time::Duration::milliseconds(10));

    let missing = settings.with_file_path(Some(dir.join("missing")));
    let err = open(&missing).await.unwrap_err().to_string();
    assert!(err.contains("file_path"), "{err}");
}

#[tokio::test]
async fn touch_sets_the_mtime_of_the_same_file_without_rewriting_it() {
    use std::os::unix::fs::MetadataExt;
    let dir = fresh_dir();
    let store = store_in(&dir);
    let key = cloakroom::key::generate().unwrap();
    let t = now();
    store
        .create(&key, &record(r#"{"a":1}"#, t + Duration::from_secs(60)))
        .await
        .unwrap();
    let path = store.path_of(&key).unwrap();
    let before = std::fs::metadata(&path).unwrap();
    let later = t + Duration::from_secs(7200);
    assert_eq!(
        store
            .touch(&key, &record(r#"{"a":1}"#, later), t)
            .await
            .unwrap(),
        Updated::Stored
    );
    let after = std::fs::metadata(&path).unwrap();
    assert_eq!(
        after.ino(),
        before.ino(),
        "touch wrote a new file instead of setting the mtime"
    );
    let mtime = OffsetDateTime::from(after.modified().unwrap());
    let cookie_age = time::Duration::seconds(DEFAULT_COOKIE_AGE as i64);
    assert_eq!(
        mtime + cookie_age,
        later,
        "mtime + cookie_age is the new expiry"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), r#"{"a":1}"#);
}
