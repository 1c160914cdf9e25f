//! A Redlock distributed lock over independent Redis nodes: the engine (no
//! JavaScript in it) and the thin napi-rs binding that exposes it to Node.js.
#![deny(clippy::all)]

pub mod binding;
pub mod engine;

// Every call allocates on one thread and frees on the other (JavaScript and
// I/O); glibc's allocator was a sixth of the CPU profile of a busy lock, and
// mimalloc cut the CPU per acquire+release pair by about a tenth.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
