//! How the SQLite library allocates, set once per process before its first connection.
//!
//! Built as sqlx bundles it, SQLite allocates with glibc's `malloc` and counts every
//! allocation under one process-wide mutex (its memory statistics, which Cairn never
//! reads). A projection catch-up's profile spent ~6% of its CPU in that mutex and
//! ~11% in glibc's allocator (rows are copied into and freed from SQLite's memory one
//! value at a time, on several connection threads at once). Here the statistics are
//! turned off and SQLite allocates from mimalloc, the allocator the server already
//! uses for everything else.

use std::ffi::{c_int, c_void};
use std::sync::Once;

use libsqlite3_sys as ffi;

static CONFIGURED: Once = Once::new();

/// Configures the library if this process has not yet; a no-op after that. Must run
/// before any SQLite connection is opened (every `SqliteStore::open` calls it first):
/// `sqlite3_config` is refused once the library is initialised, and then the library
/// simply keeps its defaults, which are correct, only slower.
pub(super) fn configure() {
    CONFIGURED.call_once(|| {
        let methods = ffi::sqlite3_mem_methods {
            xMalloc: Some(malloc),
            xFree: Some(free),
            xRealloc: Some(realloc),
            xSize: Some(size),
            xRoundup: Some(roundup),
            xInit: Some(init),
            xShutdown: Some(shutdown),
            pAppData: std::ptr::null_mut(),
        };
        // SAFETY: `call_once` runs this on one thread, and nothing else in the process
        // calls into SQLite before a store is opened. `SQLITE_CONFIG_MALLOC` copies the
        // methods, so the local struct may go; its functions are `'static`.
        let configured = unsafe {
            ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int) == ffi::SQLITE_OK
                && ffi::sqlite3_config(
                    ffi::SQLITE_CONFIG_MALLOC,
                    &methods as *const ffi::sqlite3_mem_methods,
                ) == ffi::SQLITE_OK
                && ffi::sqlite3_initialize() == ffi::SQLITE_OK
        };
        if !configured {
            tracing::debug!("SQLite was initialised before its allocator could be set");
        }
    });
}

// The methods SQLite calls. mimalloc's blocks are 16-byte aligned (SQLite asks for 8),
// know their own size, and may be freed from any thread.

unsafe extern "C" fn malloc(bytes: c_int) -> *mut c_void {
    // SAFETY: any size is valid for mi_malloc; SQLite never asks for a negative one.
    unsafe { libmimalloc_sys::mi_malloc(bytes.max(0) as usize) }
}

unsafe extern "C" fn free(block: *mut c_void) {
    // SAFETY: SQLite frees only what `malloc`/`realloc` above returned.
    unsafe { libmimalloc_sys::mi_free(block) }
}

unsafe extern "C" fn realloc(block: *mut c_void, bytes: c_int) -> *mut c_void {
    // SAFETY: as for `free`.
    unsafe { libmimalloc_sys::mi_realloc(block, bytes.max(0) as usize) }
}

unsafe extern "C" fn size(block: *mut c_void) -> c_int {
    // SAFETY: as for `free`; SQLite's allocations stay far below 2 GiB.
    unsafe { libmimalloc_sys::mi_usable_size(block) as c_int }
}

unsafe extern "C" fn roundup(bytes: c_int) -> c_int {
    // mimalloc's smallest size class is 8 bytes; SQLite only needs a size `malloc`
    // would give at least, so rounding to 8 is always true.
    (bytes + 7) & !7
}

unsafe extern "C" fn init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn shutdown(_: *mut c_void) {}

#[cfg(test)]
mod tests {
    use super::*;

    /// With SQLite's statistics off its count of memory in use stays 0, where a
    /// library left as bundled counts every connection's allocations.
    #[tokio::test]
    async fn a_store_opened_leaves_sqlite_uncounted_and_working() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("cairn.db").display());
        let store = crate::store::sqlite::SqliteStore::open(&url).await.unwrap();
        let tenant = crate::store::TenantId::parse("acme").unwrap();
        use crate::store::EventStore;
        assert_eq!(store.head(&tenant).await.unwrap(), 0);
        // SAFETY: a read of a counter, valid at any time.
        assert_eq!(unsafe { ffi::sqlite3_memory_used() }, 0);
    }
}
