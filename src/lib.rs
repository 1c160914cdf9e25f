//! A Redlock distributed lock over independent Redis nodes: the engine (no
//! JavaScript in it) and the thin napi-rs binding that exposes it to Node.js.
#![deny(clippy::all)]

pub mod binding;
pub mod engine;
