//! A held lease: extending it, giving it up when an extension fails, and
//! releasing it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Inner;
use crate::engine::fanout::{script_vote, Reply};
use crate::engine::quorum::{validity_ms, Verdict};
use crate::engine::registry::HeldLock;

impl Inner {
  /// One extension to `ttl_ms` on every node that still holds the lock:
  /// its new validity when a majority extended it in time, and the replies.
  pub(super) async fn try_extend(
    &self,
    id: u64,
    lock: &HeldLock,
    ttl_ms: u64,
  ) -> (Option<u64>, Vec<Reply>) {
    self.acquire_writes_landed(lock).await;
    let request = Arc::new(self.scripts.extend(&lock.keys, &lock.value, ttl_ms));
    let start = Instant::now();
    let timeout = self
      .config
      .command_timeout
      .min(Duration::from_millis(ttl_ms));
    let quarantine = self.quarantine(ttl_ms);
    let votes = self
      .fan_out(&request, timeout, quarantine, script_vote(1))
      .await;
    let validity = match votes.verdict {
      Verdict::Won => validity_ms(ttl_ms, start.elapsed(), self.config.drift_factor),
      _ => None,
    };
    if let Some(ms) = validity {
      let valid_until = Instant::now() + Duration::from_millis(ms);
      let gone_at = start + Duration::from_millis(ttl_ms) + self.config.command_timeout;
      self.registry().extend(id, valid_until, gone_at);
    }
    (validity, votes.replies)
  }

  /// The lease is lost: the lock leaves the registry, and what is left of it
  /// on a minority goes now rather than stand in the next owner's way.
  pub(super) async fn give_up(&self, id: u64, lock: &HeldLock, replies: &[Reply]) {
    self.registry().remove(id);
    self
      .clean_up(&lock.keys, &lock.value, replies, lock.trailing.as_ref())
      .await;
  }

  pub(super) async fn release_held(&self, lock: &HeldLock) -> bool {
    self.acquire_writes_landed(lock).await;
    let request = Arc::new(self.scripts.release(&lock.keys, &lock.value));
    let votes = self
      .fan_out(
        &request,
        self.config.command_timeout,
        self.quarantine(lock.ttl_ms),
        script_vote(lock.keys.len() as i64),
      )
      .await;
    votes.verdict == Verdict::Won
  }

  /// Waits for the acquire's writes still on their way to nodes that were
  /// connecting (bounded by that attempt's own deadline). A later command on
  /// the key that overtook them there would be undone: a delete by the write
  /// landing after it, an extension by finding no key and the write then
  /// leaving its first TTL.
  async fn acquire_writes_landed(&self, lock: &HeldLock) {
    if let Some(trailing) = &lock.trailing {
      trailing.done(self.config.command_timeout).await;
    }
  }
}
