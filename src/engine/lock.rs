//! The Redlock orchestration: acquire, extend and release at quorum,
//! compute the validity, clean up after a failed attempt, retry, and close.
//! Each call reports what decided it (`Decided`): its outcome, its
//! attempts, and what each node answered in the deciding attempt, turned
//! into `NodeVote`s only for a caller that asks.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::config::{AcquireOptions, LockConfig, Retries};
use super::connection::NodeClient;
use super::error::{LockError, NodeError};
use super::fanout::{Reply, Votes};
use super::lifecycle::Lifecycle;
use super::observe::{Count, EventSink, Observer, Stats};
use super::quorum::{lease, quorum_of, Began, Lease, Verdict};
use super::registry::{HeldLock, Registry};
use super::scripts::{fence_key, Scripts};
use super::shape::plain;
use super::tracker::{Tracked, Tracker};
use super::waiters::{Waiters, Waiting};
use super::watchdog::Schedule;

use attempt::{Begun, Plan};

mod attempt;
#[cfg(test)]
mod extensions_in_order;
mod inspect;
mod keep_alive;
mod lease;
mod waits;

pub(crate) use inspect::report_shapes;
pub use inspect::{HealthOptions, HealthReport, LockInfo, NodeHealth, NodeLockInfo};

/// What acquire, extend and release give their callers (see `shape`).
macro_rules! call_shapes {
  ($expand:ident) => {
    $expand! {
      in crate::engine::lock;

      #[doc = "A lock this instance acquired: what its handle holds."]
      #[derive(Clone, Debug, PartialEq)]
      pub struct Acquired {
        #[doc = "The registry id the caller passes back to extend and release."]
        pub id: u64,
        #[doc = "This owner's random token; the stored value adds the metadata to it."]
        pub value: String,
        #[doc = "The guaranteed time in ms, as in `Validity`."]
        pub validity_ms: u32,
        #[doc = "Epoch ms at which the guaranteed time ends."]
        pub expires_at: f64,
        #[doc = "How many attempts the acquire made."]
        pub attempts: u32,
        #[doc = "With fencing: larger than the token of every earlier holder of each resource."]
        pub fencing_token: Option<u64>,
      }

      #[doc = "How long a lease is guaranteed, counted from when the attempt that"]
      #[doc = "won it (or the extension) was issued, and when that ends."]
      #[derive(Clone, Copy, Debug, PartialEq)]
      pub struct Validity {
        #[doc = "The guaranteed time in ms: `ttl - elapsed - drift`."]
        pub ms: u32,
        #[doc = "Epoch ms at which the guaranteed time ends."]
        pub expires_at: f64,
      }

      #[doc = "What one node answered in the attempt that decided a call."]
      #[derive(Clone, Debug, PartialEq)]
      pub struct NodeVote {
        #[doc = "The node as `host:port`, never with its password."]
        pub node: String,
        pub vote: Vote,
        #[doc = "Why the vote failed: the node's error, no reply in time, or the"]
        #[doc = "restart quarantine (the node answered, but its vote did not count)."]
        pub error: Option<String>,
        #[doc = "How long after the command was issued the node's reply (or its"]
        #[doc = "failure) came, in ms; absent while it was pending."]
        pub latency_ms: Option<f64>,
      }

      #[doc = "A node's vote: it granted, it refused (another owner holds the"]
      #[doc = "lock, or this owner lost it there), it failed (see `error`), or it"]
      #[doc = "had not answered yet when the call was decided."]
      #[derive(Clone, Copy, Debug, PartialEq, Eq)]
      pub enum Vote {
        Granted,
        Refused,
        Failed,
        Pending,
      }
    }
  };
}

pub(crate) use call_shapes;
call_shapes!(plain);

impl From<Lease> for Validity {
  fn from(lease: Lease) -> Self {
    Validity {
      // A validity never exceeds its TTL, at most 2^31 - 1 ms.
      ms: lease.ms.min(u64::from(u32::MAX)) as u32,
      expires_at: lease.expires_at_ms as f64,
    }
  }
}

/// What decided a call: its outcome, how many attempts it made, and the
/// votes of the deciding attempt (`None` when no node was asked: the
/// instance was closed, or the lock not held).
pub struct Decided<T> {
  pub outcome: Result<T, LockError>,
  pub attempts: u32,
  pub votes: Option<Votes>,
}

