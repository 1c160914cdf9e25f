//! A held lease: extending it, giving it up when an extension fails, and
//! releasing it. Each starts by issuing its command to every node, which
//! puts it behind the acquire's writes on every node's connection, even on
//! one still connecting.

use std::time::{Duration, Instant};

use super::Inner;
use crate::engine::fanout::{issue, issue_follow_up, script_vote, tally, Issued, Reply, Votes};
use crate::engine::quorum::{lease, Began, Lease, Verdict};
use crate::engine::registry::HeldLock;

/// An extension on its way to every node.
pub(super) struct Extension {
  id: u64,
  pub lock: HeldLock,
  ttl_ms: u64,
  began: Began,
  issued: Issued,
}

/// A release on its way to every node.
pub(super) struct Release {
  lock: HeldLock,
  issued: Issued,
}

impl Inner {
  /// Issues the extension of lock `id` to `ttl_ms` (its acquire TTL when
  /// `None`); `None` when this instance does not hold it.
  pub(super) fn begin_extend(&self, id: u64, ttl_ms: Option<u64>) -> Option<Extension> {
    let lock = self.registry().get(id)?;
    let ttl_ms = ttl_ms.unwrap_or(lock.ttl_ms);
    self.use_ttl(ttl_ms);
    let request = self.scripts.extend(&lock.keys, &lock.value, ttl_ms);
    let (began, issued) = {
      let _in_order = self
        .issuing_extension
        .lock()
        .unwrap_or_else(|e| e.into_inner());
      (Began::now(), issue(&self.nodes, &request))
    };
    Some(Extension {
      id,
      lock,
      ttl_ms,
      began,
      issued,
    })
  }

  /// The extension's new lease when a majority extended it in time, and
  /// the votes; with `by`, a majority that has not answered by then has
  /// failed.
  pub(super) async fn finish_extend(
    &self,
    extension: Extension,
    by: Option<Instant>,
  ) -> (Option<Lease>, Votes) {
    let Extension {
      id,
      ttl_ms,
      began,
      issued,
      ..
    } = extension;
    let mut timeout = self
      .config
      .command_timeout
      .min(Duration::from_millis(ttl_ms));
    if let Some(by) = by {
      timeout = timeout.min(by.saturating_duration_since(began.at));
    }
    let quarantine = self.quarantine();
    let votes = self.noted(tally(&self.nodes, issued, timeout, quarantine, script_vote(1)).await);
    let extended = match votes.verdict {
      Verdict::Won => lease(began, ttl_ms, Instant::now(), self.config.drift_factor),
      _ => None,
    };
    // A lease given up meanwhile (the watchdog's extension ran out of time)
    // stays lost: its keys are being deleted.
    let extended = extended.filter(|lease| {
      let gone_at = self.keys_gone_at(began, ttl_ms);
      self
        .registry()
        .extend(id, began.at, ttl_ms, lease.until, gone_at)
    });
    (extended, votes)
  }

  /// The lease is lost, and out of the registry: what is left of it on a
  /// minority goes now rather than stand in the next owner's way. A release:
  /// where it still held, waiters may now take it.
  pub(super) async fn give_up(&self, lock: &HeldLock, replies: &[Reply]) {
    let request = self.scripts.release(&lock.keys, &lock.value);
    self
      .delete(&request, replies, self.config.command_timeout)
      .await;
  }

  /// Issues the release of `lock` to every node, now: behind the lock's
  /// writes, also on a node that is stalled.
  pub(super) fn begin_release(&self, lock: HeldLock) -> Release {
    let request = self.scripts.release(&lock.keys, &lock.value);
    let issued = issue_follow_up(&self.nodes, &request);
    Release { lock, issued }
  }

  /// Whether a majority still held the lock, and the votes.
  pub(super) async fn finish_release(&self, release: Release) -> (bool, Votes) {
    let Release { lock, issued } = release;
    let votes = self.noted(
      tally(
        &self.nodes,
        issued,
        self.config.command_timeout,
        self.quarantine(),
        script_vote(lock.keys.len() as i64),
      )
      .await,
    );
    (votes.verdict == Verdict::Won, votes)
  }
}
