//! What a lock instance counts about itself and what it tells as it
//! happens. The counts are atomics bumped where each outcome is decided
//! (the watchdog's extensions and losses never leave the I/O thread
//! otherwise), read together by `stats`. Events (a watchdog extension, a
//! node's change of state) are built only while the caller asked for their
//! kind: each kind is gated on an atomic that the caller sets.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::fanout::{Reply, Votes};
use super::shape::plain;

/// What `stats` reports and the events it tells (see `shape`).
macro_rules! observe_shapes {
  ($expand:ident) => {
    $expand! {
      in crate::engine::observe;

      #[doc = "One node in a `Stats` snapshot, as the calls found it."]
      #[derive(Clone, Debug, PartialEq)]
      pub struct NodeStats {
        #[doc = "The node as `host:port`, never with its password."]
        pub node: String,
        #[doc = "Whether its last reply was an answer (`null` before any command)."]
        pub up: Option<bool>,
        #[doc = "How long its last reply took after the command was issued, in ms."]
        pub last_latency_ms: Option<f64>,
        #[doc = "Whether its vote does not count yet (restart quarantine)."]
        pub quarantined: bool,
      }

      #[doc = "What one lock instance did since it was made."]
      #[derive(Clone, Debug, PartialEq)]
      pub struct Stats {
        #[doc = "Acquires that won the lock."]
        pub acquired: f64,
        #[doc = "Acquires that ended because another owner held it (lock conflicts)."]
        pub held: f64,
        #[doc = "Acquires that failed with `ERR_QUORUM_UNAVAILABLE`."]
        pub unavailable: f64,
        #[doc = "Acquires aborted through their signal."]
        pub aborted: f64,
        #[doc = "Extensions that reached a majority, the watchdog's included."]
        pub extended: f64,
        #[doc = "Extensions that did not (a watchdog's retries each count)."]
        pub extension_failures: f64,
        #[doc = "Leases lost: an extension that found them gone, or the watchdog out of time."]
        pub lost: f64,
        #[doc = "Releases that found the lock still held by a majority."]
        pub released: f64,
        #[doc = "Acquire, extend and release calls under way."]
        pub in_flight: f64,
        #[doc = "Leases this instance holds now."]
        pub held_now: f64,
        pub nodes: Vec<NodeStats>,
      }

      #[doc = "A node's change of state, as the calls saw it."]
      #[derive(Clone, Copy, Debug, PartialEq, Eq)]
      pub enum NodeChange {
        Down,
        Up,
        Quarantined,
        Counted,
      }

      #[doc = "Something that happened on the I/O thread, told to a caller that asked."]
      #[derive(Clone, Debug, PartialEq)]
      pub struct LockEvent {
        #[doc = "The lock a watchdog extension was for."]
        pub lock: Option<u64>,
        #[doc = "Whether that extension reached a majority in time."]
        pub extended: Option<bool>,
        #[doc = "Whether the watchdog gave the lease up after it."]
        pub lost: Option<bool>,
        #[doc = "The extension's guaranteed time, when it succeeded, in ms."]
        pub validity_ms: Option<u32>,
        #[doc = "How many nodes granted it."]
        pub granted: Option<u32>,
        #[doc = "The node that changed, as `host:port`."]
        pub node: Option<String>,
        #[doc = "How it changed."]
        pub change: Option<NodeChange>,
        #[doc = "Why, for a node that went down."]
        pub error: Option<String>,
      }
    }
  };
}

pub(crate) use observe_shapes;
observe_shapes!(plain);

impl LockEvent {
  fn empty() -> Self {
    LockEvent {
      lock: None,
      extended: None,
      lost: None,
      validity_ms: None,
      granted: None,
      node: None,
      change: None,
      error: None,
    }
  }

  /// A watchdog extension of lock `lock` that gave `validity_ms`, or none.
  pub fn watchdog(lock: u64, validity_ms: Option<u64>, lost: bool, votes: &Votes) -> Self {
    let granted = votes.replies.iter().filter(|r| **r == Reply::Granted);
    LockEvent {
      lock: Some(lock),
      extended: Some(validity_ms.is_some()),
      lost: Some(lost),
      validity_ms: validity_ms.map(|ms| ms.min(u64::from(u32::MAX)) as u32),
      granted: Some(granted.count() as u32),
      ..LockEvent::empty()
    }
  }

