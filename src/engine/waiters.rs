//! Release notifications for callers waiting on a held lock: one
//! subscription connection per node, shared by every waiter of every
//! resource. Release publishes on the key's own channel; each message wakes
//! one local waiter of that key, so a thousand waiters are not a thousand
//! attempts per release.
//!
//! One task per node owns that node's subscription and keeps the channels
//! subscribed there in step with the keys that have waiters. Joining and
//! leaving only change the map of waiters and tell the tasks, so nothing
//! holds a lock while a node is asked anything. Every `SUBSCRIBE` and
//! `UNSUBSCRIBE` is bounded by the command timeout; a subscription that
//! times out, or drops, is opened again with backoff and jitter while keys
//! have waiters (the backoff starts over only once one has lasted a while,
//! so a node that drops every connection is not hammered); once it is
//! back, one waiter of each key is woken to try again, since a release may
//! have been published while it was down. A node that refuses `SUBSCRIBE`
//! (a user without channel rights) will not announce releases: its
//! connection is kept and the node is asked again only after
//! `REFUSED_PAUSE`, and its waiters rely on the holder's TTL there.
//! A subscription that has waiters is pinged every `PING_EVERY` (within
//! the command timeout), so one that died silently (a NAT or load balancer
//! that dropped it, a black-holed node) is noticed and opened again, and
//! its waiters are woken, instead of sleeping until their holders' leases
//! end. `close` stops the tasks at once, whatever the nodes do.
//!
//! A subscription connection is authenticated as the node's command
//! connection is: with credentials from a provider it authenticates again in
//! place when they change (see `connection::Subscriber`), so a rotating
//! token costs no waiter its wake-up.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::AbortHandle;

use super::connection::{next_backoff, NodeClient, Subscriber};
use super::lifecycle::Lifecycle;

/// How long a node that refused `SUBSCRIBE` is left alone.
const REFUSED_PAUSE: Duration = Duration::from_secs(60);
/// How long a subscription must have lasted for its loss to start the
/// backoff over.
const STEADY: Duration = Duration::from_secs(10);
/// How often a subscription with waiters is asked whether it still works:
/// well within the idle timeouts of NATs and load balancers.
const PING_EVERY: Duration = Duration::from_secs(15);

/// The waiters of one key.
struct Channel {
  waiters: usize,
  wake: Arc<Notify>,
}

/// What a node's task is told about the map of waiters.
enum Change {
  /// Keys that found their first waiter; the sender is dropped once the
  /// task has tried to subscribe them.
  Joined(Vec<String>, oneshot::Sender<()>),
  /// Keys that lost their last waiter.
  Left(Vec<String>),
}

/// A node's task, once started.
struct Task {
  changes: mpsc::UnboundedSender<Change>,
  handle: AbortHandle,
}

/// One per node.
struct Tasks {
  nodes: Vec<Option<Task>>,
}

struct Shared {
  nodes: Vec<NodeClient>,
  /// The instance's: no task starts once it is closed.
  lifecycle: Lifecycle,
  /// The bound of every `SUBSCRIBE` and `UNSUBSCRIBE`.
  timeout: Duration,
  channels: Mutex<HashMap<String, Channel>>,
  tasks: Mutex<Tasks>,
}

pub struct Waiters {
  shared: Arc<Shared>,
}

/// A caller's place among the waiters of some keys; leaving drops it.
pub struct Waiting {
  shared: Arc<Shared>,
  keys: Vec<String>,
  wake: Vec<Arc<Notify>>,
}

impl Waiters {
  pub fn new(nodes: &[NodeClient], timeout: Duration, lifecycle: Lifecycle) -> Self {
    Waiters {
      shared: Arc::new(Shared {
        nodes: nodes.to_vec(),
        lifecycle,
        timeout,
        channels: Mutex::default(),
        tasks: Mutex::new(Tasks {
          nodes: nodes.iter().map(|_| None).collect(),
        }),
      }),
    }
  }

  /// Joins the waiters of `keys` now; the future resolves once every node
  /// was asked to subscribe the keys that had none (whether or not it
  /// could: a node that cannot only means fewer wake-ups, since the caller
  /// also wakes when the holder's TTL runs out).
  pub fn join(&self, keys: &[String]) -> (Waiting, impl Future<Output = ()> + Send + 'static) {
    let mut fresh = Vec::new();
    let mut wake = Vec::new();
    {
      let mut channels = self.shared.channels();
      for key in keys {
        let channel = channels.entry(key.clone()).or_insert_with(|| {
          fresh.push(key.clone());
          Channel {
            waiters: 0,
            wake: Arc::new(Notify::new()),
          }
        });
        channel.waiters += 1;
        wake.push(channel.wake.clone());
      }
    }
    let subscribed = match fresh.is_empty() {
      true => Vec::new(),
      false => self.shared.joined(&fresh),
    };
    let waiting = Waiting {
      shared: self.shared.clone(),
      keys: keys.to_vec(),
      wake,
    };
    (waiting, async move {
      futures_util::future::join_all(subscribed).await;
    })
  }

