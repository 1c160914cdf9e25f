//! One multiplexed connection per node, shared by every concurrent command.
//!
//! Connecting happens in the background on first use and again after the
//! connection drops, with exponential backoff between failed attempts. While
//! a node is in backoff its commands fail at once, so a dead node costs a
//! vote, never the caller's time.
//!
//! Every connection first learns the node's run id, uptime and persistence,
//! so that a node that restarted without its data (and may have forgotten
//! the locks it granted) can be kept out of the quorum for a while.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, ErrorKind, RedisError, ServerErrorKind, Value};
use tokio::sync::watch;

use super::node::NodeConfig;
use super::scripts::{Request, SCRIPTS};

mod learn;

use learn::{learn, Learnt};

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

#[derive(Clone)]
enum ConnState {
  Idle,
  Connecting,
  Ready(u64, MultiplexedConnection),
  Down {
    error: Arc<str>,
    retry_at: Instant,
    backoff: Duration,
  },
  Closed,
}

struct Shared {
  node: NodeConfig,
  label: Arc<str>,
  client: Client,
  connect_timeout: Duration,
  state: watch::Sender<ConnState>,
  /// When the node started, in ms after `epoch()`, if it keeps no durable
  /// data; 0 when it does. Read on every vote, hence an atomic.
  volatile_since_ms: AtomicU64,
  status: Mutex<NodeStatus>,
}

/// What the last connection learnt about the node, and its last error.
#[derive(Clone, Debug, Default)]
pub struct NodeStatus {
  pub run_id: Option<String>,
  /// When the node started, as far as its uptime tells.
  pub started: Option<Instant>,
  /// Whether every write reaches the disk before the reply (AOF with
  /// `appendfsync always`); `None` when the node does not say.
  pub durable: Option<bool>,
  pub last_error: Option<String>,
}

/// A cheap handle to one node's connection.
#[derive(Clone)]
pub struct NodeClient {
  shared: Arc<Shared>,
}

impl NodeClient {
  pub fn new(node: NodeConfig, connect_timeout: Duration) -> Result<Self, String> {
    let label: Arc<str> = node.label().into();
    let info = node
      .connection_info()
      .map_err(|e| format!("{label}: {}", node.redact(&e.to_string())))?;
    let client =
      Client::open(info).map_err(|e| format!("{label}: {}", node.redact(&e.to_string())))?;
    Ok(NodeClient {
      shared: Arc::new(Shared {
        node,
        label,
        client,
        connect_timeout,
        state: watch::Sender::new(ConnState::Idle),
        volatile_since_ms: AtomicU64::new(0),
        status: Mutex::new(NodeStatus::default()),
      }),
    })
  }

  /// How long this node stays out of the quorum: it may have forgotten locks
  /// when it keeps no durable data and started less than `max_ttl` ago.
  pub fn quarantine_left(&self, max_ttl: Duration) -> Option<Duration> {
    let since = self.shared.volatile_since_ms.load(Ordering::Relaxed);
    if since == 0 {
      return None;
    }
    let ends = epoch() + Duration::from_millis(since) + max_ttl;
    let left = ends.saturating_duration_since(Instant::now());
    (!left.is_zero()).then_some(left)
  }

  pub fn status(&self) -> NodeStatus {
    self.status_guard().clone()
  }