impl<T> Decided<T> {
  fn unasked(outcome: Result<T, LockError>) -> Self {
    Decided {
      outcome,
      attempts: 0,
      votes: None,
    }
  }

  fn once(outcome: T, votes: Votes) -> Self {
    Decided {
      outcome: Ok(outcome),
      attempts: 1,
      votes: Some(votes),
    }
  }
}

/// Told the id of an auto-extended lock whose lease the watchdog lost.
pub type LostSink = Box<dyn Fn(u64) + Send + Sync>;

struct Inner {
  config: LockConfig,
  nodes: Vec<NodeClient>,
  scripts: Scripts,
  registry: Mutex<Registry>,
  schedule: Arc<Schedule>,
  waiters: Waiters,
  on_lost: LostSink,
  lifecycle: Lifecycle,
  work: Arc<Tracker>,
  observer: Observer,
  /// The longest TTL configured or used so far: how long a node that
  /// restarted without its data stays out of the quorum.
  max_ttl_ms: AtomicU64,
  /// Held while an extension takes its issue time and is issued to every
  /// node: a caller's extension and a watchdog turn, on two threads, then
  /// reach every node in the order of their issue times, and the one issued
  /// last, whose validity the lease keeps, is the one the nodes keep too.
  /// Issuing never waits on a node.
  issuing_extension: Mutex<()>,
}

/// The quorum lock over a fixed set of independent nodes.
#[derive(Clone)]
pub struct Engine {
  inner: Arc<Inner>,
}

impl Drop for Inner {
  /// An instance dropped without `close` stops its tasks and connections too.
  fn drop(&mut self) {
    self.lifecycle.close();
    self.waiters.close();
    for node in &self.nodes {
      node.close();
    }
  }
}

/// Counts a call as under way until dropped, so `close` can wait for it.
struct InFlight;

impl InFlight {
  fn enter(inner: &Inner) -> Result<Tracked, LockError> {
    let tracked = Tracker::track(&inner.work);
    if inner.lifecycle.is_closed() {
      return Err(LockError::Closed);
    }
    Ok(tracked)
  }
}

/// The engine's calls issue their first commands when they are made, and
/// return a future for the rest; like every other method, they must be
/// called within a Tokio runtime context, which connections start in.
impl Engine {
  /// Checks the configuration and prepares one client per node; nothing
  /// connects until the first command. `on_event` is told the events the
  /// caller asks for with `observe`.
  pub fn new(
    config: LockConfig,
    on_lost: LostSink,
    on_event: EventSink,
  ) -> Result<Self, LockError> {
    config.validate().map_err(LockError::InvalidArg)?;
    let work = Arc::new(Tracker::default());
    let nodes = config
      .nodes
      .iter()
      .map(|node| {
        NodeClient::new(
          node.clone(),
          config.connect_timeout,
          config.command_timeout,
          work.clone(),
        )
      })
      .collect::<Result<Vec<_>, _>>()
      .map_err(LockError::InvalidArg)?;
    let nodes_len = nodes.len();
    let lifecycle = Lifecycle::default();
    let waiters = Waiters::new(&nodes, config.command_timeout, lifecycle.clone());
    Ok(Engine {
      inner: Arc::new(Inner {
        nodes,
        scripts: Scripts::default(),
        registry: Mutex::new(Registry::default()),
        schedule: Arc::new(Schedule::new(lifecycle.clone())),
        waiters,
        on_lost,
        lifecycle,
        work,
        observer: Observer::new(nodes_len, on_event),
        max_ttl_ms: AtomicU64::new(config.max_ttl_ms.unwrap_or(0).max(config.lock_ttl_ms)),
        issuing_extension: Mutex::new(()),
        config,
      }),
    })
  }

  pub fn config(&self) -> &LockConfig {
    &self.inner.config
  }

