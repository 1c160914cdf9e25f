//! The Redlock orchestration: acquire, extend and release at quorum,
//! compute the validity, clean up after a failed attempt, retry, and close.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::config::{AcquireOptions, LockConfig, Retries};
use super::connection::NodeClient;
use super::error::{LockError, NodeError};
use super::fanout::Reply;
use super::quorum::{quorum_of, validity_ms, Verdict};
use super::registry::{HeldLock, Registry};
use super::scripts::{fence_key, Scripts};
use super::tracker::{Tracked, Tracker};
use super::waiters::{Waiters, Waiting};
use super::watchdog::Schedule;

use attempt::{Begun, Plan};

mod attempt;
mod inspect;
mod keep_alive;
mod lease;
mod waits;

pub use inspect::{HealthReport, LockInfo, NodeHealth, NodeLock};

/// A lock this instance acquired, as the caller sees it.
#[derive(Clone, Debug)]
pub struct Acquired {
  /// The registry id the caller passes back to extend and release.
  pub id: u64,
  /// This owner's random token; the stored value adds the metadata to it.
  pub value: Arc<str>,
  pub validity: Validity,
  pub attempts: u32,
  pub fencing_token: Option<u64>,
}

/// How long a lease is guaranteed, counted from the moment its quorum was
/// reached, and that end as wall-clock time for callers that need a date.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Validity {
  pub ms: u64,
  pub expires_at_epoch_ms: f64,
}

impl Validity {
  fn from_now(ms: u64) -> Self {
    let now = std::time::SystemTime::now()
      .duration_since(std::time::UNIX_EPOCH)
      .unwrap_or_default();
    Validity {
      ms,
      expires_at_epoch_ms: (now.as_millis() as u64 + ms) as f64,
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
  closed: watch::Sender<bool>,
  work: Arc<Tracker>,
  /// The longest TTL configured or used so far: how long a node that
  /// restarted without its data stays out of the quorum.
  max_ttl_ms: AtomicU64,
}

/// The quorum lock over a fixed set of independent nodes.
#[derive(Clone)]
pub struct Engine {
  inner: Arc<Inner>,
}

impl Drop for Inner {
  /// An instance dropped without `close` stops its tasks and connections too.
  fn drop(&mut self) {
    self.schedule.stop();
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
    if *inner.closed.borrow() {
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
  /// connects until the first command.
  pub fn new(config: LockConfig, on_lost: LostSink) -> Result<Self, LockError> {
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
    let waiters = Waiters::new(&nodes, config.command_timeout);
    Ok(Engine {
      inner: Arc::new(Inner {
        nodes,
        scripts: Scripts::default(),
        registry: Mutex::new(Registry::default()),
        schedule: Arc::new(Schedule::default()),
        waiters,
        on_lost,
        closed: watch::Sender::new(false),
        work,
        max_ttl_ms: AtomicU64::new(config.max_ttl_ms.unwrap_or(0).max(config.lock_ttl_ms)),
        config,
      }),
    })
  }

  pub fn config(&self) -> &LockConfig {
    &self.inner.config
  }

  pub fn is_closed(&self) -> bool {
    *self.inner.closed.borrow()
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
  ) -> impl Future<Output = Result<Option<Acquired>, LockError>> + Send + 'static {
    let inner = self.inner.clone();
    let begun = InFlight::enter(&inner).map(|in_flight| {
      let plan = inner.plan(resources, ttl_ms, &options);
      let first = inner.begin_attempt(&plan);
      (in_flight, plan, first)
    });
    async move {
      let (_in_flight, plan, first) = begun?;
      inner.acquire(plan, first, options, cancel).await
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
  ) -> impl Future<Output = Result<Option<Validity>, LockError>> + Send + 'static {
    let inner = self.inner.clone();
    let begun =
      InFlight::enter(&inner).map(|in_flight| (in_flight, inner.begin_extend(id, ttl_ms)));
    async move {
      let (_in_flight, extension) = begun?;
      let Some(extension) = extension else {
        return Ok(None);
      };
      let lock = extension.lock.clone();
      match inner.finish_extend(extension).await {
        (Some(ms), _) => Ok(Some(Validity::from_now(ms))),
        (None, replies) => {
          inner.give_up(id, &lock, &replies).await;
          Ok(None)
        }
      }
    }
  }

  /// Deletes the lock wherever this owner still holds it; `true` when a
  /// majority still did. A lock released before resolves `false`. Issued now.
  pub fn release(&self, id: u64) -> impl Future<Output = Result<bool, LockError>> + Send + 'static {
    let inner = self.inner.clone();
    let begun = InFlight::enter(&inner).map(|in_flight| {
      let release = inner
        .registry()
        .remove(id)
        .map(|lock| inner.begin_release(lock));
      (in_flight, release)
    });
    async move {
      let (_in_flight, release) = begun?;
      match release {
        Some(release) => Ok(inner.finish_release(release).await),
        None => Ok(false),
      }
    }
  }

  /// Refuses new calls at once; the returned future releases every lock
  /// still held and lets calls in flight and their commands finish, all
  /// within one command timeout, then closes the connections. Later calls
  /// fail with `LockError::Closed`; the future of a second close does
  /// nothing.
  pub fn close(&self) -> impl Future<Output = ()> + Send + 'static {
    let first = !self.inner.closed.send_replace(true);
    let inner = self.inner.clone();
    async move {
      if first {
        inner.shut_down().await;
      }
    }
  }
}

impl Inner {
  /// What every attempt of an acquire of `resources` shares.
  fn plan(&self, resources: &[String], ttl_ms: u64, options: &AcquireOptions) -> Plan {
    let config = &self.config;
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
      quarantine: self.quarantine(ttl_ms),
    }
  }

