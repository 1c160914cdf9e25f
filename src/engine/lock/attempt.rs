//! One acquire attempt (the write, and with fencing the raising of the
//! counters) and the clean-up of whatever a failed attempt or a lost lease
//! left behind.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::Inner;
use crate::engine::fanout::{acquire_vote, fenced_vote, script_vote, Reply, Trailing, Votes};
use crate::engine::quorum::Verdict;
use crate::engine::tracker::Tracker;

/// One acquire attempt: the replies of the write, and with fencing those of
/// raising the counters, which then decide it.
pub(super) struct Attempt {
  pub written: Votes,
  raised: Option<Votes>,
  pub fencing_token: Option<u64>,
}

impl Attempt {
  pub fn verdict(&self) -> Verdict {
    self.raised.as_ref().unwrap_or(&self.written).verdict
  }

  pub fn deciding(&self) -> &[Reply] {
    &self.raised.as_ref().unwrap_or(&self.written).replies
  }
}

impl Inner {
  /// Writes the lock to every node; with `fences`, then raises the
  /// counters of the resources to the new token on every node that still
  /// holds it, and the attempt stands or falls with that.
  pub(super) async fn attempt(
    &self,
    keys: &[String],
    fences: Option<&[String]>,
    value: &str,
    ttl_ms: u64,
    timeout: Duration,
    quarantine: Option<Duration>,
  ) -> Attempt {
    let Some(fences) = fences else {
      let request = Arc::new(self.scripts.acquire(keys, value, ttl_ms));
      let written = self
        .fan_out(&request, timeout, quarantine, acquire_vote)
        .await;
      return Attempt {
        written,
        raised: None,
        fencing_token: None,
      };
    };
    let highest = AtomicU64::new(0);
    let request = Arc::new(self.scripts.acquire_fenced(keys, fences, value, ttl_ms));
    let written = self
      .fan_out(&request, timeout, quarantine, fenced_vote(&highest))
      .await;
    if written.verdict != Verdict::Won {
      return Attempt {
        written,
        raised: None,
        fencing_token: None,
      };
    }
    let token = highest.load(Ordering::Relaxed) + 1;
    let request = Arc::new(self.scripts.fence(keys, fences, value, token));
    let raised = self
      .fan_out(&request, timeout, quarantine, script_vote(1))
      .await;
    Attempt {
      written,
      raised: Some(raised),
      fencing_token: Some(token),
    }
  }

  pub(super) async fn clean_up_attempt(&self, keys: &[String], value: &str, attempt: &Attempt) {
    let written = &attempt.written;
    self
      .clean_up(keys, value, &written.replies, written.trailing.as_ref())
      .await;
  }

  /// Removes this attempt's keys wherever they may have been written: nodes
  /// that granted are cleaned before returning, so a retry is never blocked
  /// by its own key; nodes that failed or had not answered are cleaned in the
  /// background, so a stuck node does not delay the caller. Those deletes
  /// wait for the attempt's trailing writes, so they cannot overtake them on
  /// a node that was connecting.
  pub(super) async fn clean_up(
    &self,
    keys: &[String],
    value: &str,
    replies: &[Reply],
    trailing: Option<&Trailing>,
  ) {
    let request = Arc::new(self.scripts.release(keys, value));
    let mut granted = Vec::new();
    for (node, reply) in self.nodes.iter().zip(replies) {
      match reply {
        Reply::Refused => {}
        Reply::Granted => granted.push(node),
        Reply::Pending | Reply::Failed(_) => {
          let node = node.clone();
          let request = request.clone();
          let timeout = self.config.command_timeout;
          let trailing = trailing.cloned();
          let tracked = Tracker::track(&self.work);
          tokio::spawn(async move {
            if let Some(trailing) = trailing {
              trailing.done(timeout).await;
            }
            let _ = tokio::time::timeout(timeout, node.query(&request)).await;
            drop(tracked);
          });
        }
      }
    }
    if !granted.is_empty() {
      let deletes = granted.iter().map(|node| node.query(&request));
      let _ = tokio::time::timeout(
        self.config.command_timeout,
        futures_util::future::join_all(deletes),
      )
      .await;
    }
  }
}
