//! The Redlock orchestration: fan a command out to every node, decide at
//! quorum, compute the validity, clean up after a failed attempt, retry.
//! Locks this instance holds are kept in a registry so that handles can be
//! checked and `close` can release what is still held.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use redis::Value;
use tokio::sync::{watch, Notify};

use super::config::{LockConfig, Retries, RetryPolicy};
use super::connection::NodeClient;
use super::error::{LockError, NodeError};
use super::quorum::{quorum_of, validity_ms, Tally, Verdict};
use super::scripts::{Request, Scripts};

/// A lock this instance acquired, as the caller sees it.
#[derive(Clone, Debug)]
pub struct Acquired {
  /// The registry id the caller passes back to extend and release.
  pub id: u64,
  pub value: Arc<str>,
  pub validity: Validity,
  pub attempts: u32,
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

#[derive(Clone)]
struct HeldLock {
  keys: Arc<[String]>,
  value: Arc<str>,
  ttl_ms: u64,
  /// When every node's key has expired, past any clock drift.
  gone_at: Instant,
}

#[derive(Default)]
struct Registry {
  locks: HashMap<u64, HeldLock>,
  next_id: u64,
  /// The size at which expired entries are swept next, so that handles a
  /// caller dropped without releasing cost nothing once their keys expired.
  sweep_at: usize,
  closed: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum Reply {
  Pending,
  Granted,
  Refused,
  Failed(String),
}

struct Votes {
  verdict: Verdict,
  replies: Vec<Reply>,
}

struct Inner {
  config: LockConfig,
  nodes: Vec<NodeClient>,
  scripts: Scripts,
  registry: Mutex<Registry>,
  closed: watch::Sender<bool>,
  in_flight: AtomicUsize,
  idle: Notify,
}

/// The quorum lock over a fixed set of independent nodes.
#[derive(Clone)]
pub struct Engine {
  inner: Arc<Inner>,
}

/// Counts an operation as in flight until dropped, so `close` can wait for it.
struct InFlight<'a>(&'a Inner);

impl<'a> InFlight<'a> {
  fn enter(inner: &'a Inner) -> Result<Self, LockError> {
    inner.in_flight.fetch_add(1, Ordering::SeqCst);
    let guard = InFlight(inner);
    if *inner.closed.borrow() {
      return Err(LockError::Closed);
    }
    Ok(guard)
  }
}

impl Drop for InFlight<'_> {
  fn drop(&mut self) {
    if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
      self.0.idle.notify_waiters();
    }
  }
}

