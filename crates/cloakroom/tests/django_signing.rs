//! Django's signed format against the vectors real Django 5.2 produced (`tests/data/`).
//!
//! Uncompressed values are compared byte for byte. Compressed ones are compared by decoding:
//! another deflate implementation may pick other (equally valid) bytes than CPython's zlib.

use std::time::Duration;

use cloakroom::codec::{Codec, Data};
use cloakroom::signing::{self, SignatureError, Signer, COOKIE_SALT, SESSION_SALT};
use cloakroom::Secret;
use serde_json::Value;
use time::OffsetDateTime;

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/django-vectors.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn secret(v: &Value) -> Secret {
    Secret::new(v["settings"]["SECRET_KEY"].as_str().unwrap())
}

fn cookie_age(v: &Value) -> Duration {
    Duration::from_secs(v["settings"]["SESSION_COOKIE_AGE"].as_u64().unwrap())
}

/// An epoch in float seconds (as the vectors give it), exactly.
fn at(epoch: &Value) -> OffsetDateTime {
    let f = epoch.as_f64().unwrap();
    let secs = f.floor();
    let nanos = ((f - secs) * 1e9).round() as i128;
    OffsetDateTime::from_unix_timestamp_nanos(secs as i128 * 1_000_000_000 + nanos).unwrap()
}

fn object(v: &Value) -> Data {
    v.as_object().unwrap().clone()
}

fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no string `{field}`"))
}

fn fallbacks(v: &Value) -> Vec<Secret> {
    v.get("secret_key_fallbacks")
        .and_then(Value::as_array)
        .map(|keys| {
            keys.iter()
                .map(|k| Secret::new(k.as_str().unwrap()))
                .collect()
        })
        .unwrap_or_default()
}

/// Loads `value` as the vector's backend does: session_data without a max age, a cookie with
/// `SESSION_COOKIE_AGE`.
fn load(
    v: &Value,
    backend: &str,
    value: &str,
    now: OffsetDateTime,
    fallbacks: &[Secret],
) -> Result<Data, SignatureError> {
    match backend {
        "db" => Signer::new(&secret(v), fallbacks, SESSION_SALT).loads(value, None, now),
        "signed_cookies" => {
            Signer::new(&secret(v), fallbacks, COOKIE_SALT).loads(value, Some(cookie_age(v)), now)
        }
        other => panic!("unknown backend {other}"),
    }
}

#[test]
fn every_session_vector_encodes_and_decodes_like_django() {
    let v = vectors();
    let now = at(&v["fixed_time"]);
    let db = Signer::new(&secret(&v), &[], SESSION_SALT);
    let cookie = Signer::new(&secret(&v), &[], COOKIE_SALT);
    let cases = v["session_vectors"].as_array().unwrap();
    assert_eq!(
        cases.len(),
        14,
        "new vectors: look at them and extend this test"
    );
    for case in cases {
        let name = str_of(case, "name");
        if name == "edge_bigint" {
            // 2^64+1 has no lossless `serde_json::Value`: refused rather than turned into a float.
            for (signer, field) in [(&db, "db_session_data"), (&cookie, "signed_cookie")] {
                assert_eq!(
                    signer.loads(str_of(case, field), None, now),
                    Err(SignatureError::IntegerOutOfRange),
                    "{name}"
                );
            }
            continue;
        }
        let session = object(&case["session"]);
        let json = str_of(case, "serialized_json");
        assert_eq!(signing::to_python_json(&session), json, "{name}: JSON text");

        for (signer, field, parts, max_age) in [
            (&db, "db_session_data", "db_parts", None),
            (
                &cookie,
                "signed_cookie",
                "signed_cookie_parts",
                Some(cookie_age(&v)),
            ),
        ] {
            let django = str_of(case, field);
            let parts = &case[parts];
            // Django's value decodes to the session, in the same key order.
            let decoded = signer.loads(django, max_age, now).unwrap();
            assert_eq!(decoded, session, "{name}: {field} decodes");
            assert_eq!(
                signing::to_python_json(&decoded),
                json,
                "{name}: {field} order"
            );
            // Our HMAC over Django's own signed message is Django's signature.
            assert_eq!(
                signer.sign(str_of(parts, "payload"), now),
                django,
                "{name}: {field} signature"
            );
            let ours = signer.dumps(&session, true, now);
            if parts["compressed"].as_bool().unwrap() {
                // Our deflate may be a byte or two longer than CPython's zlib; then the
                // "shorter by 2 bytes" rule can keep the value uncompressed, which Django
                // reads just as well.
                let packed = zlib_len(json.as_bytes());
                assert_eq!(
                    ours.starts_with(".eJ"),
                    packed + 1 < json.len(),
                    "{name}: {field} compresses exactly when it saves 2 bytes"
                );
                assert_eq!(
                    signer.loads(&ours, max_age, now).unwrap(),
                    session,
                    "{name}"
                );
                let zlib = hex(str_of(parts, "zlib_hex"));
                let mut inflated = String::new();
                std::io::Read::read_to_string(
                    &mut flate2::read::ZlibDecoder::new(&zlib[..]),
                    &mut inflated,
                )
                .unwrap();
                assert_eq!(inflated, json, "{name}: Django's zlib bytes hold the JSON");
            } else {
                assert_eq!(ours, django, "{name}: {field} byte for byte");
            }
        }
        assert_eq!(case["decodes_back_equal"], true);
    }
}

