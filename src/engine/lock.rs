//! The Redlock orchestration: acquire, extend and release at quorum,
//! compute the validity, clean up after a failed attempt, retry, and close.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::Value;
use tokio::sync::watch;

use super::config::{AcquireOptions, LockConfig, Retries};
use super::connection::NodeClient;
use super::error::{LockError, NodeError};
use super::fanout::{fan_out, Reply, Votes};
use super::quorum::{quorum_of, validity_ms, Verdict};
use super::registry::{HeldLock, Registry};
use super::scripts::{fence_key, Request, Scripts};
use super::tracker::{Tracked, Tracker};
use super::waiters::{Waiters, Waiting};
use super::watchdog::Schedule;

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
  fn drop(&mut self) {
    self.schedule.stop();
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

impl Engine {
  /// Checks the configuration and prepares one client per node; nothing
  /// connects until the first command.
  pub fn new(config: LockConfig, on_lost: LostSink) -> Result<Self, LockError> {
    config.validate().map_err(LockError::InvalidArg)?;
    let nodes = config
      .nodes
      .iter()
      .map(|node| NodeClient::new(node.clone(), config.connect_timeout))
      .collect::<Result<Vec<_>, _>>()
      .map_err(LockError::InvalidArg)?;
    let waiters = Waiters::new(&nodes);
    Ok(Engine {
      inner: Arc::new(Inner {
        nodes,
        scripts: Scripts::default(),
        registry: Mutex::new(Registry::default()),
        schedule: Arc::new(Schedule::default()),
        waiters,
        on_lost,
        closed: watch::Sender::new(false),
        work: Arc::default(),
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
  /// nodes answered the last attempt.
  pub async fn acquire(
    &self,
    resources: &[String],
    ttl_ms: u64,
    options: AcquireOptions,
    cancel: Option<watch::Receiver<bool>>,
  ) -> Result<Option<Acquired>, LockError> {
    let inner = &*self.inner;
    let _in_flight = InFlight::enter(inner)?;
    let config = &inner.config;
    let keys: Arc<[String]> = resources
      .iter()
      .map(|resource| format!("{}{resource}", config.key_prefix))
      .collect();
    let attempt_timeout = config.command_timeout.min(Duration::from_millis(ttl_ms));
    let fences: Option<Arc<[String]>> = options.fencing.then(|| {
      resources
        .iter()
        .map(|resource| fence_key(&config.key_prefix, resource))
        .collect()
    });
    let quarantine = inner.quarantine(ttl_ms);
    let deadline = options.wait.map(|wait| Instant::now() + wait);
    let mut waiting: Option<Waiting> = None;
    let aborted = || cancel.as_ref().is_some_and(|cancel| *cancel.borrow());
    let mut attempts: u32 = 0;
    loop {
      if aborted() {
        return Err(LockError::Aborted);
      }
      attempts += 1;
      // A fresh token per attempt: the clean-up of an earlier attempt still
      // on its way to a slow node can then never delete this one's key.
      let token: Arc<str> = uuid::Uuid::new_v4().to_string().into();
      let value: Arc<str> = match &options.metadata {
        Some(metadata) => format!("{token} {metadata}").into(),
        None => token.clone(),
      };
      let start = Instant::now();
      let attempt = inner
        .attempt(
          &keys,
          fences.as_deref(),
          &value,
          ttl_ms,
          attempt_timeout,
          quarantine,
        )
        .await;
      let verdict = attempt.verdict();
      if verdict == Verdict::Won && !aborted() {
        if let Some(validity_ms) = validity_ms(ttl_ms, start.elapsed(), config.drift_factor) {
          let lock = HeldLock {
            keys: keys.clone(),
            value: value.clone(),
            ttl_ms,
            valid_until: Instant::now() + Duration::from_millis(validity_ms),
            gone_at: start + Duration::from_millis(ttl_ms) + config.command_timeout,
            trailing: attempt.written.trailing.clone(),
          };
          return match inner.register(lock) {
            Some(id) => {
              if options.auto_extend {
                Inner::watch(&self.inner, id, validity_ms);
              }
              Ok(Some(Acquired {
                id,
                value: token,
                validity: Validity::from_now(validity_ms),
                attempts,
                fencing_token: attempt.fencing_token,
              }))
            }
            None => {
              inner.clean_up_attempt(&keys, &value, &attempt).await;
              Err(LockError::Closed)
            }
          };
        }
      }
      inner.clean_up_attempt(&keys, &value, &attempt).await;
      let retries_left = match options.retry.retries {
        Retries::Unlimited => true,
        Retries::Limited(retries) => attempts <= retries,
      };
      let time_left = deadline.is_none_or(|deadline| Instant::now() < deadline);
      if !retries_left || !time_left || aborted() {
        return match verdict {
          _ if aborted() => Err(LockError::Aborted),
          Verdict::Unavailable => Err(inner.unavailable(attempt.deciding(), quarantine)),
          _ => Ok(None),
        };
      }
      match (&waiting, deadline, verdict) {
        // Subscribed only once the lock turned out held, and then tried
        // again at once: a release between that attempt and the
        // subscription would otherwise go unnoticed.
        (None, Some(_), Verdict::Held) => waiting = Some(inner.waiters.join(&keys).await),
        (Some(waiting), Some(deadline), Verdict::Held) => {
          inner
            .wait_for_release(waiting, &keys[0], deadline, cancel.clone())
            .await?
        }
        _ => inner.pause(options.retry, cancel.clone()).await?,
      }
    }
  }

  /// Extends a held lock to `ttl_ms` (its acquire TTL when `None`) on every
  /// node that still holds it; the new validity when a majority did in time.
  /// Otherwise the lock is lost: it leaves the registry and its keys are
  /// deleted wherever this owner still had them.
  pub async fn extend(&self, id: u64, ttl_ms: Option<u64>) -> Result<Option<Validity>, LockError> {
    let inner = &*self.inner;
    let _in_flight = InFlight::enter(inner)?;
    let held = inner.registry().get(id);
    let Some(lock) = held else {
      return Ok(None);
    };
    let (validity, replies) = inner
      .try_extend(id, &lock, ttl_ms.unwrap_or(lock.ttl_ms))
      .await;
    match validity {
      Some(ms) => Ok(Some(Validity::from_now(ms))),
      None => {
        inner.give_up(id, &lock, &replies).await;
        Ok(None)
      }
    }
  }

  /// Deletes the lock wherever this owner still holds it; `true` when a
  /// majority still did. A lock released before resolves `false`.
  pub async fn release(&self, id: u64) -> Result<bool, LockError> {
    let inner = &*self.inner;
    let _in_flight = InFlight::enter(inner)?;
    let Some(lock) = inner.registry().remove(id) else {
      return Ok(false);
    };
    Ok(inner.release_held(&lock).await)
  }

  /// Refuses new calls at once; the returned future lets calls in flight
  /// finish (bounded by the command timeout), releases every lock still held
  /// and closes the connections. Later calls fail with `LockError::Closed`;
  /// the future of a second close does nothing.
  pub fn close(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
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
  /// `fan_out` over this instance's nodes, its background writes tracked.
  async fn fan_out(
    &self,
    request: &Arc<Request>,
    timeout: Duration,
    quarantine: Option<Duration>,
    vote: impl Fn(&Value) -> Option<bool>,
  ) -> Votes {
    fan_out(&self.nodes, request, timeout, quarantine, &self.work, vote).await
  }

  async fn shut_down(&self) {
    let inner = self;
    inner.schedule.stop();
    let limit = inner.config.command_timeout;
    let _ = tokio::time::timeout(limit, inner.work.idle()).await;
    let held = inner.registry().close();
    let releases = held.iter().map(|lock| inner.release_held(lock));
    let _ = tokio::time::timeout(limit, futures_util::future::join_all(releases)).await;
    inner.waiters.close().await;
    for node in &inner.nodes {
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
