//! The settings: defaults, the TOML file, validation, redaction.

use super::*;

#[test]
fn defaults_are_djangos() {
    let s = Settings::default();
    assert_eq!(s.session.cookie_name, "sessionid");
    assert_eq!(s.session.cookie_age, 1_209_600);
    assert_eq!(s.session.cookie_domain, None);
    assert_eq!(s.session.cookie_path, "/");
    assert!(!s.session.cookie_secure);
    assert!(s.session.cookie_httponly);
    assert_eq!(s.session.cookie_samesite, SameSite::Lax);
    assert!(!s.session.cookie_partitioned);
    assert!(!s.session.expire_at_browser_close);
    assert!(!s.session.save_every_request);
    assert_eq!(s.store.engine, Engine::Db);
    s.validate().unwrap();
}

#[test]
fn toml_overrides_and_rejects_unknown_keys() {
    let s = Settings::from_toml_str(
        "cookie_name = \"sid\"\ncookie_age = 60\ncookie_samesite = \"strict\"\nengine = \"cache\"",
    )
    .unwrap();
    assert_eq!(s.session.cookie_name, "sid");
    assert_eq!(s.session.cookie_age, 60);
    assert_eq!(s.session.cookie_samesite, SameSite::Strict);
    assert_eq!(s.store.engine, Engine::Cache);
    let err = Settings::from_toml_str("cookie_nam = \"x\"").unwrap_err();
    assert!(err.to_string().contains("cookie_nam"), "{err}");
}

#[test]
fn max_sessions_per_user_reads_from_toml_and_refuses_zero() {
    let s = Settings::from_toml_str("max_sessions_per_user = 3").unwrap();
    assert_eq!(s.session.max_sessions_per_user, Some(3));
    let err = Settings::from_toml_str("max_sessions_per_user = 0").unwrap_err();
    assert!(err.to_string().contains("max_sessions_per_user"), "{err}");
}

#[test]
fn toml_accepts_djangos_samesite_spelling() {
    for (text, expected) in [
        ("Strict", SameSite::Strict),
        ("Lax", SameSite::Lax),
        ("lax", SameSite::Lax),
    ] {
        let s = Settings::from_toml_str(&format!("cookie_samesite = \"{text}\"")).unwrap();
        assert_eq!(s.session.cookie_samesite, expected, "{text}");
    }
    let none = Settings::from_toml_str("cookie_samesite = \"None\"\ncookie_secure = true");
    assert_eq!(none.unwrap().session.cookie_samesite, SameSite::None);
}

#[test]
fn host_prefix_requires_secure_root_path_and_no_domain() {
    let host = Settings::default().with_cookie_name("__Host-sid");
    assert!(host.validate().is_err());
    let host = host.with_cookie_secure(true);
    host.validate().unwrap();
    assert!(host
        .clone()
        .with_cookie_domain(Some("example.com".to_owned()))
        .validate()
        .is_err());
    assert!(host.with_cookie_path("/app").validate().is_err());
    let secure = Settings::default().with_cookie_name("__Secure-sid");
    assert!(secure.validate().is_err());
}

#[test]
fn the_django_data_format_picks_djangos_codec_per_engine() {
    use crate::codec::Codec;
    let s = Settings::from_toml_str("data_format = \"django\"\nsecret_key = \"k\"").unwrap();
    assert!(matches!(s.codec(), Codec::Django { .. }));
    let file = s.clone().with_engine(Engine::File);
    assert!(matches!(file.codec(), Codec::Django { .. }));
    let cache = s.clone().with_engine(Engine::Cache);
    assert!(matches!(cache.codec(), Codec::DjangoCache));
    let cookies = s.with_engine(Engine::SignedCookies);
    assert!(matches!(cookies.codec(), Codec::Json));
    assert!(matches!(Settings::default().codec(), Codec::Json));

    let err = Settings::from_toml_str("data_format = \"django\"").unwrap_err();
    assert!(err.to_string().contains("secret_key"), "{err}");
    assert!("pickle".parse::<DataFormat>().is_err());
}