  /// Tries until a majority grants within the validity, or the retries run
  /// out: `None` when another owner holds a resource, an error when too few
  /// nodes answered the last attempt. The first attempt is issued now.
  pub fn acquire(
    &self,
    resources: &[String],
    ttl_ms: u64,
    options: AcquireOptions,
    cancel: Option<watch::Receiver<bool>>,
  ) -> impl Future<Output = Decided<Option<Acquired>>> + Send + 'static {
    let inner = self.inner.clone();
    let begun = InFlight::enter(&inner).map(|in_flight| {
      let call = inner.observer.call();
      let plan = inner.plan(resources, ttl_ms, &options);
      let first = inner.begin_attempt(&plan);
      (in_flight, call, plan, first)
    });
    async move {
      let (_in_flight, _call, plan, first) = match begun {
        Ok(begun) => begun,
        Err(error) => return Decided::unasked(Err(error)),
      };
      let mut decided = Decided::unasked(Ok(None));
      decided.outcome = inner
        .attempts(plan, first, options, cancel, &mut decided)
        .await;
      let count = match &decided.outcome {
        Ok(Some(_)) => Some(Count::Acquired),
        Ok(None) => Some(Count::Held),
        Err(LockError::Aborted) => Some(Count::Aborted),
        Err(LockError::QuorumUnavailable { .. }) => Some(Count::Unavailable),
        Err(_) => None,
      };
      if let Some(count) = count {
        inner.observer.count(count);
      }
      decided
    }
  }

  /// Extends a held lock to `ttl_ms` (its acquire TTL when `None`) on every
  /// node that still holds it; the new validity when a majority did in time.
  /// Otherwise the lock is lost: it leaves the registry and its keys are
  /// deleted wherever this owner still had them. Issued now.
  pub fn extend(
    &self,
    id: u64,
    ttl_ms: Option<u64>,
  ) -> impl Future<Output = Decided<Option<Validity>>> + Send + 'static {
    let inner = self.inner.clone();
    let begun = InFlight::enter(&inner).map(|in_flight| {
      let call = inner.observer.call();
      (in_flight, call, inner.begin_extend(id, ttl_ms))
    });
    async move {
      let (_in_flight, _call, extension) = match begun {
        Ok(begun) => begun,
        Err(error) => return Decided::unasked(Err(error)),
      };
      let Some(extension) = extension else {
        return Decided::unasked(Ok(None));
      };
      let auto_extend = extension.lock.auto_extend;
      match inner.finish_extend(extension, None).await {
        (Some(extended), votes) => {
          inner.observer.count(Count::Extended);
          // The watchdog's turn was set for the validity before, which this
          // extension may have shortened.
          if auto_extend {
            Inner::watch(&inner, id, extended.ms);
          }
          Decided::once(Some(Validity::from(extended)), votes)
        }
        (None, votes) => {
          inner.observer.count(Count::ExtensionFailed);
          // A lease released meanwhile, or already given up by the
          // watchdog, has had its keys deleted by whoever took it out.
          let lost = inner.registry().remove(id);
          if let Some(lost) = lost {
            inner.observer.count(Count::Lost);
            inner.give_up(&lost, &votes.replies).await;
          }
          Decided::once(None, votes)
        }
      }
    }
  }

  /// Deletes the lock wherever this owner still holds it; `true` when a
  /// majority still did. A lock released before resolves `false`. Issued now.
  pub fn release(&self, id: u64) -> impl Future<Output = Decided<bool>> + Send + 'static {
    let inner = self.inner.clone();
    let begun = InFlight::enter(&inner).map(|in_flight| {
      let call = inner.observer.call();
      // The registry is not held while the release is written.
      let held = inner.registry().remove(id);
      (in_flight, call, held.map(|lock| inner.begin_release(lock)))
    });
    async move {
      match begun {
        Ok((_in_flight, _call, Some(release))) => {
          let (released, votes) = inner.finish_release(release).await;
          if released {
            inner.observer.count(Count::Released);
          }
          Decided::once(released, votes)
        }
        Ok((_in_flight, _call, None)) => Decided::unasked(Ok(false)),
        Err(error) => Decided::unasked(Err(error)),
      }
    }
  }

  /// What each node answered in `votes`, as callers read it. Built only
  /// when a caller asks: a call keeps its replies as they came.
  pub fn node_votes(&self, votes: &Votes) -> Vec<NodeVote> {
    let inner = &self.inner;
    let nodes = inner.nodes.iter().zip(&votes.replies).zip(&votes.latencies);
    nodes
      .map(|((node, reply), latency)| {
        let (vote, error) = match reply {
          Reply::Granted | Reply::Refused => match uncounted(node, votes.quarantine) {
            Some(why) => (Vote::Failed, Some(why)),
            None if *reply == Reply::Granted => (Vote::Granted, None),
            None => (Vote::Refused, None),
          },
          Reply::Failed(message) => (Vote::Failed, Some(message.clone())),
          Reply::Pending => (Vote::Pending, None),
        };
        NodeVote {
          node: node.label().to_string(),
          vote,
          error,
          latency_ms: latency.map(|after| after.as_secs_f64() * 1000.0),
        }
      })
      .collect()
  }

  /// The counts of this instance so far, and each node as the calls found it.
  pub fn stats(&self) -> Stats {
    let inner = &self.inner;
    let held_now = inner.registry().count();
    let quarantine = inner.quarantine();
    inner.observer.stats(
      &inner
        .nodes
        .iter()
        .map(NodeClient::label)
        .collect::<Vec<_>>(),
      held_now,
      |i| quarantine.is_some_and(|max_ttl| inner.nodes[i].quarantine_left(max_ttl).is_some()),
    )
  }

  /// Which events `on_event` is told from now on: each watchdog extension,
  /// each node's change of state.
  pub fn observe(&self, watchdog: bool, nodes: bool) {
    self.inner.observer.gate(watchdog, nodes);
  }

  /// Refuses new calls at once; the returned future releases every lock
  /// still held and lets calls in flight and their commands finish, all
  /// within one command timeout, then closes the connections. Later calls
  /// fail with `LockError::Closed`; the future of a second close does
  /// nothing.
  pub fn close(&self) -> impl Future<Output = ()> + Send + 'static {
    let first = self.inner.lifecycle.close();
    let inner = self.inner.clone();
    async move {
      if first {
        inner.shut_down().await;
      }
    }
  }
}

