//! The schedule of the native watchdog: when each auto-extended lease is
//! due for its next extension. One task per lock instance sleeps until the
//! earliest one, so ten thousand leases cost one timer, not ten thousand.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::lifecycle::Lifecycle;

pub struct Schedule {
  due: Mutex<Due>,
  changed: Notify,
  running: AtomicBool,
  /// The instance's: the schedule ends when it closes.
  lifecycle: Lifecycle,
}

/// The turns in time order, and each lease's pending one: a lease scheduled
/// again earlier (an extension that shortened its validity) keeps one turn,
/// and the one it replaced is skipped when it comes up.
#[derive(Default)]
struct Due {
  turns: BinaryHeap<Reverse<(Instant, u64)>>,
  pending: HashMap<u64, Instant>,
}

impl Schedule {
  pub fn new(lifecycle: Lifecycle) -> Self {
    Schedule {
      due: Mutex::default(),
      changed: Notify::new(),
      running: AtomicBool::new(false),
      lifecycle,
    }
  }

  /// Schedules lock `id` for extension at `at`, unless the turn it has
  /// comes first: one turn too early costs an extension, one too late may
  /// cost the lease. `true` the first time, when the caller must start the
  /// task that serves the schedule.
  pub fn add(&self, id: u64, at: Instant) -> bool {
    let mut due = self.lock();
    if due.pending.get(&id).is_none_or(|&pending| at < pending) {
      due.turns.push(Reverse((at, id)));
      due.pending.insert(id, at);
    }
    drop(due);
    self.changed.notify_one();
    !self.running.swap(true, Ordering::SeqCst)
  }

  /// Waits until at least one lease is due or the instance closes; returns
  /// the due ids, or `None` once closed.
  pub async fn next_due(&self) -> Option<Vec<u64>> {
    loop {
      let changed = self.changed.notified();
      if self.lifecycle.is_closed() {
        return None;
      }
      let now = Instant::now();
      let next = {
        let mut due = self.lock();
        let mut ready = Vec::new();
        while let Some(Reverse((at, id))) = due.turns.peek().copied() {
          let replaced = due.pending.get(&id) != Some(&at);
          if !replaced && at > now {
            break;
          }
          due.turns.pop();
          if !replaced {
            due.pending.remove(&id);
            ready.push(id);
          }
        }
        if !ready.is_empty() {
          return Some(ready);
        }
        due.turns.peek().map(|Reverse((at, _))| *at)
      };
      let sleep = async {
        match next {
          Some(at) => tokio::time::sleep_until(at).await,
          None => std::future::pending().await,
        }
      };
      tokio::select! {
        () = sleep => {}
        () = changed => {}
        () = self.lifecycle.closed() => return None,
      }
    }
  }

  fn lock(&self) -> std::sync::MutexGuard<'_, Due> {
    self.due.lock().unwrap_or_else(|e| e.into_inner())
  }
}

/// When to extend a lease next: between a third and a half of its validity
/// from now, spread so that leases taken together are not extended in
/// lock-step.
pub fn next_extension(validity_ms: u64) -> Instant {
  let third = validity_ms / 3;
  let spread = validity_ms / 6;
  let jitter = if spread == 0 {
    0
  } else {
    rand::random_range(0..=spread)
  };
  Instant::now() + Duration::from_millis(third + jitter)
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn extensions_fall_between_a_third_and_a_half_of_the_validity() {
    for _ in 0..1000 {
      let before = Instant::now();
      let at = next_extension(3000);
      let after = Instant::now();
      assert!(at >= before + Duration::from_millis(1000));
      assert!(at <= after + Duration::from_millis(1500));
    }
  }

  #[tokio::test(flavor = "current_thread", start_paused = true)]
  async fn due_leases_come_in_time_order_and_closing_ends_the_wait() {
    let lifecycle = Lifecycle::default();
    let schedule = Schedule::new(lifecycle.clone());
    let now = Instant::now();
    assert!(schedule.add(2, now + Duration::from_millis(200)));
    assert!(!schedule.add(1, now + Duration::from_millis(100)));
    assert_eq!(schedule.next_due().await, Some(vec![1]));
    assert_eq!(schedule.next_due().await, Some(vec![2]));
    // Scheduled again, earlier: one turn, at the new time; later: the first
    // turn stays.
    schedule.add(4, now + Duration::from_millis(400));
    schedule.add(4, now + Duration::from_millis(300));
    schedule.add(5, now + Duration::from_millis(350));
    schedule.add(5, now + Duration::from_millis(500));
    assert_eq!(schedule.next_due().await, Some(vec![4]));
    assert_eq!(schedule.next_due().await, Some(vec![5]));
    assert_eq!(Instant::now(), now + Duration::from_millis(350));
    assert!(!schedule.add(3, now + Duration::from_secs(60)));
    let close = async {
      tokio::task::yield_now().await;
      lifecycle.close();
    };
    let (due, ()) = tokio::join!(schedule.next_due(), close);
    assert_eq!(due, None, "closing ends a wait under way");
    assert_eq!(schedule.next_due().await, None);
  }
}
