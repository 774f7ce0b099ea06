//! The mapping between serde's default enum form and Cairn's (type, JSON payload)
//! pairs: `Deposited { amount: 5 }` ⇄ type `Deposited`, payload `{"amount":5}`.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Rebuilds the enum value from a type name and a JSON payload.
pub fn decode<T: DeserializeOwned>(type_name: &str, payload: &[u8]) -> Result<T, String> {
    // The common case in one pass: `{"Type":payload}` parsed straight into `T`. It
    // succeeds only when `payload` is exactly one JSON value (the closing brace is
    // ours, and nothing may follow it), so it never accepts what the general path
    // below refuses; anything else (a unit variant, an empty payload, an error to
    // word) takes that path.
    if !payload.is_empty() {
        let mut tagged = Vec::with_capacity(type_name.len() + payload.len() + 8);
        tagged.push(b'{');
        serde_json::to_writer(&mut tagged, type_name).map_err(|e| e.to_string())?;
        tagged.push(b':');
        tagged.extend_from_slice(payload);
        tagged.push(b'}');
        if let Ok(value) = serde_json::from_slice(&tagged) {
            return Ok(value);
        }
    }
    decode_via_value(type_name, payload)
}

/// [`decode`] through a `serde_json::Value`: slower, and it knows the unit-variant
/// form and how to word each error.
fn decode_via_value<T: DeserializeOwned>(type_name: &str, payload: &[u8]) -> Result<T, String> {
    let payload: Value = if payload.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(payload).map_err(|e| format!("payload is not JSON: {e}"))?
    };
    let unit = matches!(&payload, Value::Null) || payload.as_object().is_some_and(Map::is_empty);
    let mut tagged = Map::new();
    tagged.insert(type_name.to_owned(), payload);
    match serde_json::from_value(Value::Object(tagged)) {
        Ok(value) => Ok(value),
        // A unit variant (`Reset`) is the bare string in serde's default form.
        Err(_) if unit => serde_json::from_value(Value::String(type_name.to_owned()))
            .map_err(|e| format!("{type_name}: {e}")),
        Err(e) => Err(format!("{type_name}: {e}")),
    }
}

/// Splits an enum value into its type name and JSON payload.
pub fn encode<T: Serialize>(value: &T) -> Result<(String, Vec<u8>), String> {
    match serde_json::to_value(value).map_err(|e| e.to_string())? {
        Value::String(name) => Ok((name, b"{}".to_vec())),
        Value::Object(map) if map.len() == 1 => {
            let (name, payload) = map.into_iter().next().expect("one entry");
            let payload = serde_json::to_vec(&payload).map_err(|e| e.to_string())?;
            Ok((name, payload))
        }
        other => Err(format!(
            "events must be enums in serde's default (externally tagged) form, got {other}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum E {
        Deposited { amount: i64 },
        Closed,
        Renamed(String),
    }

    #[test]
    fn round_trips_every_variant_shape() {
        for e in [
            E::Deposited { amount: 5 },
            E::Closed,
            E::Renamed("x".into()),
        ] {
            let (name, payload) = encode(&e).unwrap();
            assert_eq!(decode::<E>(&name, &payload).unwrap(), e);
        }
        assert_eq!(
            encode(&E::Deposited { amount: 5 }).unwrap().1,
            br#"{"amount":5}"#
        );
    }

    #[test]
    fn unit_variants_accept_empty_payloads() {
        assert_eq!(decode::<E>("Closed", b"").unwrap(), E::Closed);
        assert_eq!(decode::<E>("Closed", b"null").unwrap(), E::Closed);
    }

    #[test]
    fn a_payload_must_be_exactly_one_json_value() {
        for payload in [
            &br#"{"amount":5}}"#[..],
            br#"{"amount":5},"Closed":null"#,
            br#"{"amount":5} {"amount":6}"#,
        ] {
            let error = decode::<E>("Deposited", payload).unwrap_err();
            assert!(error.starts_with("payload is not JSON"), "{error}");
        }
        // Repeated fields: the last one counts, as it always has.
        assert_eq!(
            decode::<E>("Deposited", br#"{"amount":1,"amount":2}"#).unwrap(),
            E::Deposited { amount: 2 }
        );
        assert_eq!(
            decode::<E>("Renamed", br#" "x" "#).unwrap(),
            E::Renamed("x".into())
        );
    }

    #[test]
    fn unknown_types_are_errors() {
        assert!(decode::<E>("Exploded", b"{}").is_err());
    }
}