fn zlib_len(data: &[u8]) -> usize {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
    std::io::Write::write_all(&mut encoder, data).unwrap();
    encoder.finish().unwrap().len()
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn every_must_fail_vector_fails_for_djangos_reason() {
    let v = vectors();
    let cases = v["must_fail"].as_array().unwrap();
    assert_eq!(cases.len(), 10);
    for case in cases {
        let name = str_of(case, "name");
        let got = load(
            &v,
            str_of(case, "backend"),
            str_of(case, "value"),
            at(&case["now"]),
            &[],
        );
        match (str_of(case, "expected"), got) {
            (
                "bad_signature" | "not_supported",
                Err(SignatureError::BadSignature | SignatureError::NoSeparator),
            ) => {}
            ("signature_expired", Err(SignatureError::Expired { .. })) => {}
            (expected, got) => panic!("{name}: expected {expected}, got {got:?}"),
        }
        assert_eq!(case["django_session_after_load"], serde_json::json!({}));
    }
}

#[test]
fn every_must_pass_vector_decodes() {
    let v = vectors();
    let cases = v["must_pass"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for case in cases {
        let name = str_of(case, "name");
        let got = load(
            &v,
            str_of(case, "backend"),
            str_of(case, "value"),
            at(&case["now"]),
            &fallbacks(case),
        );
        assert_eq!(got, Ok(object(&case["expected_session"])), "{name}");
    }
}

#[test]
fn raw_utf8_payloads_become_the_same_mojibake_as_in_django() {
    let v = vectors();
    let cases = v["decode_quirks"].as_array().unwrap();
    assert_eq!(cases.len(), 1);
    for case in cases {
        let got = load(
            &v,
            str_of(case, "backend"),
            str_of(case, "value"),
            at(&v["fixed_time"]),
            &[],
        );
        assert_eq!(got, Ok(object(&case["django_decodes_to"])));
    }
}

#[test]
fn fallback_keys_verify_and_new_values_use_the_current_key() {
    let v = vectors();
    let now = at(&v["fixed_time"]);
    let f = &v["fallback_key_vectors"];
    let old = vec![Secret::new(str_of(f, "signed_with"))];
    let session = object(&f["session"]);
    for (backend, field) in [
        ("db", "db_session_data"),
        ("signed_cookies", "signed_cookie"),
    ] {
        let value = str_of(f, field);
        assert_eq!(
            load(&v, backend, value, now, &old),
            Ok(object(&f["decoded_with_fallback"]))
        );
        assert_eq!(
            load(&v, backend, value, now, &[]),
            Err(SignatureError::BadSignature),
            "{backend}: Django decodes it to {}",
            f["decoded_without_fallback"]
        );
    }
    let rotated = Signer::new(&secret(&v), &old, SESSION_SALT);
    assert_eq!(
        rotated.dumps(&session, true, now),
        str_of(f, "reencoded_db_session_data_uses_current_key")
    );
    // The codec reads old-key data too (its timestamp is not checked).
    let codec = Codec::django(secret(&v), old);
    assert_eq!(codec.decode(str_of(f, "db_session_data")).unwrap(), session);
}

#[test]
fn file_backend_content_is_session_data() {
    let v = vectors();
    let now = at(&v["fixed_time"]);
    let f = &v["file_backend"];
    let db = Signer::new(&secret(&v), &[], SESSION_SALT);
    let content = str_of(f, "file_content");
    assert_eq!(db.loads(content, None, now), Ok(object(&f["session"])));
    assert_eq!(db.dumps(&object(&f["session"]), true, now), content);
}

#[test]
fn every_row_of_djangos_sqlite_database_decodes() {
    let v = vectors();
    let rows = v["sqlite_db"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let codec = Codec::django(secret(&v), vec![]);
    for row in rows {
        assert_eq!(
            codec.decode(str_of(row, "session_data")).unwrap(),
            object(&row["decoded"]),
            "{}",
            str_of(row, "session_key")
        );
    }
}

#[test]
fn every_cached_db_row_decodes() {
    let v = vectors();
    let codec = Codec::django(secret(&v), vec![]);
    let mut seen = 0;
    for entry in v["cache_backend"]["entries"].as_array().unwrap() {
        if let Some(data) = entry.get("db_row_session_data").and_then(Value::as_str) {
            assert_eq!(codec.decode(data).unwrap(), object(&entry["session"]));
            seen += 1;
        }
    }
    assert_eq!(
        seen, 1,
        "the cached_db entry carries the DB row Django wrote"
    );
}