  fn node(label: String, change: NodeChange, error: Option<String>) -> Self {
    LockEvent {
      node: Some(label),
      change: Some(change),
      error,
      ..LockEvent::empty()
    }
  }
}

/// Told an event from the I/O thread, for the kinds the caller asked for.
pub type EventSink = Box<dyn Fn(LockEvent) + Send + Sync>;

/// A node's state as the calls saw it.
const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;
/// No latency measured yet.
const NO_LATENCY: u64 = u64::MAX;

#[derive(Default)]
struct NodeGauge {
  state: AtomicU8,
  quarantined: AtomicBool,
  latency_ns: AtomicU64,
}

/// One count of `Stats`.
#[derive(Clone, Copy)]
pub enum Count {
  Acquired,
  Held,
  Unavailable,
  Aborted,
  Extended,
  ExtensionFailed,
  Lost,
  Released,
}

/// The counts and gauges of one instance, and its event gates.
pub struct Observer {
  counts: [AtomicU64; 8],
  in_flight: Arc<AtomicU64>,
  nodes: Vec<NodeGauge>,
  watchdog_events: AtomicBool,
  node_events: AtomicBool,
  sink: EventSink,
}

/// A call counted as under way until dropped.
pub struct Counted(Arc<AtomicU64>);

impl Drop for Counted {
  fn drop(&mut self) {
    self.0.fetch_sub(1, Ordering::Relaxed);
  }
}

impl Observer {
  pub fn new(nodes: usize, sink: EventSink) -> Self {
    Observer {
      counts: Default::default(),
      in_flight: Arc::default(),
      nodes: (0..nodes)
        .map(|_| NodeGauge {
          latency_ns: AtomicU64::new(NO_LATENCY),
          ..NodeGauge::default()
        })
        .collect(),
      watchdog_events: AtomicBool::new(false),
      node_events: AtomicBool::new(false),
      sink,
    }
  }

  pub fn count(&self, count: Count) {
    self.counts[count as usize].fetch_add(1, Ordering::Relaxed);
  }

  /// Counts a call as under way from when it is made until the guard goes.
  pub fn call(&self) -> Counted {
    self.in_flight.fetch_add(1, Ordering::Relaxed);
    Counted(self.in_flight.clone())
  }

  /// Which events the caller wants from now on.
  pub fn gate(&self, watchdog: bool, nodes: bool) {
    self.watchdog_events.store(watchdog, Ordering::Relaxed);
    self.node_events.store(nodes, Ordering::Relaxed);
  }

  pub fn wants_watchdog(&self) -> bool {
    self.watchdog_events.load(Ordering::Relaxed)
  }

  pub fn tell(&self, event: LockEvent) {
    (self.sink)(event);
  }

  /// Takes in what each node answered to one command: its latency, and
  /// whether it went down, came back, entered or left quarantine.
  /// `quarantined(i)` says whether node `i` is in quarantine now.
  /// `label(i)` names node `i` in an event.
  pub fn replies(
    &self,
    votes: &Votes,
    label: impl Fn(usize) -> String,
    quarantined: impl Fn(usize) -> bool,
  ) {
    let tell = self.node_events.load(Ordering::Relaxed);
    let answers = votes.replies.iter().zip(&votes.latencies).enumerate();
    for (i, (reply, latency)) in answers {
      let Some(gauge) = self.nodes.get(i) else {
        continue;
      };
      // A node silent past the deadline failed without a latency.
      if let Some(latency) = latency {
        gauge
          .latency_ns
          .store(latency_ns(*latency), Ordering::Relaxed);
      }
      let (state, change, error) = match reply {
        Reply::Pending => continue,
        Reply::Failed(message) => (DOWN, NodeChange::Down, Some(message.clone())),
        Reply::Granted | Reply::Refused => (UP, NodeChange::Up, None),
      };
      let was = gauge.state.swap(state, Ordering::Relaxed);
      if tell && was != state && !(was == UNKNOWN && state == UP) {
        self.tell(LockEvent::node(label(i), change, error));
      }
      if state == UP && votes.quarantine.is_some() {
        let now = quarantined(i);
        if gauge.quarantined.swap(now, Ordering::Relaxed) != now && tell {
          let change = match now {
            true => NodeChange::Quarantined,
            false => NodeChange::Counted,
          };
          self.tell(LockEvent::node(label(i), change, None));
        }
      }
    }
  }