impl Inner {
  /// Takes in what each node answered to one command (see `Observer`).
  fn noted(&self, votes: Votes) -> Votes {
    let nodes = &self.nodes;
    self.observer.replies(
      &votes,
      |i| nodes[i].label().to_string(),
      |i| {
        votes
          .quarantine
          .is_some_and(|max_ttl| nodes[i].quarantine_left(max_ttl).is_some())
      },
    );
    votes
  }

  /// What every attempt of an acquire of `resources` shares.
  fn plan(&self, resources: &[String], ttl_ms: u64, options: &AcquireOptions) -> Plan {
    let config = &self.config;
    self.use_ttl(ttl_ms);
    let keys: Arc<[String]> = resources
      .iter()
      .map(|resource| format!("{}{resource}", config.key_prefix))
      .collect();
    let fences = options.fencing.then(|| {
      resources
        .iter()
        .map(|resource| fence_key(&config.key_prefix, resource))
        .collect()
    });
    Plan {
      keys,
      fences,
      metadata: options.metadata.clone(),
      deadline: options.wait.map(|wait| Instant::now() + wait),
      ttl_ms,
      timeout: config.command_timeout.min(Duration::from_millis(ttl_ms)),
      quarantine: self.quarantine(),
    }
  }

  /// The attempts of one acquire, the first already begun, and the waits
  /// between them, until it is decided; counts the attempts and keeps the
  /// latest one's votes in `decided`.
  async fn attempts(
    self: &Arc<Self>,
    plan: Plan,
    first: Begun,
    options: AcquireOptions,
    cancel: Option<watch::Receiver<bool>>,
    decided: &mut Decided<Option<Acquired>>,
  ) -> Result<Option<Acquired>, LockError> {
    let config = &self.config;
    let mut waiting: Option<Waiting> = None;
    let aborted = || cancel.as_ref().is_some_and(|cancel| *cancel.borrow());
    let mut next = Some(first);
    loop {
      let begun = match next.take() {
        Some(begun) => begun,
        None if aborted() => return Err(LockError::Aborted),
        None => self.begin_attempt(&plan),
      };
      decided.attempts += 1;
      let attempt = self.finish_attempt(&plan, begun).await;
      let verdict = attempt.verdict();
      if verdict == Verdict::Won && !aborted() {
        if let Some(won) = lease(
          attempt.began,
          plan.ttl_ms,
          Instant::now(),
          config.drift_factor,
        ) {
          let lock = HeldLock {
            keys: plan.keys.clone(),
            value: attempt.value.clone(),
            ttl_ms: plan.ttl_ms,
            valid_until: won.until,
            valid_since: attempt.began.at,
            auto_extend: options.auto_extend,
            gone_at: self.keys_gone_at(attempt.began, plan.ttl_ms),
          };
          let registered = self.register(lock);
          if registered.is_none() {
            self.clean_up_attempt(&plan, &attempt).await;
          }
          let (token, fencing_token) = (attempt.token.to_string(), attempt.fencing_token);
          decided.votes = Some(attempt.into_deciding());
          let Some(id) = registered else {
            return Err(LockError::Closed);
          };
          if options.auto_extend {
            Inner::watch(self, id, won.ms);
          }
          let validity = Validity::from(won);
          return Ok(Some(Acquired {
            id,
            value: token,
            validity_ms: validity.ms,
            expires_at: validity.expires_at,
            attempts: decided.attempts,
            fencing_token,
          }));
        }
      }
      self.clean_up_attempt(&plan, &attempt).await;
      let votes = decided.votes.insert(attempt.into_deciding());
      let retries_left = match options.retry.retries {
        Retries::Unlimited => true,
        Retries::Limited(retries) => decided.attempts <= retries,
      };
      let time_left = plan
        .deadline
        .is_none_or(|deadline| Instant::now() < deadline);
      if !retries_left || !time_left || aborted() {
        return match verdict {
          _ if aborted() => Err(LockError::Aborted),
          Verdict::Unavailable => Err(self.unavailable(votes)),
          _ => Ok(None),
        };
      }
      match (plan.deadline, verdict) {
        (Some(deadline), Verdict::Held) => {
          let wait = self.wait_for_release(&mut waiting, &plan.keys, deadline);
          self.interruptible(wait, cancel.clone()).await?
        }
        _ => {
          self
            .pause(options.retry, plan.deadline, cancel.clone())
            .await?
        }
      }
    }
  }

