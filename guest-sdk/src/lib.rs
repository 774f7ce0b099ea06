//! Cairn guest SDK.