  /// The counts now; `held_now` and the nodes' quarantine are the caller's.
  pub fn stats(
    &self,
    labels: &[&str],
    held_now: usize,
    quarantined: impl Fn(usize) -> bool,
  ) -> Stats {
    let count = |count: Count| self.counts[count as usize].load(Ordering::Relaxed) as f64;
    let nodes = self.nodes.iter().zip(labels).enumerate();
    Stats {
      acquired: count(Count::Acquired),
      held: count(Count::Held),
      unavailable: count(Count::Unavailable),
      aborted: count(Count::Aborted),
      extended: count(Count::Extended),
      extension_failures: count(Count::ExtensionFailed),
      lost: count(Count::Lost),
      released: count(Count::Released),
      in_flight: self.in_flight.load(Ordering::Relaxed) as f64,
      held_now: held_now as f64,
      nodes: nodes
        .map(|(i, (gauge, label))| {
          let latency = gauge.latency_ns.load(Ordering::Relaxed);
          NodeStats {
            node: label.to_string(),
            up: match gauge.state.load(Ordering::Relaxed) {
              UP => Some(true),
              DOWN => Some(false),
              _ => None,
            },
            last_latency_ms: (latency != NO_LATENCY).then(|| latency as f64 / 1e6),
            quarantined: quarantined(i),
          }
        })
        .collect(),
    }
  }
}

fn latency_ns(latency: Duration) -> u64 {
  latency.as_nanos().min(u128::from(NO_LATENCY - 1)) as u64
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::engine::quorum::Verdict;
  use std::sync::{Arc, Mutex};

  fn votes(replies: Vec<Reply>) -> Votes {
    Votes {
      verdict: Verdict::Won,
      latencies: replies
        .iter()
        .map(|_| Some(Duration::from_millis(2)))
        .collect(),
      replies,
      quarantine: None,
    }
  }

  #[test]
  fn a_node_change_is_told_once_and_only_while_asked_for() {
    let told = Arc::new(Mutex::new(Vec::new()));
    let sink = told.clone();
    let observer = Observer::new(2, Box::new(move |event| sink.lock().unwrap().push(event)));
    let labels = ["a:1", "b:2"];
    let label = |i: usize| labels[i].to_string();
    let failed = || votes(vec![Reply::Granted, Reply::Failed("refused".into())]);
    observer.replies(&failed(), label, |_| false);
    assert!(told.lock().unwrap().is_empty(), "nothing is built unasked");
    observer.gate(false, true);
    observer.replies(&votes(vec![Reply::Granted, Reply::Granted]), label, |_| {
      false
    });
    observer.replies(&failed(), label, |_| false);
    observer.replies(&failed(), label, |_| false);
    let told = told.lock().unwrap();
    let changes: Vec<_> = told.iter().map(|e| (e.node.clone(), e.change)).collect();
    assert_eq!(
      changes,
      vec![
        (Some("b:2".into()), Some(NodeChange::Up)),
        (Some("b:2".into()), Some(NodeChange::Down)),
      ]
    );
    let stats = observer.stats(&labels, 0, |_| false);
    assert_eq!(stats.nodes[1].up, Some(false));
    assert_eq!(stats.nodes[0].last_latency_ms, Some(2.0));
  }

  #[test]
  fn counts_and_calls_in_flight_add_up() {
    let observer = Observer::new(1, Box::new(|_| {}));
    observer.count(Count::Acquired);
    observer.count(Count::Acquired);
    observer.count(Count::Lost);
    let call = observer.call();
    let stats = observer.stats(&["a:1"], 1, |_| true);
    assert_eq!(
      (stats.acquired, stats.lost, stats.in_flight),
      (2.0, 1.0, 1.0)
    );
    assert_eq!(stats.nodes[0].up, None);
    assert!(stats.nodes[0].quarantined);
    drop(call);
    assert_eq!(observer.stats(&["a:1"], 1, |_| true).in_flight, 0.0);
  }
}