  /// Stops the watchdog and the waiters, then releases every lock still
  /// held while calls in flight and their commands finish, all within one
  /// command timeout, whatever the nodes do; then closes the connections.
  async fn shut_down(&self) {
    self.waiters.close();
    let held = self.registry().drain();
    let releases = held
      .into_iter()
      .map(|lock| self.finish_release(self.begin_release(lock)));
    let releases = futures_util::future::join_all(releases);
    let finished = futures_util::future::join(releases, self.work.idle());
    let _ = tokio::time::timeout(self.config.command_timeout, finished).await;
    for node in &self.nodes {
      node.close();
    }
  }

  /// When the keys of a `ttl_ms` write issued at `began` are gone from
  /// every node (`HeldLock::gone_at`).
  fn keys_gone_at(&self, began: Began, ttl_ms: u64) -> Instant {
    began.at + Duration::from_millis(ttl_ms) + self.config.command_timeout
  }

  fn registry(&self) -> MutexGuard<'_, Registry> {
    self.registry.lock().unwrap_or_else(|e| e.into_inner())
  }

  /// Keeps `lock` unless the instance is closed, checked while the registry
  /// is held: `close` closes first and drains it after, so a lock is either
  /// refused here or released there.
  fn register(&self, lock: HeldLock) -> Option<u64> {
    let mut registry = self.registry();
    if self.lifecycle.is_closed() {
      return None;
    }
    Some(registry.insert(lock))
  }

  /// Counts `ttl_ms` as a TTL in use: a node that restarted without its
  /// data stays out of the quorum at least that long from then on.
  fn use_ttl(&self, ttl_ms: u64) {
    self.max_ttl_ms.fetch_max(ttl_ms, Ordering::Relaxed);
  }

  /// How long a node that restarted without its data stays out of the
  /// quorum: the longest TTL configured or used; `None` with quarantine off.
  fn quarantine(&self) -> Option<Duration> {
    self
      .config
      .restart_quarantine
      .then(|| Duration::from_millis(self.max_ttl_ms.load(Ordering::Relaxed)))
  }

  fn unavailable(&self, votes: &Votes) -> LockError {
    let node_errors = self
      .nodes
      .iter()
      .zip(&votes.replies)
      .filter_map(|(node, reply)| {
        let message = match reply {
          Reply::Failed(message) => message.clone(),
          _ => uncounted(node, votes.quarantine)?,
        };
        Some(NodeError {
          node: node.label().to_string(),
          message,
        })
      })
      .collect();
    LockError::QuorumUnavailable {
      quorum: quorum_of(self.nodes.len()),
      nodes: self.nodes.len(),
      node_errors,
    }
  }
}

/// Why `node`'s answer does not count toward the quorum, under `quarantine`,
/// if it does not.
fn uncounted(node: &NodeClient, quarantine: Option<Duration>) -> Option<String> {
  let left = node.quarantine_left(quarantine?)?;
  Some(format!(
    "restarted less than max_ttl_ms ago without durable persistence (AOF with appendfsync always), so it may have forgotten locks; its vote counts again in {} ms",
    left.as_millis()
  ))
}
