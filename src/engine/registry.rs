//! The locks this instance holds, by the id its handles carry: so that a
//! handle can be checked, and `close` can release what is still held. The
//! registry has no closed state of its own: the lock checks its lifecycle
//! while it holds the registry, before each insert, and `close` drains it
//! after closing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Ids are unique in the process, not only per lock instance, so that an
/// event about a lock names it without its instance.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Clone)]
pub struct HeldLock {
  pub keys: Arc<[String]>,
  pub value: Arc<str>,
  pub ttl_ms: u64,
  /// When the guaranteed validity ends.
  pub valid_until: Instant,
  /// When the write that set `valid_until` was issued. Each node keeps the
  /// TTL of the last write it ran, so the extension issued last decides the
  /// end, a shorter one too.
  pub valid_since: Instant,
  /// Whether the watchdog keeps this lease alive.
  pub auto_extend: bool,
  /// When every node's key has expired, past any clock drift.
  pub gone_at: Instant,
}

#[derive(Default)]
pub struct Registry {
  locks: HashMap<u64, HeldLock>,
  /// The size at which expired entries are swept next, so that handles a
  /// caller dropped without releasing cost nothing once their keys expired.
  sweep_at: usize,
}

/// Below this many entries the registry is not swept at all.
const MIN_SWEEP: usize = 1024;

impl Registry {
  /// How many locks are kept.
  pub fn count(&self) -> usize {
    self.locks.len()
  }

  /// Keeps `lock` and returns its id.
  pub fn insert(&mut self, lock: HeldLock) -> u64 {
    if self.locks.len() >= self.sweep_at {
      let now = Instant::now();
      self.locks.retain(|_, held| held.gone_at > now);
      self.sweep_at = (self.locks.len() * 2).max(MIN_SWEEP);
    }
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    self.locks.insert(id, lock);
    id
  }

  pub fn get(&self, id: u64) -> Option<HeldLock> {
    self.locks.get(&id).cloned()
  }

  /// Whether a lock held under `value` is still in the registry.
  pub fn holds_value(&self, value: &str) -> bool {
    self.locks.values().any(|held| &*held.value == value)
  }

  pub fn remove(&mut self, id: u64) -> Option<HeldLock> {
    self.locks.remove(&id)
  }

  /// Records a successful extension to `ttl_ms` issued at `since`: the new
  /// end of the validity and the TTL later extensions use, unless an
  /// extension issued later already set them, and the time the keys are
  /// gone, if later. `false` when the lock is no longer held here (released,
  /// or given up as lost meanwhile).
  pub fn extend(
    &mut self,
    id: u64,
    since: Instant,
    ttl_ms: u64,
    valid_until: Instant,
    gone_at: Instant,
  ) -> bool {
    let Some(held) = self.locks.get_mut(&id) else {
      return false;
    };
    if since >= held.valid_since {
      held.valid_since = since;
      held.valid_until = valid_until;
      held.ttl_ms = ttl_ms;
    }
    held.gone_at = held.gone_at.max(gone_at);
    true
  }

  /// Hands over everything still held.
  pub fn drain(&mut self) -> Vec<HeldLock> {
    self.locks.drain().map(|(_, lock)| lock).collect()
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::time::Duration;

  fn lock(gone_at: Instant) -> HeldLock {
    HeldLock {
      keys: Arc::from(vec!["k".to_string()]),
      value: Arc::from("v"),
      ttl_ms: 1,
      valid_until: gone_at,
      valid_since: gone_at,
      auto_extend: false,
      gone_at,
    }
  }

  #[test]
  fn expired_entries_are_swept_as_the_registry_grows() {
    let mut registry = Registry::default();
    let past = Instant::now() - Duration::from_secs(1);
    let future = Instant::now() + Duration::from_secs(60);
    let live = registry.insert(lock(future));
    for _ in 0..10 * MIN_SWEEP {
      registry.insert(lock(past));
    }
    assert!(
      registry.locks.len() <= 2 * MIN_SWEEP,
      "{} entries",
      registry.locks.len()
    );
    assert!(registry.get(live).is_some(), "a live lock is never swept");
  }

  #[test]
  fn the_extension_issued_last_sets_the_end_of_the_validity() {
    let mut registry = Registry::default();
    let at = Instant::now();
    let after = |ms| at + Duration::from_millis(ms);
    let id = registry.insert(HeldLock {
      valid_since: at,
      ..lock(after(30_000))
    });
    // A shorter extension issued later: its keys' TTL is the one the nodes keep.
    assert!(registry.extend(id, after(10), 2_000, after(2_000), after(2_500)));
    let held = registry.get(id).unwrap();
    assert_eq!((held.valid_until, held.ttl_ms), (after(2_000), 2_000));
    // An extension issued before it, answered after it, changes neither.
    assert!(registry.extend(id, after(5), 29_000, after(29_000), after(29_500)));
    let held = registry.get(id).unwrap();
    assert_eq!((held.valid_until, held.ttl_ms), (after(2_000), 2_000));
    // The keys may last as long as the longest write made them.
    assert_eq!(held.gone_at, after(30_000));
    registry.remove(id);
    assert!(!registry.extend(id, after(20), 2_000, after(2_020), after(2_520)));
  }

  #[test]
  fn ids_are_unique_and_draining_hands_over_every_lock() {
    let mut registry = Registry::default();
    let future = Instant::now() + Duration::from_secs(60);
    let a = registry.insert(lock(future));
    let b = registry.insert(lock(future));
    assert_ne!(a, b);
    assert!(registry.remove(a).is_some());
    assert!(registry.remove(a).is_none());
    assert_eq!(registry.drain().len(), 1);
    assert!(registry.get(b).is_none());
  }
}
