//! The watchdog task: extends auto-extended leases when their schedule says
//! so, and reports the ones it lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Inner;
use crate::engine::observe::{Count, LockEvent};
use crate::engine::watchdog::next_extension;

/// How soon the watchdog tries again after an extension failed.
const WATCHDOG_RETRY: Duration = Duration::from_millis(100);

impl Inner {
  /// Puts lock `id` on the watchdog's schedule, starting the watchdog task
  /// with the first lock. The task holds the instance weakly: a lock
  /// instance dropped without `close` stops it too.
  pub(super) fn watch(this: &Arc<Inner>, id: u64, validity_ms: u64) {
    if !this.schedule.add(id, next_extension(validity_ms)) {
      return;
    }
    let schedule = this.schedule.clone();
    let inner = Arc::downgrade(this);
    tokio::spawn(async move {
      while let Some(due) = schedule.next_due().await {
        let Some(live) = inner.upgrade() else { return };
        for id in due {
          let live = live.clone();
          tokio::spawn(async move { Inner::keep_alive(&live, id).await });
        }
      }
    });
  }

  /// One watchdog extension of lock `id`, given up at the end of the lease's
  /// validity. A failed one is tried again while the lease is still valid,
  /// unless a majority refused it (their keys are gone or another owner's);
  /// when none succeeds in time the lease is lost and `on_lost` is told,
  /// unless the lock was released meanwhile.
  async fn keep_alive(this: &Arc<Inner>, id: u64) {
    if this.lifecycle.is_closed() {
      return;
    }
    let Some(extension) = this.begin_extend(id, None) else {
      return;
    };
    let by = extension.lock.valid_until;
    let (lease, votes) = this.finish_extend(extension, Some(by)).await;
    let validity = lease.map(|lease| lease.ms);
    let observer = &this.observer;
    let told = |lost: bool| {
      if observer.wants_watchdog() {
        observer.tell(LockEvent::watchdog(id, validity, lost, &votes));
      }
    };
    if let Some(ms) = validity {
      observer.count(Count::Extended);
      told(false);
      Inner::watch(this, id, ms);
      return;
    }
    observer.count(Count::ExtensionFailed);
    let Some(latest) = this.registry().get(id) else {
      told(false);
      return;
    };
    // A retry's wait is cut at the end of the validity too.
    let retry_at = Instant::now() + WATCHDOG_RETRY;
    if !votes.refused_by_majority() && retry_at < latest.valid_until {
      told(false);
      this.schedule.add(id, retry_at.into());
      return;
    }
    let Some(lost) = this.registry().remove(id) else {
      told(false);
      return;
    };
    observer.count(Count::Lost);
    told(true);
    // Told before the delete is answered: the lease ended already.
    (this.on_lost)(id);
    this.give_up(&lost, &votes.replies).await;
  }
}
