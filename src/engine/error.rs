//! The engine's errors. Each carries the stable `code` that callers branch on;
//! the binding turns them into JavaScript errors in one place.

use std::fmt;

/// Why one node did not vote: its label (never its password) and the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeError {
  pub node: String,
  pub message: String,
}

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
}

impl LockError {
  pub fn code(&self) -> &'static str {
    match self {
      LockError::InvalidArg(_) => "ERR_INVALID_ARG",
      LockError::Closed => "ERR_LOCK_CLOSED",
      LockError::Aborted => "ABORT_ERR",
      LockError::QuorumUnavailable { .. } => "ERR_QUORUM_UNAVAILABLE",
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
    }
  }
}

impl std::error::Error for LockError {}
