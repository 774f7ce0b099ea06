//! The shared vocabulary every layer speaks and none owns: how an aggregate's name
//! and an instance id become a stream name (invariant 17). A leaf: it imports nothing
//! of the crate, so services, background workers and the API can all use it without
//! depending on each other.

/// The category of an aggregate's streams: its name with each `-` written `_`.
///
/// Plugin names may hold dashes but never underscores, and a stream's category is
/// the part before its first dash (KurrentDB's convention), so the mapping from
/// (aggregate, id) to stream is one-to-one: `ev` with id `a-1` is `ev-a-1`, `ev-a`
/// with id `1` is `ev_a-1`. Names without a dash, the usual case, keep `{name}-{id}`.
pub fn stream_category(plugin: &str) -> String {
    plugin.replace('-', "_")
}

/// The stream an aggregate instance handles: `{category}-{id}`.
pub fn stream_of(plugin: &str, id: &str) -> String {
    format!("{}-{id}", stream_category(plugin))
}

/// What every stream of an aggregate starts with, and only its streams do.
pub fn stream_prefix(plugin: &str) -> String {
    format!("{}-", stream_category(plugin))
}