  /// The attempts of one acquire, the first already begun, and the waits
  /// between them.
  async fn acquire(
    self: &Arc<Self>,
    plan: Plan,
    first: Begun,
    options: AcquireOptions,
    cancel: Option<watch::Receiver<bool>>,
  ) -> Result<Option<Acquired>, LockError> {
    let config = &self.config;
    let mut waiting: Option<Waiting> = None;
    let aborted = || cancel.as_ref().is_some_and(|cancel| *cancel.borrow());
    let mut next = Some(first);
    let mut attempts: u32 = 0;
    loop {
      let begun = match next.take() {
        Some(begun) => begun,
        None if aborted() => return Err(LockError::Aborted),
        None => self.begin_attempt(&plan),
      };
      attempts += 1;
      let attempt = self.finish_attempt(&plan, begun).await;
      let verdict = attempt.verdict();
      if verdict == Verdict::Won && !aborted() {
        if let Some(validity_ms) =
          validity_ms(plan.ttl_ms, attempt.start.elapsed(), config.drift_factor)
        {
          let lock = HeldLock {
            keys: plan.keys.clone(),
            value: attempt.value.clone(),
            ttl_ms: plan.ttl_ms,
            valid_until: Instant::now() + Duration::from_millis(validity_ms),
            gone_at: attempt.start + Duration::from_millis(plan.ttl_ms) + config.command_timeout,
          };
          return match self.register(lock) {
            Some(id) => {
              if options.auto_extend {
                Inner::watch(self, id, validity_ms);
              }
              Ok(Some(Acquired {
                id,
                value: attempt.token.clone(),
                validity: Validity::from_now(validity_ms),
                attempts,
                fencing_token: attempt.fencing_token,
              }))
            }
            None => {
              self.clean_up_attempt(&plan.keys, &attempt).await;
              Err(LockError::Closed)
            }
          };
        }
      }
      self.clean_up_attempt(&plan.keys, &attempt).await;
      let retries_left = match options.retry.retries {
        Retries::Unlimited => true,
        Retries::Limited(retries) => attempts <= retries,
      };
      let time_left = plan
        .deadline
        .is_none_or(|deadline| Instant::now() < deadline);
      if !retries_left || !time_left || aborted() {
        return match verdict {
          _ if aborted() => Err(LockError::Aborted),
          Verdict::Unavailable => Err(self.unavailable(attempt.deciding(), plan.quarantine)),
          _ => Ok(None),
        };
      }
      match (plan.deadline, verdict) {
        (Some(deadline), Verdict::Held) => {
          let wait = self.wait_for_release(&mut waiting, &plan.keys, deadline);
          self.interruptible(wait, cancel.clone()).await?
        }
        _ => self.pause(options.retry, cancel.clone()).await?,
      }
    }
  }

  /// Stops the watchdog and the waiters, then releases every lock still
  /// held while calls in flight and their commands finish, all within one
  /// command timeout, whatever the nodes do; then closes the connections.
  async fn shut_down(&self) {
    self.schedule.stop();
    self.waiters.close();
    let held = self.registry().close();
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

  fn registry(&self) -> MutexGuard<'_, Registry> {
    self.registry.lock().unwrap_or_else(|e| e.into_inner())
  }

  fn register(&self, lock: HeldLock) -> Option<u64> {
    let mut registry = self.registry();
    if *self.closed.borrow() {
      return None;
    }
    registry.insert(lock)
  }

  /// How long a node that restarted without its data stays out of the
  /// quorum, counting `ttl_ms` as used; `None` with quarantine off.
  fn quarantine(&self, ttl_ms: u64) -> Option<Duration> {
    if !self.config.restart_quarantine {
      return None;
    }
    let before = self.max_ttl_ms.fetch_max(ttl_ms, Ordering::Relaxed);
    Some(Duration::from_millis(before.max(ttl_ms)))
  }

  fn unavailable(&self, replies: &[Reply], quarantine: Option<Duration>) -> LockError {
    let node_errors = self
      .nodes
      .iter()
      .zip(replies)
      .filter_map(|(node, reply)| {
        let message = match reply {
          Reply::Failed(message) => message.clone(),
          _ => {
            let left = node.quarantine_left(quarantine?)?;
            format!(
              "restarted less than max_ttl_ms ago without durable persistence (AOF with appendfsync always), so it may have forgotten locks; its vote counts again in {} ms",
              left.as_millis()
            )
          }
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
