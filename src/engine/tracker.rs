//! Counts the work of one lock instance that is still under way, calls and
//! every command they issued until its node answers (those whose callers
//! decided without them too), so that `close` can let it finish before it
//! closes the connections.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

#[derive(Default)]
pub struct Tracker {
  count: AtomicUsize,
  idle: Notify,
}

/// One piece of work under way, until dropped.
pub struct Tracked(Arc<Tracker>);

impl Tracker {
  pub fn track(this: &Arc<Tracker>) -> Tracked {
    this.count.fetch_add(1, Ordering::SeqCst);
    Tracked(this.clone())
  }

  /// Resolves once nothing is under way.
  pub async fn idle(&self) {
    loop {
      let idle = self.idle.notified();
      if self.count.load(Ordering::SeqCst) == 0 {
        return;
      }
      idle.await;
    }
  }
}

impl Drop for Tracked {
  fn drop(&mut self) {
    if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
      self.0.idle.notify_waiters();
    }
  }
}