  fn status_guard(&self) -> MutexGuard<'_, NodeStatus> {
    self.shared.status.lock().unwrap_or_else(|e| e.into_inner())
  }

  pub fn label(&self) -> &str {
    &self.shared.label
  }

  /// Sends one request and returns the node's reply, or why there is none.
  /// The caller bounds the time; this only fails fast when it knows better.
  pub async fn query(&self, request: &Request) -> Result<Value, String> {
    let (generation, mut conn) = self.connection().await?;
    let mut reply = send(&mut conn, &request.cmd).await;
    if let (Err(error), Some(source)) = (&reply, request.script) {
      if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) {
        let mut load = redis::cmd("SCRIPT");
        load.arg("LOAD").arg(source);
        reply = match send(&mut conn, &load).await {
          Ok(_) => send(&mut conn, &request.cmd).await,
          Err(error) => Err(error),
        };
      }
    }
    reply.map_err(|error| {
      if breaks_connection(&error) {
        self.drop_connection(generation);
      }
      let message = self.shared.node.redact(&error.to_string());
      self.status_guard().last_error = Some(message.clone());
      message
    })
  }

  /// A new subscription connection to this node, for release notifications.
  pub async fn subscribe_connection(&self) -> Result<redis::aio::PubSub, String> {
    let shared = &self.shared;
    match tokio::time::timeout(shared.connect_timeout, shared.client.get_async_pubsub()).await {
      Ok(Ok(pubsub)) => Ok(pubsub),
      Ok(Err(error)) => Err(shared.node.redact(&describe(&error))),
      Err(_) => Err(format!(
        "connect timed out after {} ms",
        shared.connect_timeout.as_millis()
      )),
    }
  }

  pub fn is_connected(&self) -> bool {
    matches!(*self.shared.state.borrow(), ConnState::Ready(..))
  }

  /// Closes the connection; later commands fail with "closed".
  pub fn close(&self) {
    self.shared.state.send_replace(ConnState::Closed);
  }

  async fn connection(&self) -> Result<(u64, MultiplexedConnection), String> {
    if let ConnState::Ready(generation, conn) = &*self.shared.state.borrow() {
      return Ok((*generation, conn.clone()));
    }
    let mut rx = self.shared.state.subscribe();
    loop {
      let start = {
        let state = rx.borrow_and_update();
        match &*state {
          ConnState::Ready(generation, conn) => return Ok((*generation, conn.clone())),
          ConnState::Closed => return Err("the connection is closed".into()),
          ConnState::Down {
            error, retry_at, ..
          } if Instant::now() < *retry_at => {
            let wait = retry_at.saturating_duration_since(Instant::now());
            return Err(format!("{error} (reconnecting in {} ms)", wait.as_millis()));
          }
          ConnState::Connecting => false,
          ConnState::Idle | ConnState::Down { .. } => true,
        }
      };
      if start {
        self.start_connecting();
      }
      if rx.changed().await.is_err() {
        return Err("the connection is closed".into());
      }
    }
  }

  fn start_connecting(&self) {
    let mut previous_backoff = Duration::ZERO;
    let started = self.shared.state.send_if_modified(|state| match state {
      ConnState::Idle => {
        *state = ConnState::Connecting;
        true
      }
      ConnState::Down { backoff, .. } => {
        previous_backoff = *backoff;
        *state = ConnState::Connecting;
        true
      }
      _ => false,
    });
    if !started {
      return;
    }
    let shared = self.shared.clone();
    tokio::spawn(async move {
      // Every caller bounds its own wait (a fan-out's deadline, the connect
      // timeout): a timer per command inside the client would only cost.
      let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(shared.connect_timeout))
        .set_response_timeout(None);
      let attempt = tokio::time::timeout(shared.connect_timeout, async {
        let mut conn = shared
          .client
          .get_multiplexed_async_connection_with_config(&config)
          .await?;
        // Loading the scripts up front keeps every later script call at one
        // round trip, even on a node that just restarted with an empty cache.
        for source in SCRIPTS {
          let mut load = redis::cmd("SCRIPT");
          load.arg("LOAD").arg(*source);
          send(&mut conn, &load).await?;
        }
        let learnt = learn(&mut conn).await;
        Ok::<_, RedisError>((conn, learnt))
      })
      .await;
      let next = match attempt {
        Ok(Ok((conn, learnt))) => {
          shared.record(learnt);
          ConnState::Ready(next_generation(), conn)
        }
        Ok(Err(error)) => down(&shared, describe(&error), previous_backoff),
        Err(_) => down(
          &shared,
          format!(
            "connect timed out after {} ms",
            shared.connect_timeout.as_millis()
          ),
          previous_backoff,
        ),
      };
      shared.state.send_if_modified(|state| {
        if matches!(state, ConnState::Connecting) {
          *state = next;
          true
        } else {
          false
        }
      });
    });
  }

  fn drop_connection(&self, generation: u64) {
    self.shared.state.send_if_modified(|state| match state {
      ConnState::Ready(current, _) if *current == generation => {
        *state = ConnState::Idle;
        true
      }
      _ => false,
    });
  }
}

/// Sends one command; an error reply from the server becomes an `Err`.
async fn send(conn: &mut MultiplexedConnection, cmd: &redis::Cmd) -> redis::RedisResult<Value> {
  conn.req_packed_command(cmd).await?.extract_error()
}

impl Shared {
  /// Takes what a new connection learnt. The uptime is the difference of
  /// two clock readings each cut to whole seconds, so it may be up to a
  /// second more than the truth: the start is taken a second later than it
  /// says. A node that does not tell its uptime counts as started now.
  fn record(&self, learnt: Learnt) {
    let now = Instant::now();
    let started = learnt
      .uptime
      .and_then(|uptime| now.checked_sub(uptime.saturating_sub(Duration::from_secs(1))))
      .unwrap_or(now);
    let volatile_since = match learnt.durable {
      Some(true) => 0,
      _ => (started.saturating_duration_since(epoch()).as_millis() as u64).max(1),
    };
    self
      .volatile_since_ms
      .store(volatile_since, Ordering::Relaxed);
    let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
    status.run_id = learnt.run_id;
    status.started = Some(started);
    status.durable = learnt.durable;
  }
}

/// The process's reference instant, so that instants fit in an atomic.
fn epoch() -> Instant {
  static EPOCH: OnceLock<Instant> = OnceLock::new();
  *EPOCH.get_or_init(|| {
    Instant::now()
      .checked_sub(Duration::from_secs(3600))
      .unwrap_or_else(Instant::now)
  })
}

fn down(shared: &Shared, error: String, previous_backoff: Duration) -> ConnState {
  let backoff = (previous_backoff * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF);
  shared
    .status
    .lock()
    .unwrap_or_else(|e| e.into_inner())
    .last_error = Some(shared.node.redact(&error));
  ConnState::Down {
    error: shared.node.redact(&error).into(),
    retry_at: Instant::now() + backoff,
    backoff,
  }
}

fn describe(error: &RedisError) -> String {
  if error.is_connection_refusal() {
    format!("connection refused ({error})")
  } else {
    error.to_string()
  }
}

/// Errors after which the socket cannot be trusted for the next command.
fn breaks_connection(error: &RedisError) -> bool {
  error.is_connection_dropped() || error.is_unrecoverable_error() || error.is_io_error()
}

fn next_generation() -> u64 {
  static GENERATION: AtomicU64 = AtomicU64::new(1);
  GENERATION.fetch_add(1, Ordering::Relaxed)
}