  /// Stops every node's task, which closes its subscription connection;
  /// waits in progress end with the lock instance's close. Call once the
  /// instance is closed: a task started after this would be left running.
  pub fn close(&self) {
    let mut tasks = self.shared.tasks();
    for task in tasks.nodes.iter_mut().filter_map(Option::take) {
      task.handle.abort();
    }
  }
}

impl Shared {
  fn channels(&self) -> MutexGuard<'_, HashMap<String, Channel>> {
    self.channels.lock().unwrap_or_else(|e| e.into_inner())
  }

  fn tasks(&self) -> MutexGuard<'_, Tasks> {
    self.tasks.lock().unwrap_or_else(|e| e.into_inner())
  }

  /// Tells every node's task (started with the first keys) about `keys`;
  /// one receiver per node, which ends once it tried them.
  fn joined(self: &Arc<Self>, keys: &[String]) -> Vec<oneshot::Receiver<()>> {
    let mut tasks = self.tasks();
    // Checked under the lock that `close` takes after closing, so a task
    // is either refused here or seen and stopped there.
    if self.lifecycle.is_closed() {
      return Vec::new();
    }
    let mut tried = Vec::new();
    for (node, task) in tasks.nodes.iter_mut().enumerate() {
      let task = task.get_or_insert_with(|| {
        let (changes, received) = mpsc::unbounded_channel();
        let handle = tokio::spawn(serve(self.clone(), node, received)).abort_handle();
        Task { changes, handle }
      });
      let (told, done) = oneshot::channel();
      if task
        .changes
        .send(Change::Joined(keys.to_vec(), told))
        .is_ok()
      {
        tried.push(done);
      }
    }
    tried
  }

  fn left(&self, keys: Vec<String>) {
    let tasks = self.tasks();
    for task in tasks.nodes.iter().flatten() {
      let _ = task.changes.send(Change::Left(keys.clone()));
    }
  }

  fn wake(&self, key: &str) {
    let wake = self.channels().get(key).map(|channel| channel.wake.clone());
    if let Some(wake) = wake {
      wake.notify_one();
    }
  }
}

/// One node's task: applies the changes it is told, reads the messages,
/// and opens the subscription again when it is lost and keys have waiters.
async fn serve(shared: Arc<Shared>, node: usize, mut changes: mpsc::UnboundedReceiver<Change>) {
  let mut link = Link {
    node: shared.nodes[node].clone(),
    subscription: None,
    backoff: Duration::ZERO,
    retry_at: Instant::now(),
    was_lost: false,
    refused_until: None,
  };
  loop {
    let first = tokio::select! {
      change = changes.recv() => match change {
        Some(change) => change,
        None => return,
      },
      due = link.next_event(&shared) => {
        match due {
          Due::Nothing => {}
          Due::Reconnect => link.reconnect(&shared).await,
          Due::Subscribe => {
            let wanted = shared.channels().keys().cloned().collect();
            link.apply(&shared, wanted, HashSet::new()).await;
          }
        }
        continue;
      }
    };
    let mut joined = HashSet::new();
    let mut left = HashSet::new();
    let mut told = Vec::new();
    let more = std::iter::from_fn(|| changes.try_recv().ok());
    for change in std::iter::once(first).chain(more) {
      match change {
        Change::Joined(keys, sender) => {
          joined.extend(keys);
          told.push(sender);
        }
        Change::Left(keys) => left.extend(keys),
      }
    }
    link.apply(&shared, joined, left).await;
    // Tells the joiners their keys were tried.
    drop(told);
  }
}

/// A node's subscription connection, if open, and when to try again if not.
struct Link {
  node: NodeClient,
  subscription: Option<Subscription>,
  backoff: Duration,
  retry_at: Instant,
  /// Whether the keys went without a subscription (one was lost, or failed
  /// to open) since the last one opened.
  was_lost: bool,
  /// Until when not to subscribe, after the node refused it.
  refused_until: Option<Instant>,
}

struct Subscription {
  subscriber: Subscriber,
  subscribed: HashSet<String>,
  opened_at: Instant,
  ping_at: Instant,
}

/// What a node's task does after an event.
enum Due {
  Nothing,
  Reconnect,
  /// The pause after a refused `SUBSCRIBE` is over.
  Subscribe,
}

