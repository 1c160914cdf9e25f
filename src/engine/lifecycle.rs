//! Whether a lock instance is closed: one flag, shared by every part that
//! must stop with it (the calls, the registry, the watchdog, the waiters),
//! so that they cannot disagree about it.

use tokio::sync::watch;

/// The closed state of one lock instance; clones share it.
#[derive(Clone)]
pub struct Lifecycle(watch::Sender<bool>);

impl Default for Lifecycle {
  fn default() -> Self {
    Lifecycle(watch::Sender::new(false))
  }
}

impl Lifecycle {
  /// Closes the instance; `true` only for the call that closed it.
  pub fn close(&self) -> bool {
    !self.0.send_replace(true)
  }

  pub fn is_closed(&self) -> bool {
    *self.0.borrow()
  }

  /// Resolves once the instance is closed.
  pub async fn closed(&self) {
    let mut closed = self.0.subscribe();
    // A sender is held here, so the wait cannot end in an error.
    let _ = closed.wait_for(|closed| *closed).await;
  }
}

#[cfg(test)]
mod tests {
  use futures_util::FutureExt;

  use super::*;

  #[test]
  fn the_first_close_closes_and_every_clone_sees_it() {
    let lifecycle = Lifecycle::default();
    let clone = lifecycle.clone();
    assert!(!clone.is_closed());
    assert!(clone.closed().now_or_never().is_none());
    assert!(lifecycle.close());
    assert!(!clone.close(), "a second close is not the one that closed");
    assert!(clone.is_closed());
    assert!(clone.closed().now_or_never().is_some());
  }
}
