//! Quorum arithmetic: when an attempt is decided, and how long a lease is
//! guaranteed. Pure functions (but for `Began::now`, which reads the
//! clocks), so every case is covered by unit tests.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The number of votes a decision needs: a strict majority of `nodes`.
pub fn quorum_of(nodes: usize) -> usize {
  nodes / 2 + 1
}

/// The outcome of one attempt, known as soon as it is certain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
  /// More replies are needed before the outcome is certain.
  Pending,
  /// A majority granted.
  Won,
  /// A majority answered and the lock cannot be won: another owner holds it.
  Held,
  /// Too many nodes failed for a majority to answer at all.
  Unavailable,
}

/// Counts the votes of one attempt across `nodes` nodes.
#[derive(Clone, Copy, Debug)]
pub struct Tally {
  nodes: usize,
  quorum: usize,
  granted: usize,
  refused: usize,
  failed: usize,
}

impl Tally {
  pub fn new(nodes: usize) -> Self {
    Tally {
      nodes,
      quorum: quorum_of(nodes),
      granted: 0,
      refused: 0,
      failed: 0,
    }
  }

  pub fn grant(&mut self) -> Verdict {
    self.granted += 1;
    self.verdict()
  }

  pub fn refuse(&mut self) -> Verdict {
    self.refused += 1;
    self.verdict()
  }

  pub fn fail(&mut self) -> Verdict {
    self.failed += 1;
    self.verdict()
  }

  /// Decides as early as possible, and never differently from what the full
  /// set of replies would decide: `Held` needs a majority of answers,
  /// `Unavailable` needs so many failures that a majority can no longer answer.
  pub fn verdict(&self) -> Verdict {
    let pending = self.nodes - self.granted - self.refused - self.failed;
    if self.granted >= self.quorum {
      Verdict::Won
    } else if self.granted + pending < self.quorum && self.granted + self.refused >= self.quorum {
      Verdict::Held
    } else if self.failed > self.nodes - self.quorum {
      Verdict::Unavailable
    } else {
      Verdict::Pending
    }
  }
}

/// The time a lease is guaranteed for, counted from the start of the call:
/// `ttl - elapsed - (ttl * drift_factor + 2 ms)`, rounded down to whole
/// milliseconds. `None` when nothing of it is left.
fn validity_ms(ttl_ms: u64, elapsed: Duration, drift_factor: f64) -> Option<u64> {
  let left_us = guaranteed_us(ttl_ms, drift_factor) - elapsed.as_micros() as f64;
  let left_ms = (left_us / 1000.0).floor();
  (left_ms >= 1.0).then_some(left_ms as u64)
}

/// What the drift allowance leaves of a `ttl_ms` lease, in µs.
fn guaranteed_us(ttl_ms: u64, drift_factor: f64) -> f64 {
  let ttl_us = ttl_ms as f64 * 1000.0;
  ttl_us - (ttl_us * drift_factor + 2000.0)
}

/// When an attempt or an extension was issued, on the monotonic clock and
/// on the wall clock. Its lease ends at a fixed moment after this, on both:
/// a lease computed from the time it is computed at would move its end
/// later by every moment the thread waited between the decision and the
/// computation, past the keys' expiry on the nodes.
#[derive(Clone, Copy, Debug)]
pub struct Began {
  pub at: Instant,
  epoch_ms: u64,
}

impl Began {
  pub fn now() -> Self {
    // The wall clock first: read before the monotonic one, it can only make
    // the lease end earlier.
    let epoch_ms = SystemTime::now()
      .duration_since(UNIX_EPOCH)
      .unwrap_or_default()
      .as_millis() as u64;
    Began {
      at: Instant::now(),
      epoch_ms,
    }
  }
}

/// A lease won at some moment: what was left of it then, and when it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
  /// `validity_ms` at the decision.
  pub ms: u64,
  /// When the guarantee ends: `began + ttl - drift`.
  pub until: Instant,
  /// The same moment in epoch milliseconds, rounded down.
  pub expires_at_ms: u64,
}

/// The lease of a `ttl_ms` write issued at `began` and won at `decided`;
/// `None` when nothing of it was left by then.
pub fn lease(began: Began, ttl_ms: u64, decided: Instant, drift_factor: f64) -> Option<Lease> {
  let elapsed = decided.saturating_duration_since(began.at);
  let ms = validity_ms(ttl_ms, elapsed, drift_factor)?;
  let guaranteed = Duration::from_micros(guaranteed_us(ttl_ms, drift_factor) as u64);
  Some(Lease {
    ms,
    until: began.at + guaranteed,
    expires_at_ms: began.epoch_ms + guaranteed.as_millis() as u64,
  })
}

#[cfg(test)]
mod tests {
  use super::*;

  #[derive(Clone, Copy, Debug, PartialEq)]
  enum Reply {
    Grant,
    Refuse,
    Fail,
  }

  const REPLIES: [Reply; 3] = [Reply::Grant, Reply::Refuse, Reply::Fail];

  fn every_assignment(nodes: usize) -> Vec<Vec<Reply>> {
    let mut all = vec![vec![]];
    for _ in 0..nodes {
      all = all
        .into_iter()
        .flat_map(|prefix| {
          REPLIES.iter().map(move |reply| {
            let mut next = prefix.clone();
            next.push(*reply);
            next
          })
        })
        .collect();
    }
    all
  }

