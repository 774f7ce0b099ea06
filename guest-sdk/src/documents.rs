//! A projection's documents: JSON values by key, read and written through the host
//! (inside the host's transaction), or kept in memory for native tests.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The documents of the projection being run.
pub struct Documents {
    backend: Backend,
}

enum Backend {
    /// The `documents` interface the host provides to the component.
    Host,
    /// A map, for tests that run natively.
    Memory(BTreeMap<String, Vec<u8>>),
}

impl Documents {
    pub(crate) fn host() -> Documents {
        Documents {
            backend: Backend::Host,
        }
    }

    /// Documents held in memory, for unit tests of a projection.
    pub fn in_memory() -> Documents {
        Documents {
            backend: Backend::Memory(BTreeMap::new()),
        }
    }

    /// The document at `key`, if there is one.
    ///
    /// Panics when the stored document does not decode as `T`: treating it as absent
    /// would let the next `put` overwrite it silently, whereas a trap parks the
    /// projection with the error shown and loses nothing.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let bytes = match &self.backend {
            Backend::Host => crate::projection_bindings::cairn::plugin::documents::get(key)?,
            Backend::Memory(map) => map.get(key)?.clone(),
        };
        match serde_json::from_slice(&bytes) {
            Ok(doc) => Some(doc),
            Err(e) => panic!(
                "document {key:?} does not decode as {}: {e}",
                std::any::type_name::<T>()
            ),
        }
    }

    /// Writes (or replaces) the document at `key`.
    pub fn put<T: Serialize>(&mut self, key: &str, doc: &T) {
        let bytes = serde_json::to_vec(doc).expect("a document serialises to JSON");
        match &mut self.backend {
            Backend::Host => crate::projection_bindings::cairn::plugin::documents::put(key, &bytes),
            Backend::Memory(map) => {
                map.insert(key.to_owned(), bytes);
            }
        }
    }

    /// Removes the document at `key`.
    pub fn delete(&mut self, key: &str) {
        match &mut self.backend {
            Backend::Host => crate::projection_bindings::cairn::plugin::documents::delete(key),
            Backend::Memory(map) => {
                map.remove(key);
            }
        }
    }

    /// Every key held in memory, in order (in-memory documents only; for tests).
    pub fn keys(&self) -> Vec<String> {
        match &self.backend {
            Backend::Host => Vec::new(),
            Backend::Memory(map) => map.keys().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_memory_round_trip() {
        let mut docs = Documents::in_memory();
        assert_eq!(docs.get::<i64>("a"), None);
        docs.put("a", &5_i64);
        assert_eq!(docs.get::<i64>("a"), Some(5));
        docs.delete("a");
        assert!(docs.keys().is_empty());
    }

    #[test]
    #[should_panic(expected = "document \"a\" does not decode as")]
    fn undecodable_documents_panic() {
        let mut docs = Documents::in_memory();
        docs.put("a", &"text");
        docs.get::<i64>("a");
    }
}
