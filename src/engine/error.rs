//! The engine's errors. Each carries the stable `code` that callers branch on;
//! the binding turns them into JavaScript errors in one place.

use std::fmt;

use super::shape::plain;

/// What errors carry for callers (see `shape`).
macro_rules! error_shapes {
  ($expand:ident) => {
    $expand! {
      in crate::engine::error;

      #[doc = "One node's failure in an `ERR_QUORUM_UNAVAILABLE` error."]
      #[derive(Clone, Debug, PartialEq, Eq)]
      pub struct NodeError {
        #[doc = "The node as `host:port`, never with its password."]
        pub node: String,
        #[doc = "Why it did not answer, or why its answer did not count."]
        pub message: String,
      }
    }
  };
}

pub(crate) use error_shapes;
error_shapes!(plain);

#[derive(Clone, Debug, PartialEq)]
pub enum LockError {
  /// A bad option, resource, TTL or handle.
  InvalidArg(String),
  /// The lock instance was closed before or during the call.
  Closed,
  /// The caller aborted the wait.
  Aborted,
  /// Fewer than a majority of nodes answered the last attempt.
  QuorumUnavailable {
    quorum: usize,
    nodes: usize,
    node_errors: Vec<NodeError>,
  },
  /// A bug inside the library (a panic caught at the boundary), with its
  /// message.
  Internal(String),
}

impl LockError {
  pub fn code(&self) -> &'static str {
    match self {
      LockError::InvalidArg(_) => "ERR_INVALID_ARG",
      LockError::Closed => "ERR_LOCK_CLOSED",
      LockError::Aborted => "ABORT_ERR",
      LockError::QuorumUnavailable { .. } => "ERR_QUORUM_UNAVAILABLE",
      LockError::Internal(_) => "ERR_INTERNAL",
    }
  }
}

impl fmt::Display for LockError {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match self {
      LockError::InvalidArg(message) => f.write_str(message),
      LockError::Closed => f.write_str("the lock was closed: create a new DistributedLock"),
      LockError::Aborted => f.write_str("the wait for the lock was aborted"),
      LockError::QuorumUnavailable {
        quorum,
        nodes,
        node_errors,
      } => {
        write!(
          f,
          "quorum unavailable: {} of {nodes} nodes failed, {quorum} must answer",
          node_errors.len()
        )?;
        for error in node_errors {
          write!(f, "; {}: {}", error.node, error.message)?;
        }
        Ok(())
      }
      LockError::Internal(message) => write!(
        f,
        "internal error in redis-quorum-lock (please report it): {message}"
      ),
    }
  }
}

impl std::error::Error for LockError {}
