//! A projection's documents: JSON values by key, read and written through the host
//! (inside the host's transaction), or kept in memory for native tests.
//!
//! Through the host, the documents a batch touches are kept here until the batch
//! ends: a key read twice is fetched once, and a key written many times is sent once,
//! at the end (`flush`). A batch often holds several events of one stream, and every
//! crossing of the component boundary copies the document, so this halves the host
//! calls of a typical projection. The host's own guarantees are unchanged: it still
//! sees every final write before `handle` returns, and a trap discards the batch.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, DefaultHasher};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Bytes of documents kept between host calls before the writes are sent early and
/// the cache emptied: a batch may touch thousands of large documents, and the
/// plugin's memory limit is the host's to choose, not ours.
const CACHE_BYTES: usize = 4 << 20;

/// The documents of the projection being run.
pub struct Documents {
    backend: Backend,
}

enum Backend {
    /// The `documents` interface the host provides to the component. A `RefCell`:
    /// `get` takes `&self` (reading a document changes nothing a caller can see), and
    /// a component runs on one thread.
    Host(RefCell<Cache>),
    /// A map, for tests that run natively.
    Memory(BTreeMap<String, Vec<u8>>),
}

/// Where the cache reads from and writes to: the host, or a fake in tests.
trait Remote {
    fn get(&self, key: &str) -> Option<Vec<u8>>;
    fn put(&self, key: &str, doc: &[u8]);
    fn delete(&self, key: &str);
}

/// The host's `documents` interface.
#[derive(Default)]
struct HostDocuments;

impl Remote for HostDocuments {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        crate::projection_bindings::cairn::plugin::documents::get(key)
    }
    fn put(&self, key: &str, doc: &[u8]) {
        crate::projection_bindings::cairn::plugin::documents::put(key, doc)
    }
    fn delete(&self, key: &str) {
        crate::projection_bindings::cairn::plugin::documents::delete(key)
    }
}

/// The documents of this batch seen so far, by key.
#[derive(Default)]
struct Cache<R = HostDocuments> {
    remote: R,
    /// A `HashMap` with fixed keys: a `BTreeMap` compared keys that share a prefix
    /// (`account-…`) byte by byte, which in WebAssembly was a sixth of a batch's time.
    entries: HashMap<String, Entry, BuildHasherDefault<DefaultHasher>>,
    /// The keys written since the last flush, in the order first written, so that
    /// the writes reach the host in one order every time the batch is run.
    dirty: Vec<String>,
    /// Key and document bytes held in `entries`.
    bytes: usize,
}

struct Entry {
    /// The document as it stands in this batch; `None`: there is none.
    doc: Option<Vec<u8>>,
    /// Written (or deleted) in this batch and not yet sent to the host.
    dirty: bool,
}

impl<R: Remote> Cache<R> {
    fn get(&mut self, key: &str) -> Option<&[u8]> {
        if !self.entries.contains_key(key) {
            let doc = self.remote.get(key);
            self.keep(key, doc, false);
        }
        self.entries.get(key)?.doc.as_deref()
    }

    fn keep(&mut self, key: &str, doc: Option<Vec<u8>>, dirty: bool) {
        if self.bytes > CACHE_BYTES {
            self.flush();
            self.entries.clear();
            self.bytes = 0;
        }
        self.bytes += key.len() + doc.as_ref().map_or(0, Vec::len);
        match self.entries.get_mut(key) {
            Some(entry) => {
                self.bytes -= key.len() + entry.doc.as_ref().map_or(0, Vec::len);
                if dirty && !entry.dirty {
                    self.dirty.push(key.to_owned());
                }
                entry.doc = doc;
                entry.dirty |= dirty;
            }
            None => {
                if dirty {
                    self.dirty.push(key.to_owned());
                }
                self.entries.insert(key.to_owned(), Entry { doc, dirty });
            }
        }
    }

    /// Sends every write not yet sent to the host.
    fn flush(&mut self) {
        for key in std::mem::take(&mut self.dirty) {
            let entry = self.entries.get_mut(&key).expect("a dirty key is cached");
            entry.dirty = false;
            match &entry.doc {
                Some(doc) => self.remote.put(&key, doc),
                None => self.remote.delete(&key),
            }
        }
    }
}

