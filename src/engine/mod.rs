//! The quorum engine: Redis and the Redlock algorithm, nothing of JavaScript.
//!
//! `config` holds every default, `node` parses node addresses,
//! `credentials` coalesces the calls of a credentials provider and renews
//! what it returned ahead of expiry, `quorum` the pure arithmetic,
//! `connection` one connection per node that delivers commands in issue
//! order, `scripts` the commands and Lua scripts, `fanout`
//! one command issued to every node and tallied at quorum, `registry` the
//! locks held, `tracker` the work under way, `lifecycle` the one closed
//! state, `observe` the counts and events of an instance, `watchdog` the schedule of auto-extended leases, `waiters` the
//! release notifications, `lock` the orchestration, `error` the error codes,
//! and `shape` how the shapes callers read are declared once. It is tested
//! with `cargo test` alone; one test starts its own `redis-server` nodes.

pub mod config;
pub mod connection;
pub mod credentials;
pub mod error;
pub mod fanout;
pub mod lifecycle;
pub mod lock;
pub mod node;
pub mod observe;
pub mod quorum;
pub mod registry;
pub mod scripts;
pub mod shape;
pub mod tracker;
pub mod waiters;
pub mod watchdog;