#[test]
fn size_bounds_read_from_toml_and_refuse_what_cannot_work() {
    let s = Settings::default();
    assert_eq!(s.session.max_session_bytes, 65_536);
    assert_eq!(s.store.cache_max_bytes, 256 * 1024 * 1024);
    let s = Settings::from_toml_str("max_session_bytes = 1000\ncache_max_bytes = 64000").unwrap();
    assert_eq!(
        (s.session.max_session_bytes, s.store.cache_max_bytes),
        (1000, 64_000)
    );
    let err = Settings::from_toml_str("max_session_bytes = 0").unwrap_err();
    assert!(err.to_string().contains("max_session_bytes"), "{err}");
    let err = Settings::from_toml_str("engine = \"cache\"\ncache_max_bytes = 1000").unwrap_err();
    assert!(err.to_string().contains("cache_max_bytes"), "{err}");
    // A Redis cache is not bounded by the in-process cache's setting.
    Settings::from_toml_str(
        "engine = \"cache\"\ncache_url = \"redis://127.0.0.1\"\ncache_max_bytes = 1000",
    )
    .unwrap();
}

#[test]
fn debug_of_settings_redacts_url_passwords() {
    let s = Settings::default()
        .with_database_url(Some("postgres://u:hunter2@h/db".to_owned()))
        .with_cache_url(Some("redis://:hunter2@h".to_owned()));
    let debug = format!("{s:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("postgres://u:***@h/db"), "{debug}");
    assert!(debug.contains("redis://:***@h"), "{debug}");
}

#[test]
fn a_table_whose_derived_names_exceed_the_identifier_limit_is_refused() {
    let on = |url: &str, table: &str| {
        Settings::default()
            .with_database_url(Some(url.to_owned()))
            .with_table(table)
            .validate()
    };
    let t63 = "t".repeat(63);
    let err = on("postgres://127.0.0.1/test", &t63)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`table`") && err.contains(&format!("{t63}_user_user_id_idx")),
        "{err}"
    );
    assert!(err.contains("at most 46 bytes"), "{err}");
    on("postgres://127.0.0.1/test", &"t".repeat(46)).unwrap();
    on("postgres://127.0.0.1/test", &"t".repeat(47)).unwrap_err();
    on("mysql://root@127.0.0.1/test", &"t".repeat(47)).unwrap();
    on("mysql://root@127.0.0.1/test", &"t".repeat(48)).unwrap_err();
    // SQLite has no such limit.
    on("sqlite://x.sqlite3", &t63).unwrap();
}

#[test]
fn secret_debug_is_redacted() {
    let s = Settings::default().with_secret_key(Some(Secret::new("hunter2")));
    assert!(!format!("{s:?}").contains("hunter2"));
}

#[test]
fn debug_shows_every_group() {
    let debug = format!("{:?}", Settings::default());
    for group in ["session", "resilience", "store"] {
        assert!(debug.contains(&format!("{group}: ")), "{debug}");
    }
}

#[test]
fn the_toml_file_stays_flat_and_fills_every_group() {
    let s = Settings::from_toml_str(
        "cookie_age = 60\nstore_timeout_ms = 250\nbreaker_threshold = 0\n\
         engine = \"cache\"\ncache_capacity = 10\n",
    )
    .unwrap();
    assert_eq!(s.session.cookie_age, 60);
    assert_eq!(s.resilience.store_timeout_ms, 250);
    assert_eq!(s.resilience.breaker_threshold, 0);
    assert_eq!(s.store.engine, Engine::Cache);
    assert_eq!(s.store.cache_capacity, 10);
    // Nested tables are not the file's shape: `[session]` is an unknown key.
    let err = Settings::from_toml_str("[session]\ncookie_age = 60").unwrap_err();
    assert!(err.to_string().contains("session"), "{err}");
}

#[test]
fn a_file_error_keeps_its_source() {
    use std::error::Error as _;
    let missing = std::env::temp_dir().join("cloakroom-no-such-settings.toml");
    let err = Settings::from_toml_file(&missing).unwrap_err();
    let ConfigError::File { path, source } = &err else {
        panic!("{err:?}");
    };
    assert!(path.contains("cloakroom-no-such-settings.toml"), "{path}");
    let FileError::Read(io) = source else {
        panic!("{source:?}");
    };
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    let err = Settings::from_toml_str("cookie_age = \"soon\"").unwrap_err();
    let source = err.source().and_then(|s| s.source());
    assert!(source.is_some_and(|s| s.is::<toml::de::Error>()), "{err:?}");
}

#[test]
fn a_wrong_type_names_its_setting() {
    let err = Settings::from_toml_str("cookie_age = \"soon\"").unwrap_err();
    assert!(err.to_string().contains("cookie_age"), "{err}");
    let err = Settings::from_toml_str("store_timeout_ms = -1").unwrap_err();
    assert!(err.to_string().contains("store_timeout_ms"), "{err}");
}