  fn permutations(items: &[Reply]) -> Vec<Vec<Reply>> {
    if items.len() <= 1 {
      return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
      let mut rest = items.to_vec();
      let first = rest.remove(i);
      for mut tail in permutations(&rest) {
        tail.insert(0, first);
        out.push(tail);
      }
    }
    out
  }

  fn expected(replies: &[Reply]) -> Verdict {
    let quorum = quorum_of(replies.len());
    let granted = replies.iter().filter(|r| **r == Reply::Grant).count();
    let answered = replies.iter().filter(|r| **r != Reply::Fail).count();
    if granted >= quorum {
      Verdict::Won
    } else if answered >= quorum {
      Verdict::Held
    } else {
      Verdict::Unavailable
    }
  }

  /// Feeds replies in order and returns the first decided verdict and how many
  /// replies it took.
  fn decide(replies: &[Reply]) -> (Verdict, usize) {
    let mut tally = Tally::new(replies.len());
    for (i, reply) in replies.iter().enumerate() {
      let verdict = match reply {
        Reply::Grant => tally.grant(),
        Reply::Refuse => tally.refuse(),
        Reply::Fail => tally.fail(),
      };
      if verdict != Verdict::Pending {
        return (verdict, i + 1);
      }
    }
    (tally.verdict(), replies.len())
  }

  #[test]
  fn quorum_is_a_strict_majority() {
    assert_eq!(quorum_of(1), 1);
    assert_eq!(quorum_of(2), 2);
    assert_eq!(quorum_of(3), 2);
    assert_eq!(quorum_of(4), 3);
    assert_eq!(quorum_of(5), 3);
    assert_eq!(quorum_of(15), 8);
  }

  #[test]
  fn every_subset_of_three_and_five_nodes_in_every_order_decides_as_the_full_count() {
    for nodes in [3, 5] {
      let mut checked = 0;
      for assignment in every_assignment(nodes) {
        let want = expected(&assignment);
        for order in permutations(&assignment) {
          let (verdict, used) = decide(&order);
          assert_eq!(verdict, want, "replies {order:?}");
          assert_ne!(verdict, Verdict::Pending, "replies {order:?}");
          assert!(used <= nodes);
          checked += 1;
        }
      }
      assert_eq!(
        checked,
        3usize.pow(nodes as u32) * (1..=nodes).product::<usize>()
      );
    }
  }

  #[test]
  fn decides_without_waiting_for_the_slowest_node() {
    use Reply::*;
    assert_eq!(decide(&[Grant, Grant, Fail]), (Verdict::Won, 2));
    assert_eq!(decide(&[Refuse, Refuse, Grant]), (Verdict::Held, 2));
    assert_eq!(decide(&[Fail, Fail, Grant]), (Verdict::Unavailable, 2));
    assert_eq!(
      decide(&[Grant, Grant, Grant, Refuse, Refuse]),
      (Verdict::Won, 3)
    );
    assert_eq!(
      decide(&[Fail, Fail, Fail, Grant, Grant]),
      (Verdict::Unavailable, 3)
    );
    // One refusal and one failure out of three: the third reply decides which.
    assert_eq!(decide(&[Refuse, Fail, Refuse]), (Verdict::Held, 3));
    assert_eq!(decide(&[Refuse, Fail, Fail]), (Verdict::Unavailable, 3));
  }

  #[test]
  fn validity_subtracts_elapsed_time_and_drift() {
    // 30 s lease, 10 ms elapsed: 30000 - 10 - (300 + 2).
    assert_eq!(
      validity_ms(30_000, Duration::from_millis(10), 0.01),
      Some(29_688)
    );
    assert_eq!(validity_ms(1_000, Duration::ZERO, 0.0), Some(998));
    // Partial milliseconds of elapsed time round the validity down.
    assert_eq!(validity_ms(1_000, Duration::from_micros(1), 0.0), Some(997));
  }

  #[test]
  fn validity_that_ran_out_is_none() {
    assert_eq!(validity_ms(100, Duration::from_millis(97), 0.01), None);
    assert_eq!(validity_ms(100, Duration::from_millis(96), 0.01), Some(1));
    assert_eq!(validity_ms(2, Duration::ZERO, 0.0), None);
    assert_eq!(validity_ms(1, Duration::ZERO, 0.01), None);
    assert_eq!(validity_ms(50, Duration::from_secs(1), 0.01), None);
  }

  #[test]
  fn a_lease_ends_a_fixed_time_after_its_write_was_issued() {
    let began = Began::now();
    let early = lease(began, 1_000, began.at + Duration::from_millis(300), 0.01).unwrap();
    let late = lease(began, 1_000, began.at + Duration::from_millis(320), 0.01).unwrap();
    // 1000 - 300 - (10 + 2) left at the decision, 20 ms less when decided later...
    assert_eq!((early.ms, late.ms), (688, 668));
    // ...and either way it ends 988 ms after the write was issued.
    assert_eq!(early.until, began.at + Duration::from_millis(988));
    assert_eq!(early.expires_at_ms, began.epoch_ms + 988);
    assert_eq!(
      (late.until, late.expires_at_ms),
      (early.until, early.expires_at_ms)
    );
  }

  #[test]
  fn a_lease_decided_too_late_is_none() {
    let began = Began::now();
    assert_eq!(
      lease(began, 1_000, began.at + Duration::from_millis(988), 0.01),
      None
    );
    assert!(lease(began, 1_000, began.at + Duration::from_millis(987), 0.01).is_some());
  }
}
