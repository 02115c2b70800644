//! Properties of the codec: encoding then decoding is the identity, and corrupt input is an
//! error, never a panic.

use cloakroom::codec::{Codec, Data};
use proptest::prelude::*;
use serde_json::Value;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        ".*".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((".*", inner), 0..8)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

fn session_data() -> impl Strategy<Value = Data> {
    prop::collection::vec((".*", json_value()), 0..12).prop_map(|pairs| pairs.into_iter().collect())
}

proptest! {
    #[test]
    fn json_round_trips(data in session_data()) {
        let codec = Codec::Json;
        prop_assert_eq!(codec.decode(codec.encode(&data).unwrap()).unwrap(), data);
    }

    #[test]
    fn encrypted_round_trips_and_a_changed_character_is_refused(
        data in session_data(),
        at in any::<prop::sample::Index>(),
    ) {
        let codec = Codec::encrypted(&cloakroom::Secret::new("props"), &[]);
        let stored = codec.encode(&data).unwrap();
        prop_assert_eq!(codec.decode(&stored).unwrap(), data);
        let mut changed = stored.to_vec();
        let at = at.index(changed.len());
        changed[at] = if changed[at] == b'A' { b'B' } else { b'A' };
        prop_assert!(codec.decode(&changed).is_err(), "accepted a change at {}", at);
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".*") {
        let _ = Codec::Json.decode(&text);
    }

    #[test]
    fn truncated_data_is_rejected(data in session_data(), cut in 1usize..64) {
        let text = Codec::Json.encode(&data).unwrap();
        let end = text.len().saturating_sub(cut);
        if let Some(prefix) = text.get(..end) {
            prop_assert!(Codec::Json.decode(prefix).is_err(), "accepted truncated {prefix:?}");
        }
    }
}
