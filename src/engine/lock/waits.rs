//! The pauses of an acquire between attempts: the retry delay, or, when
//! waiting, the holder's release or the end of its lease.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::Inner;
use crate::engine::config::RetryPolicy;
use crate::engine::error::LockError;
use crate::engine::quorum::quorum_of;
use crate::engine::scripts::Request;
use crate::engine::waiters::Waiting;

impl Inner {
  /// Waits the retry delay plus jitter, until `deadline` at the latest;
  /// fails at once when closed or aborted.
  pub(super) async fn pause(
    &self,
    retry: RetryPolicy,
    deadline: Option<Instant>,
    cancel: Option<watch::Receiver<bool>>,
  ) -> Result<(), LockError> {
    let jitter_ms = retry.jitter.as_millis() as u64;
    let extra = if jitter_ms == 0 {
      0
    } else {
      rand::random_range(0..=jitter_ms)
    };
    let until = Instant::now() + retry.delay + Duration::from_millis(extra);
    let until = deadline.map_or(until, |deadline| until.min(deadline));
    self
      .interruptible(tokio::time::sleep_until(until.into()), cancel)
      .await
  }

  /// Waits, until `deadline` at the latest, for the holder of `keys` to
  /// release or its lease to run out. The first time it joins the waiters
  /// instead, and returns once subscribed (within one command timeout), so
  /// that the caller tries again at once: a release between its last attempt
  /// and the subscription would otherwise go unnoticed.
  pub(super) async fn wait_for_release(
    &self,
    waiting: &mut Option<Waiting>,
    keys: &[String],
    deadline: Instant,
  ) {
    let wait = async {
      match waiting {
        None => {
          let (joined, subscribed) = self.waiters.join(keys);
          *waiting = Some(joined);
          let _ = tokio::time::timeout(self.config.command_timeout, subscribed).await;
        }
        Some(waiting) => {
          let holder_left = self.holder_ttl(&keys[0]).await;
          tokio::select! {
            () = tokio::time::sleep(holder_left) => {}
            () = waiting.released() => {}
          }
        }
      }
    };
    let _ = tokio::time::timeout_at(deadline.into(), wait).await;
  }

  /// How long until a majority of `key`'s copies expire: the quorum-th
  /// smallest remaining TTL across the nodes (a node without the key, or
  /// silent, counts as zero). Half a second when no node answers at all.
  async fn holder_ttl(&self, key: &str) -> Duration {
    let mut cmd = redis::cmd("PTTL");
    cmd.arg(key);
    let request = Request::new(cmd);
    let replies = futures_util::future::join_all(
      self
        .nodes
        .iter()
        .map(|node| tokio::time::timeout(self.config.command_timeout, node.query(&request))),
    )
    .await;
    if replies
      .iter()
      .all(|reply| !matches!(reply, Ok(Ok(redis::Value::Int(_)))))
    {
      return Duration::from_millis(500);
    }
    let mut left: Vec<u64> = replies
      .into_iter()
      .map(|reply| match reply {
        Ok(Ok(redis::Value::Int(ms))) if ms > 0 => ms as u64,
        _ => 0,
      })
      .collect();
    left.sort_unstable();
    Duration::from_millis(left[quorum_of(left.len()) - 1] + 1)
  }

  /// Runs `wait`, unless the instance closes or the caller aborts first.
  pub(super) async fn interruptible(
    &self,
    wait: impl std::future::Future<Output = ()>,
    cancel: Option<watch::Receiver<bool>>,
  ) -> Result<(), LockError> {
    let aborted = async move {
      match cancel {
        Some(mut cancel) => {
          let _ = cancel.wait_for(|aborted| *aborted).await;
        }
        None => std::future::pending().await,
      }
    };
    tokio::select! {
      () = wait => Ok(()),
      () = self.lifecycle.closed() => Err(LockError::Closed),
      () = aborted => Err(LockError::Aborted),
    }
  }
}
