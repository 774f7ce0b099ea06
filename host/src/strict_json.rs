//! Checks that bytes are strict JSON without building a value from them.
//!
//! Strict means what `serde_json::Value` accepts: well-formed, every string valid
//! Unicode (no lone surrogate escapes) and every number representable (`1e999` is
//! refused). Plugins hand the host JSON on hot paths (a projection's documents, the
//! events `decide` returns), so the check walks the text once and allocates only for
//! strings with escapes, where parsing into a `Value` allocated every node.

use serde::Deserializer;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// Whether `bytes` is one strict JSON value (surrounding whitespace allowed).
pub fn is_strict(bytes: &[u8]) -> bool {
    let mut parser = serde_json::Deserializer::from_slice(bytes);
    Strict.deserialize(&mut parser).is_ok() && parser.end().is_ok()
}

/// Accepts any JSON value, asking the parser for each part in full.
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<(), A::Error> {
        while items.next_element_seed(Strict)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<(), A::Error> {
        while entries.next_key_seed(Strict)?.is_some() {
            entries.next_value_seed(Strict)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::is_strict;

    #[test]
    fn accepts_what_a_value_accepts() {
        for text in [
            r#"{"a":[1,-2,3.5,true,null,"x\n\u00e9"],"b":{}}"#,
            " 12 ",
            r#""\ud83d\ude00""#,
            "[]",
        ] {
            assert!(is_strict(text.as_bytes()), "{text}");
            assert!(serde_json::from_str::<serde_json::Value>(text).is_ok());
        }
    }

    #[test]
    fn refuses_what_a_value_refuses() {
        for text in [
            "",
            "{",
            r#"{"a":1}}"#,
            "1 2",
            "1e999",
            r#""\ud800""#,
            r#"{"\udc00":1}"#,
            "[1,]",
            "nul",
        ] {
            assert!(!is_strict(text.as_bytes()), "{text}");
            assert!(serde_json::from_str::<serde_json::Value>(text).is_err());
        }
        assert!(!is_strict(b"\"\xff\""));
    }
}