impl Engine {
  /// Checks the configuration and prepares one client per node; nothing
  /// connects until the first command.
  pub fn new(config: LockConfig) -> Result<Self, LockError> {
    config.validate().map_err(LockError::InvalidArg)?;
    let nodes = config
      .nodes
      .iter()
      .map(|node| NodeClient::new(node.clone(), config.connect_timeout))
      .collect::<Result<Vec<_>, _>>()
      .map_err(LockError::InvalidArg)?;
    Ok(Engine {
      inner: Arc::new(Inner {
        config,
        nodes,
        scripts: Scripts::default(),
        registry: Mutex::new(Registry::default()),
        closed: watch::Sender::new(false),
        in_flight: AtomicUsize::new(0),
        idle: Notify::new(),
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
    retry: RetryPolicy,
  ) -> Result<Option<Acquired>, LockError> {
    let inner = &*self.inner;
    let _in_flight = InFlight::enter(inner)?;
    let config = &inner.config;
    let keys: Arc<[String]> = resources
      .iter()
      .map(|resource| format!("{}{resource}", config.key_prefix))
      .collect();
    let value: Arc<str> = uuid::Uuid::new_v4().to_string().into();
    let request = Arc::new(inner.scripts.acquire(&keys, &value, ttl_ms));
    let attempt_timeout = config.command_timeout.min(Duration::from_millis(ttl_ms));
    let mut attempts: u32 = 0;
    loop {
      attempts += 1;
      let start = Instant::now();
      let votes = inner.fan_out(&request, attempt_timeout, acquire_vote).await;
      if votes.verdict == Verdict::Won {
        if let Some(validity_ms) = validity_ms(ttl_ms, start.elapsed(), config.drift_factor) {
          let lock = HeldLock {
            keys: keys.clone(),
            value: value.clone(),
            ttl_ms,
            gone_at: start + Duration::from_millis(ttl_ms) + config.command_timeout,
          };
          return match inner.register(lock) {
            Some(id) => Ok(Some(Acquired {
              id,
              value,
              validity: Validity::from_now(validity_ms),
              attempts,
            })),
            None => {
              inner.clean_up(&keys, &value, &votes.replies).await;
              Err(LockError::Closed)
            }
          };
        }
      }
      inner.clean_up(&keys, &value, &votes.replies).await;
      let retries_left = match retry.retries {
        Retries::Unlimited => true,
        Retries::Limited(retries) => attempts <= retries,
      };
      if !retries_left {
        return match votes.verdict {
          Verdict::Unavailable => Err(inner.unavailable(&votes.replies)),
          _ => Ok(None),
        };
      }
      inner.pause(retry).await?;
    }
  }

  /// Extends a held lock to `ttl_ms` (its acquire TTL when `None`) on every
  /// node that still holds it; the new validity when a majority did in time.
  /// Otherwise the lock is lost: it leaves the registry and its keys are
  /// deleted wherever this owner still had them.
  pub async fn extend(&self, id: u64, ttl_ms: Option<u64>) -> Result<Option<Validity>, LockError> {
    let inner = &*self.inner;
    let _in_flight = InFlight::enter(inner)?;
    let Some(lock) = inner.held(id) else {
      return Ok(None);
    };
    let ttl_ms = ttl_ms.unwrap_or(lock.ttl_ms);
    let request = Arc::new(inner.scripts.extend(&lock.keys, &lock.value, ttl_ms));
    let start = Instant::now();
    let timeout = inner
      .config
      .command_timeout
      .min(Duration::from_millis(ttl_ms));
    let votes = inner.fan_out(&request, timeout, script_vote(1)).await;
    let validity = match votes.verdict {
      Verdict::Won => validity_ms(ttl_ms, start.elapsed(), inner.config.drift_factor),
      _ => None,
    };
    let Some(ms) = validity else {
      // The lease is lost: what is left of it on a minority would only
      // stand in the next owner's way, so it goes now.
      inner.forget(id);
      inner
        .clean_up(&lock.keys, &lock.value, &votes.replies)
        .await;
      return Ok(None);
    };
    let gone_at = start + Duration::from_millis(ttl_ms) + inner.config.command_timeout;
    if let Some(held) = inner
      .registry
      .lock()
      .unwrap_or_else(|e| e.into_inner())
      .locks
      .get_mut(&id)
    {
      held.gone_at = held.gone_at.max(gone_at);
    }
    Ok(Some(Validity::from_now(ms)))
  }

  /// Deletes the lock wherever this owner still holds it; `true` when a
  /// majority still did. A lock released before resolves `false`.
  pub async fn release(&self, id: u64) -> Result<bool, LockError> {
    let inner = &*self.inner;
    let _in_flight = InFlight::enter(inner)?;
    match inner.forget(id) {
      Some(lock) => Ok(inner.release_held(&lock).await),
      None => Ok(false),
    }
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

  /// How many locks the registry holds: the ones not yet released and not
  /// yet swept after expiry.
  pub fn held_count(&self) -> usize {
    let registry = self
      .inner
      .registry
      .lock()
      .unwrap_or_else(|e| e.into_inner());
    registry.locks.len()
  }
}

impl Inner {
  async fn shut_down(&self) {
    let inner = self;
    let limit = inner.config.command_timeout;
    let _ = tokio::time::timeout(limit, async {
      loop {
        let idle = inner.idle.notified();
        if inner.in_flight.load(Ordering::SeqCst) == 0 {
          break;
        }
        idle.await;
      }
    })
    .await;
    let held: Vec<HeldLock> = {
      let mut registry = inner.registry.lock().unwrap_or_else(|e| e.into_inner());
      registry.closed = true;
      registry.locks.drain().map(|(_, lock)| lock).collect()
    };
    let releases = held.iter().map(|lock| inner.release_held(lock));
    let _ = tokio::time::timeout(limit, futures_util::future::join_all(releases)).await;
    for node in &inner.nodes {
      node.close();
    }
  }

  /// Sends `request` to every node at once and returns as soon as the
  /// outcome is certain, or when `timeout` ends the wait for the rest.
  async fn fan_out(
    &self,
    request: &Arc<Request>,
    timeout: Duration,
    vote: impl Fn(&Value) -> Option<bool>,
  ) -> Votes {
    let mut tally = Tally::new(self.nodes.len());
    let mut replies = vec![Reply::Pending; self.nodes.len()];
    let all_connected = self.nodes.iter().all(NodeClient::is_connected);
    let mut answers: FuturesUnordered<_> = self
      .nodes
      .iter()
      .enumerate()
      .map(|(i, node)| {
        let node = node.clone();
        let request = request.clone();
        async move { (i, node.query(&request).await) }
      })
      .collect();
    let started = Instant::now();
    let mut deadline = pin!(tokio::time::sleep(timeout));
    loop {
      tokio::select! {
        biased;
        answer = answers.next() => {
          let Some((i, answer)) = answer else { break };
          let verdict = match answer.map(|value| (vote(&value), value)) {
            Ok((Some(true), _)) => {
              replies[i] = Reply::Granted;
              tally.grant()
            }
            Ok((Some(false), _)) => {
              replies[i] = Reply::Refused;
              tally.refuse()
            }
            Ok((None, value)) => {
              replies[i] = Reply::Failed(format!("unexpected reply {value:?}"));
              tally.fail()
            }
            Err(message) => {
              replies[i] = Reply::Failed(message);
              tally.fail()
            }
          };
          if verdict != Verdict::Pending {
            if !all_connected && !answers.is_empty() {
              // A node that was still connecting has not been sent the
              // command yet; it gets it in the background, so that a write
              // or a delete reaches every node and not only a majority.
              let left = timeout.saturating_sub(started.elapsed());
              tokio::spawn(async move {
                let _ = tokio::time::timeout(left, answers.collect::<Vec<_>>()).await;
              });
            }
            return Votes { verdict, replies };
          }
        }
        () = &mut deadline => {
          for reply in replies.iter_mut().filter(|r| **r == Reply::Pending) {
            *reply = Reply::Failed(format!("no reply within {} ms", timeout.as_millis()));
            tally.fail();
          }
          break;
        }
      }
    }
    Votes {
      verdict: tally.verdict(),
      replies,
    }
  }

  /// Removes this attempt's keys wherever they may have been written: nodes
  /// that granted are cleaned before returning, so a retry is never blocked
  /// by its own key; nodes that failed or had not answered are cleaned in the
  /// background, so a stuck node does not delay the caller.
  async fn clean_up(&self, keys: &[String], value: &str, replies: &[Reply]) {
    let request = Arc::new(self.scripts.release(keys, value));
    let mut granted = Vec::new();
    for (node, reply) in self.nodes.iter().zip(replies) {
      match reply {
        Reply::Refused => {}
        Reply::Granted => granted.push(node),
        Reply::Pending | Reply::Failed(_) => {
          let node = node.clone();
          let request = request.clone();
          let timeout = self.config.command_timeout;
          tokio::spawn(async move {
            let _ = tokio::time::timeout(timeout, node.query(&request)).await;
          });
        }
      }
    }
    if !granted.is_empty() {
      let deletes = granted.iter().map(|node| node.query(&request));
      let _ = tokio::time::timeout(
        self.config.command_timeout,
        futures_util::future::join_all(deletes),
      )
      .await;
    }
  }

  async fn release_held(&self, lock: &HeldLock) -> bool {
    let request = Arc::new(self.scripts.release(&lock.keys, &lock.value));
    let votes = self
      .fan_out(
        &request,
        self.config.command_timeout,
        script_vote(lock.keys.len() as i64),
      )
      .await;
    votes.verdict == Verdict::Won
  }

  /// Waits the retry delay plus jitter, or fails at once when closed.
  async fn pause(&self, retry: RetryPolicy) -> Result<(), LockError> {
    let jitter_ms = retry.jitter.as_millis() as u64;
    let extra = if jitter_ms == 0 {
      0
    } else {
      rand::random_range(0..=jitter_ms)
    };
    let mut closed = self.closed.subscribe();
    tokio::select! {
      () = tokio::time::sleep(retry.delay + Duration::from_millis(extra)) => Ok(()),
      _ = closed.wait_for(|closed| *closed) => Err(LockError::Closed),
    }
  }

  fn register(&self, lock: HeldLock) -> Option<u64> {
    let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
    if registry.closed || *self.closed.borrow() {
      return None;
    }
    if registry.locks.len() >= registry.sweep_at {
      let now = Instant::now();
      registry.locks.retain(|_, held| held.gone_at > now);
      registry.sweep_at = (registry.locks.len() * 2).max(1024);
    }
    registry.next_id += 1;
    let id = registry.next_id;
    registry.locks.insert(id, lock);
    Some(id)
  }

  fn forget(&self, id: u64) -> Option<HeldLock> {
    self
      .registry
      .lock()
      .unwrap_or_else(|e| e.into_inner())
      .locks
      .remove(&id)
  }

  fn held(&self, id: u64) -> Option<HeldLock> {
    let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
    registry.locks.get(&id).cloned()
  }

  fn unavailable(&self, replies: &[Reply]) -> LockError {
    let node_errors = self
      .nodes
      .iter()
      .zip(replies)
      .filter_map(|(node, reply)| match reply {
        Reply::Failed(message) => Some(NodeError {
          node: node.label().to_string(),
          message: message.clone(),
        }),
        _ => None,
      })
      .collect();
    LockError::QuorumUnavailable {
      quorum: quorum_of(self.nodes.len()),
      nodes: self.nodes.len(),
      node_errors,
    }
  }
}

/// `SET NX` answers OK when it wrote and nil when the key existed; the
/// all-or-nothing script answers 1 or 0.
fn acquire_vote(value: &Value) -> Option<bool> {
  match value {
    Value::Okay => Some(true),
    Value::Nil => Some(false),
    Value::Int(n) => Some(*n == 1),
    _ => None,
  }
}

/// A script vote is a grant when the node answered `expected`.
fn script_vote(expected: i64) -> impl Fn(&Value) -> Option<bool> {
  move |value| match value {
    Value::Int(n) => Some(*n == expected),
    _ => None,
  }
}