impl Documents {
    pub(crate) fn host() -> Documents {
        Documents {
            backend: Backend::Host(RefCell::default()),
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
        let mut cache;
        let bytes = match &self.backend {
            Backend::Host(cell) => {
                cache = cell.borrow_mut();
                cache.get(key)?
            }
            Backend::Memory(map) => map.get(key)?,
        };
        match serde_json::from_slice(bytes) {
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
            Backend::Host(cache) => cache.get_mut().keep(key, Some(bytes), true),
            Backend::Memory(map) => {
                map.insert(key.to_owned(), bytes);
            }
        }
    }

    /// Removes the document at `key`.
    pub fn delete(&mut self, key: &str) {
        match &mut self.backend {
            Backend::Host(cache) => cache.get_mut().keep(key, None, true),
            Backend::Memory(map) => {
                map.remove(key);
            }
        }
    }

    /// Sends the batch's writes to the host (the glue calls this when `handle` ends).
    pub(crate) fn flush(&mut self) {
        if let Backend::Host(cache) = &mut self.backend {
            cache.get_mut().flush();
        }
    }

    /// Every key held in memory, in order (in-memory documents only; for tests).
    pub fn keys(&self) -> Vec<String> {
        match &self.backend {
            Backend::Host(_) => Vec::new(),
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

    /// Records the calls that reached it.
    #[derive(Default)]
    struct Recorder {
        stored: RefCell<BTreeMap<String, Vec<u8>>>,
        calls: RefCell<Vec<String>>,
    }

    impl Remote for Recorder {
        fn get(&self, key: &str) -> Option<Vec<u8>> {
            self.calls.borrow_mut().push(format!("get {key}"));
            self.stored.borrow().get(key).cloned()
        }
        fn put(&self, key: &str, doc: &[u8]) {
            let doc = String::from_utf8_lossy(doc);
            self.calls.borrow_mut().push(format!("put {key} {doc}"));
            self.stored
                .borrow_mut()
                .insert(key.into(), doc.as_bytes().to_vec());
        }
        fn delete(&self, key: &str) {
            self.calls.borrow_mut().push(format!("delete {key}"));
            self.stored.borrow_mut().remove(key);
        }
    }

    #[test]
    fn a_batch_reads_each_key_once_and_writes_it_once_at_the_end() {
        let mut cache = Cache::<Recorder>::default();
        cache
            .remote
            .stored
            .borrow_mut()
            .insert("a".into(), b"1".to_vec());
        for n in 2..=4 {
            assert!(cache.get("a").is_some());
            cache.keep("a", Some(n.to_string().into_bytes()), true);
        }
        assert_eq!(cache.get("a"), Some(&b"4"[..]));
        assert_eq!(cache.get("b"), None);
        cache.keep("b", Some(b"7".to_vec()), true);
        cache.keep("b", None, true);
        assert_eq!(cache.get("b"), None);
        assert_eq!(*cache.remote.calls.borrow(), ["get a", "get b"]);
        cache.flush();
        assert_eq!(
            *cache.remote.calls.borrow(),
            ["get a", "get b", "put a 4", "delete b"]
        );
        // Sent once: a second flush has nothing to send.
        cache.flush();
        assert_eq!(cache.remote.calls.borrow().len(), 4);
    }

    #[test]
    fn a_full_cache_sends_its_writes_early_and_starts_again() {
        let mut cache = Cache::<Recorder>::default();
        let big = vec![b'1'; CACHE_BYTES / 2];
        for key in ["a", "b", "c"] {
            cache.keep(key, Some(big.clone()), true);
        }
        // "a" and "b" went out when "c" came in; "c" waits for the end of the batch.
        assert_eq!(cache.remote.stored.borrow().len(), 2);
        assert_eq!(cache.get("a").map(|d| d.len()), Some(big.len()));
        assert!(
            cache
                .remote
                .calls
                .borrow()
                .last()
                .unwrap()
                .starts_with("get a")
        );
        cache.flush();
        assert_eq!(cache.remote.stored.borrow().len(), 3);
    }

    #[test]
    #[should_panic(expected = "document \"a\" does not decode as")]
    fn undecodable_documents_panic() {
        let mut docs = Documents::in_memory();
        docs.put("a", &"text");
        docs.get::<i64>("a");
    }
}