#[test]
fn an_applications_own_keys_share_the_file() {
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Demo {
        admin_token: Option<String>,
    }
    let path = std::env::temp_dir().join(format!("cloakroom-extra-{}.toml", std::process::id()));
    std::fs::write(&path, "admin_token = \"t\"\ncookie_age = 60\n").unwrap();
    let (s, demo) = Settings::from_toml_file_with::<Demo>(&path).unwrap();
    assert_eq!(demo.admin_token.as_deref(), Some("t"));
    assert_eq!(s.session.cookie_age, 60);
    let err = Settings::from_toml_file(&path).unwrap_err();
    assert!(err.to_string().contains("admin_token"), "{err}");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn for_url_points_the_wiring_and_checks_it() {
    let base = Settings::default().with_cookie_name("sid");
    let s = base.for_url("postgres://u:pw@h/db?table=t").unwrap();
    assert_eq!(s.store.engine, Engine::Db);
    assert_eq!(s.store.table, "t");
    assert_eq!(s.session.cookie_name, "sid");
    let err = base.for_url("ftp://u:hunter2@h").unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let err = base
        .for_url(&format!("postgres://h/db?table={}", "t".repeat(47)))
        .unwrap_err();
    assert!(err.to_string().contains("`table`"), "{err}");
}

#[test]
fn private_cookies_is_an_engine_with_no_key_to_hash() {
    let s = Settings::from_toml_str("engine = \"private_cookies\"\nsecret_key = \"k\"").unwrap();
    assert_eq!(s.store.engine, Engine::PrivateCookies);
    assert_eq!(s.store.engine.to_string(), "private_cookies");
    assert!(matches!(s.codec(), crate::codec::Codec::Json));
    let err =
        Settings::from_toml_str("engine = \"private_cookies\"\nhash_keys = true").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("hash_keys") && msg.contains("private_cookies"),
        "{msg}"
    );
}

/// The setting a refusal names, from `Settings::validate`.
fn refused(settings: &Settings) -> &'static str {
    match settings.validate() {
        Err(ConfigError::Invalid { setting, .. }) => setting,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn transport_and_header_name_read_from_toml_and_are_checked() {
    let s = Settings::from_toml_str("transport = \"both\"\nheader_name = \"X-Auth-Key\"").unwrap();
    assert_eq!(s.session.transport, Transport::Both);
    assert_eq!(s.session.header_name, "X-Auth-Key");
    assert_eq!(Settings::default().session.header_name, "X-Session-Token");
    let err = Settings::from_toml_str("transport = \"carrier-pigeon\"").unwrap_err();
    assert!(err.to_string().contains("transport"), "{err}");
    assert_eq!(
        refused(&Settings::default().with_header_name("X Session")),
        "header_name"
    );
    assert_eq!(
        refused(&Settings::default().with_header_name("Cookie")),
        "header_name"
    );
    for engine in [Engine::SignedCookies, Engine::PrivateCookies] {
        let s = Settings::default()
            .with_engine(engine)
            .with_secret_key(Some(Secret::new("s")))
            .with_transport(Transport::Header);
        assert_eq!(refused(&s), "transport", "{engine}");
    }
}

#[test]
fn encrypt_data_needs_a_secret_a_server_side_engine_and_json() {
    let secret = Some(Secret::new("s"));
    assert_eq!(
        refused(&Settings::default().with_encrypt_data(true)),
        "secret_key"
    );
    let on = Settings::default()
        .with_encrypt_data(true)
        .with_secret_key(secret.clone());
    on.validate().unwrap();
    assert!(matches!(on.codec(), Codec::Encrypted(_)));
    let cache = on.clone().with_engine(Engine::Cache);
    assert!(matches!(cache.codec(), Codec::Encrypted(_)));
    assert_eq!(
        refused(&on.clone().with_data_format(DataFormat::Django)),
        "encrypt_data"
    );
    assert_eq!(
        refused(&on.clone().with_engine(Engine::PrivateCookies)),
        "encrypt_data"
    );
    let err = Settings::from_toml_str(
        "encrypt_data = true\nsecret_key = \"s\"\ndata_format = \"django\"",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("encrypt_data") && err.contains("Django"),
        "{err}"
    );
}

#[test]
fn header_names_are_tokens_of_their_own() {
    assert!(Settings::default()
        .with_header_name("X-Session-Token")
        .validate()
        .is_ok());
    for bad in [
        "",
        "X Session",
        "Cookie",
        "set-cookie",
        "Authorization",
        "x:y",
    ] {
        let err = Settings::default()
            .with_header_name(bad)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("header_name"), "{bad:?}: {err}");
    }
}