impl Link {
  /// Handles the next message, or tells what is due: opening a lost
  /// subscription again while keys have waiters, or asking a node that
  /// refused to subscribe once more.
  async fn next_event(&mut self, shared: &Shared) -> Due {
    let refused_until = self.refused_until;
    let waited_on = !shared.channels().is_empty();
    match &mut self.subscription {
      Some(live) => {
        let pause_over = async {
          match refused_until {
            Some(until) => tokio::time::sleep_until(until.into()).await,
            None => std::future::pending().await,
          }
        };
        let ping_due = async {
          match waited_on {
            true => tokio::time::sleep_until(live.ping_at.into()).await,
            false => std::future::pending().await,
          }
        };
        tokio::select! {
          message = live.subscriber.next_message() => {
            match message {
              Some(channel) => shared.wake(&channel),
              None => self.lost(),
            }
            Due::Nothing
          }
          () = pause_over => {
            self.refused_until = None;
            Due::Subscribe
          }
          () = ping_due => {
            match tokio::time::timeout(shared.timeout, live.subscriber.ping()).await {
              // An error reply (a user without PING) is an answer too.
              Ok(Ok(())) => live.ping_at = Instant::now() + PING_EVERY,
              Ok(Err(error)) if error.code().is_some() => live.ping_at = Instant::now() + PING_EVERY,
              _ => self.lost(),
            }
            Due::Nothing
          }
        }
      }
      None if !shared.channels().is_empty() => {
        tokio::time::sleep_until(self.retry_at.into()).await;
        Due::Reconnect
      }
      None => std::future::pending().await,
    }
  }

  async fn apply(&mut self, shared: &Shared, joined: HashSet<String>, left: HashSet<String>) {
    let Some(live) = &mut self.subscription else {
      // Opening subscribes every key with waiters, these among them.
      if !joined.is_empty() && Instant::now() >= self.retry_at {
        self.reconnect(shared).await;
      }
      return;
    };
    let refused = self.refused_until.is_some();
    let (add, remove) = {
      let channels = shared.channels();
      let add = joined
        .into_iter()
        .filter(|key| !refused && channels.contains_key(key) && !live.subscribed.contains(key));
      let remove = left
        .into_iter()
        .filter(|key| !channels.contains_key(key) && live.subscribed.contains(key));
      (add.collect::<Vec<_>>(), remove.collect::<Vec<_>>())
    };
    if add.is_empty() && remove.is_empty() {
      return;
    }
    match tokio::time::timeout(shared.timeout, live.change(add, remove)).await {
      Ok(Ok(())) => {}
      Ok(Err(error)) if error.code().is_some() => self.refused(),
      _ => self.lost(),
    }
  }

  /// The node answered `SUBSCRIBE` with an error: it will not announce
  /// releases for a while, and the connection stays as it is.
  fn refused(&mut self) {
    self.refused_until = Some(Instant::now() + REFUSED_PAUSE);
  }

  /// Opens the subscription (within the connect timeout) and subscribes
  /// every key that has waiters (within the command timeout). After a lost
  /// one, a waiter of each key tries again: the release it waits for may
  /// have been published meanwhile.
  async fn reconnect(&mut self, shared: &Shared) {
    let Ok(subscriber) = self.node.subscribe_connection().await else {
      return self.lost();
    };
    let mut live = Subscription {
      subscriber,
      subscribed: HashSet::new(),
      opened_at: Instant::now(),
      ping_at: Instant::now() + PING_EVERY,
    };
    let wanted = shared.channels().keys().cloned().collect();
    let subscribed = match self.refused_until {
      Some(_) => Ok(Ok(())),
      None => tokio::time::timeout(shared.timeout, live.change(wanted, Vec::new())).await,
    };
    match subscribed {
      Ok(Ok(())) => {}
      Ok(Err(error)) if error.code().is_some() => self.refused(),
      _ => return self.lost(),
    }
    if std::mem::take(&mut self.was_lost) {
      for key in &live.subscribed {
        shared.wake(key);
      }
    }
    self.subscription = Some(live);
  }

  fn lost(&mut self) {
    self.was_lost = true;
    let steady = self
      .subscription
      .take()
      .is_some_and(|live| live.opened_at.elapsed() >= STEADY);
    if steady {
      self.backoff = Duration::ZERO;
    }
    self.backoff = next_backoff(self.backoff);
    self.retry_at = Instant::now() + self.backoff;
  }
}

impl Subscription {
  async fn change(&mut self, add: Vec<String>, remove: Vec<String>) -> redis::RedisResult<()> {
    if !add.is_empty() {
      self.subscriber.subscribe(&add).await?;
      self.subscribed.extend(add);
    }
    if !remove.is_empty() {
      self.subscriber.unsubscribe(&remove).await?;
      for key in &remove {
        self.subscribed.remove(key);
      }
    }
    Ok(())
  }
}

impl Waiting {
  /// Resolves when a release of one of the keys was announced.
  pub async fn released(&self) {
    let wakes = self.wake.iter().map(|wake| Box::pin(wake.notified()));
    futures_util::future::select_all(wakes).await;
  }
}

impl Drop for Waiting {
  fn drop(&mut self) {
    let mut gone = Vec::new();
    {
      let mut channels = self.shared.channels();
      for key in &self.keys {
        if let Some(channel) = channels.get_mut(key) {
          channel.waiters -= 1;
          if channel.waiters == 0 {
            channels.remove(key);
            gone.push(key.clone());
          }
        }
      }
    }
    if !gone.is_empty() {
      self.shared.left(gone);
    }
  }
}
