//! The log's write side and its fan-out: `appender.rs` is group commit (one queue, one
//! writer task, batches per transaction) and the log heads it moves after each commit;
//! `live.rs` hands committed events to live subscribers from memory. Every append of
//! every service goes through here to the store.

pub mod appender;
pub mod fair_batch;
pub mod live;
