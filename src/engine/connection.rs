//! One connection per node, driven by the engine and shared by every command.
//!
//! Commands to a node are delivered in the order they were issued, also
//! those issued while it connects: `issue` appends a command's bytes and its
//! reply slot to the node's queue under one short lock, so issue order is
//! the order on the wire, and the reader task hands each reply to the oldest
//! slot. A caller bounds its own wait by dropping the reply; its command
//! still goes out in its place, so a write that lands late is still followed
//! by whatever was issued after it (its clean-up, a release).
//!
//! Whoever finds the socket free writes: on an idle plain TCP connection
//! that is the issuing thread itself, with a non-blocking write, so a call
//! from JavaScript reaches the node without waking another thread; a busy
//! or TLS connection leaves the bytes to its writer task, which sends
//! everything queued by then in one write. No lock is held across I/O.
//!
//! Connecting happens in the background on first use and again after the
//! connection drops. A failed attempt puts the node in backoff (with jitter,
//! so the clients of a restarted node do not come back in lock-step), during
//! which its commands fail at once: a dead node costs a vote, never the
//! caller's time.
//!
//! A node whose oldest unanswered command has waited four command timeouts
//! (two seconds at least) is stalled: paused, black-holed or far behind.
//! Its connection stays open, since the commands already sent to it may
//! still run there, and only what is issued on the same connection after
//! them is sure to run after them. So while it is stalled, new votes fail at
//! once without being sent, and the follow-ups that must come after earlier
//! writes (releases, clean-ups, a new `AUTH`) are still queued, up to a cap
//! on the backlog that holds for every command. Only once the oldest command
//! has waited `DROP_AFTER` is the connection dropped; what a node in that
//! state ran after the drop, it runs unfollowed (a lock key then lasts until
//! its TTL).
//!
//! Every connection first authenticates, loads the scripts and learns the
//! node's run id, uptime and persistence, so that a node that restarted
//! without its data (and may have forgotten the locks it granted) can be
//! kept out of the quorum for a while. The credentials are the node's own,
//! or its provider's, asked for each connection attempt while the socket
//! opens; when the provider's change (ahead of their expiry), each open
//! connection authenticates again in place, with one `AUTH` issued behind
//! the commands before it, so that no command is lost or reordered. A node
//! that answers `NOSCRIPT` later has lost its scripts, most likely in a
//! restart behind a proxy or a failover: the connection is opened again,
//! which loads the scripts and learns the node anew. A vote that met it
//! fails, since sending it again would put it behind commands issued after
//! it; a compare-and-delete (a release, a clean-up) that met it, or was
//! still unanswered, goes once more on the new connection, behind its
//! handshake's `SCRIPT LOAD`: it deletes only its owner's keys, so running
//! late or twice does no harm (and needs no `EVAL` right). The same goes
//! for the compare-and-deletes still unanswered on a connection the node
//! closed (a restart, `CLIENT KILL`, a revoked token): they go once more on
//! the next connection, opened at once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use redis::{ErrorKind, RedisConnectionInfo, ServerErrorKind, Value, ValueCodec};
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::AbortHandle;
// The redis crate's reply parser (`ValueCodec`) is public but doc-hidden in
// 1.8: an upgrade of the crate must check that it is still there.
use tokio_util::codec::Decoder;

use super::credentials::{self, Credentials, Issued};
use super::node::NodeConfig;
use super::scripts::Request;
use super::tracker::Tracker;

mod handshake;
mod learn;
mod queue;
mod socket;
mod subscriber;

use handshake::{handshake, READ_CHUNK};
use learn::Learnt;
pub use queue::{Answer, Answered};
use queue::{Queue, Slot};
use socket::{ReadSide, Stream, WriteSide};
pub use subscriber::Subscriber;

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// The shortest wait for a reply before a node counts as stalled: long
/// enough for a node slowed by a big command or a fork.
const MIN_STALL: Duration = Duration::from_secs(2);
/// How long the oldest command of a stalled node may wait before its
/// connection is dropped: far longer than a pause that should cost nothing
/// but votes, and short enough to notice a peer that is gone.
const DROP_AFTER: Duration = Duration::from_secs(30);

enum Phase {
  Idle,
  Connecting { generation: u64, task: AbortHandle },
  Ready(Live),
  Down { error: Arc<str>, retry_at: Instant },
  Closed,
}

/// An open connection.
struct Live {
  generation: u64,
  /// A plain TCP socket, which any thread may write to without waiting.
  direct: Option<Arc<TcpStream>>,
  wake_writer: Arc<Notify>,
  /// Whether someone (an issuing thread or the writer task) is writing the
  /// queued bytes; only one may, or their order would mix.
  writing: bool,
  /// The reader and the writer task.
  tasks: [AbortHandle; 2],
}

struct State {
  phase: Phase,
  queue: Queue,
  /// The pause after the last failed attempt; zero once one succeeds.
  backoff: Duration,
}

/// What a command is to its node, which decides whether it waits.
#[derive(Clone, Copy, PartialEq)]
enum Sending {
  /// Fails at once when the node is in backoff or stalled.
  Vote,
  /// Follows earlier commands: queued while the node is stalled.
  FollowUp,
  /// Tells whether the node answers now: connects again even in backoff.
  Probe,
}

/// What ends a connection leads to.
#[derive(Clone, Copy)]
enum Then {
  /// Connect again with the next command: the node was fine a moment ago.
  Idle,
  /// Fail commands at once for a while: the node does not answer.
  Backoff,
}

struct Shared {
  node: NodeConfig,
  label: Arc<str>,
  settings: RedisConnectionInfo,
  connect_timeout: Duration,
  /// How late a reply may be before the node counts as stalled.
  stall_after: Duration,
  /// Every command counts as work under way until its node answers it.
  work: Arc<Tracker>,
  /// The runtime the connection tasks run on: the one of the first command,
  /// so that a command issued from outside it later can still connect.
  runtime: OnceLock<Handle>,
  state: Mutex<State>,
  /// When the node started, in ms after `epoch()`, if it keeps no durable
  /// data; 0 when it does. Read on every vote, hence an atomic.
  volatile_since_ms: AtomicU64,
  status: Mutex<NodeStatus>,
}

/// What the last connection learnt about the node, and its last error.
#[derive(Clone, Debug, Default)]
pub struct NodeStatus {
  pub run_id: Option<String>,
  pub version: Option<String>,
  /// When the node started, as far as its uptime tells.
  pub started: Option<Instant>,
  /// Whether every write reaches the disk before the reply (AOF with
  /// `appendfsync always`); `None` when the node does not say.
  pub durable: Option<bool>,
  pub last_error: Option<String>,
}

/// A cheap handle to one node's connection. Issuing a command may start
/// connecting, on the runtime of the first command issued: that one must
/// be issued within a Tokio runtime context, or it fails.
#[derive(Clone)]
pub struct NodeClient {
  shared: Arc<Shared>,
}

impl NodeClient {
  /// A client that connects on first use; its node counts as stalled once
  /// a reply is four command timeouts (two seconds at least) late.
  pub fn new(
    node: NodeConfig,
    connect_timeout: Duration,
    command_timeout: Duration,
    work: Arc<Tracker>,
  ) -> Result<Self, String> {
    let label: Arc<str> = node.label().into();
    let settings = node
      .connection_info()
      .map_err(|e| format!("{label}: {}", node.redact(&e.to_string())))?
      .redis_settings()
      .clone();
    Ok(NodeClient {
      shared: Arc::new(Shared {
        node,
        label,
        settings,
        connect_timeout,
        stall_after: (command_timeout * 4).max(MIN_STALL),
        work,
        runtime: OnceLock::new(),
        state: Mutex::new(State {
          phase: Phase::Idle,
          queue: Queue::new(Instant::now()),
          backoff: Duration::ZERO,
        }),
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
    self.shared.status().clone()
  }

  pub fn label(&self) -> &str {
    &self.shared.label
  }

  /// Queues one encoded command behind every command issued before it and
  /// returns its reply. Dropping the reply gives up waiting, not the command.
  /// Fails at once while the node is stalled.
  pub fn issue(&self, packed: &[u8]) -> Answer {
    self.answer(packed, None, Sending::Vote)
  }

  /// `issue` for a command that must follow the ones before it (a
  /// compare-and-delete): queued while the node is stalled too. A
  /// `repeatable` command that meets `NOSCRIPT` is sent once more, on the
  /// connection that loads the scripts again.
  pub fn follow_up(&self, packed: &Arc<[u8]>, repeatable: bool) -> Answer {
    let again = repeatable.then(|| packed.clone());
    self.answer(packed, again, Sending::FollowUp)
  }

  /// `follow_up` without waiting for the reply.
  pub fn send(&self, packed: &Arc<[u8]>, repeatable: bool) {
    let again = repeatable.then(|| packed.clone());
    let _ = self.shared.push(packed, None, again, Sending::FollowUp);
  }

  /// Sends one request and returns the node's reply, or why there is none.
  /// The caller bounds the time; this only fails fast when it knows better.
  pub fn query(&self, request: &Request) -> Answer {
    self.issue(&request.cmd.get_packed_command())
  }

  /// `query` for a probe that must tell whether the node answers now: a
  /// node in backoff is connected to again at once.
  pub fn probe(&self, request: &Request) -> Answer {
    self.answer(&request.cmd.get_packed_command(), None, Sending::Probe)
  }

  fn answer(&self, packed: &[u8], again: Option<Arc<[u8]>>, sending: Sending) -> Answer {
    let (reply, answer) = oneshot::channel();
    match self.shared.push(packed, Some(reply), again, sending) {
      Ok(()) => Answer::reply(answer),
      Err(message) => Answer::failed(message),
    }
  }

  /// A new subscription connection to this node, for release notifications,
  /// opened within the connect timeout.
  pub async fn subscribe_connection(&self) -> Result<Subscriber, String> {
    let shared = &self.shared;
    let opened = tokio::time::timeout(shared.connect_timeout, async {
      let tls = shared.tls().await?;
      let (stream, (settings, issued)) =
        tokio::try_join!(socket::open(&shared.node, tls), shared.credentials())?;
      match (&shared.node.credentials, issued) {
        (Some(source), Some(issued)) => {
          Subscriber::renewed(stream, &shared.settings, &issued, source.updates()).await
        }
        _ => Subscriber::fixed(stream, &settings).await,
      }
    })
    .await;
    match opened {
      Ok(opened) => opened.map_err(|error| shared.node.redact(&error)),
      Err(_) => Err(format!(
        "connect timed out after {} ms",
        shared.connect_timeout.as_millis()
      )),
    }
  }

  pub fn is_connected(&self) -> bool {
    matches!(self.shared.lock().phase, Phase::Ready(_))
  }

  /// Closes the connection and fails every command still queued; later
  /// commands fail with "closed".
  pub fn close(&self) {
    let state = self.shared.lock();
    self
      .shared
      .end(state, Phase::Closed, "the connection is closed");
  }
}

impl Shared {
  fn lock(&self) -> MutexGuard<'_, State> {
    self.state.lock().unwrap_or_else(|e| e.into_inner())
  }

  fn status(&self) -> MutexGuard<'_, NodeStatus> {
    self.status.lock().unwrap_or_else(|e| e.into_inner())
  }

  /// The user, password and database for one connection attempt, and what
  /// the node's provider returned for it, if it has one. Asked once per
  /// attempt, so that credentials that change are used as they are then; a
  /// later change is one more `AUTH` issued in order.
  async fn credentials(&self) -> Result<(RedisConnectionInfo, Option<Arc<Issued>>), String> {
    let Some(source) = &self.node.credentials else {
      return Ok((self.settings.clone(), None));
    };
    let issued = source.fetch().await?;
    let settings = with_credentials(&self.settings, &issued.credentials);
    Ok((settings, Some(issued)))
  }

  /// The TLS configuration when the node asks for TLS.
  async fn tls(&self) -> Result<Option<Arc<rustls::ClientConfig>>, String> {
    match self.node.tls {
      true => socket::tls_config().await.map(Some),
      false => Ok(None),
    }
  }

  fn push(
    self: &Arc<Self>,
    packed: &[u8],
    reply: Option<oneshot::Sender<Answered>>,
    again: Option<Arc<[u8]>>,
    sending: Sending,
  ) -> Result<(), String> {
    let now = Instant::now();
    let mut state = self.lock();
    if state.queue.is_full(packed.len()) {
      let backlog = state.queue.backlog();
      return Err(format!(
        "{backlog} commands already wait for this node's replies: not sent"
      ));
    }
    match &state.phase {
      Phase::Closed => return Err("the connection is closed".into()),
      Phase::Down { error, retry_at } if now < *retry_at && sending != Sending::Probe => {
        let wait = retry_at.saturating_duration_since(now);
        return Err(format!("{error} (reconnecting in {} ms)", wait.as_millis()));
      }
      Phase::Idle | Phase::Down { .. } => self.connect(&mut state)?,
      Phase::Ready(_) if sending != Sending::FollowUp => {
        let waited = state.queue.oldest_wait(now);
        if waited >= self.stall_after {
          return Err(format!(
            "no reply for {} ms, {} commands waiting: not sent until the node answers",
            waited.as_millis(),
            state.queue.backlog()
          ));
        }
      }
      Phase::Connecting { .. } | Phase::Ready(_) => {}
    }
    let slot = Slot::new(reply, again, Tracker::track(&self.work), now);
    self.enqueue(state, packed, slot);
    Ok(())
  }

  /// Starts connecting in the background; fails when no runtime is known
  /// yet and this thread is outside one.
  fn connect(self: &Arc<Self>, state: &mut State) -> Result<(), String> {
    let runtime = match self.runtime.get() {
      Some(runtime) => runtime,
      None => {
        let current = Handle::try_current()
          .map_err(|_| "the first command must be issued within a Tokio runtime".to_string())?;
        self.runtime.get_or_init(|| current)
      }
    };
    let generation = next_generation();
    let task = runtime.spawn(self.clone().run(generation)).abort_handle();
    state.phase = Phase::Connecting { generation, task };
    Ok(())
  }

  /// Appends `slot` and its command to the queue, and writes it now when the
  /// socket is free and idle.
  fn enqueue(self: &Arc<Self>, mut state: MutexGuard<'_, State>, packed: &[u8], slot: Slot) {
    let idle = state.queue.is_idle();
    state.queue.push(packed, slot);
    let State { phase, queue, .. } = &mut *state;
    let Phase::Ready(live) = phase else {
      return;
    };
    if live.writing {
      return;
    }
    live.writing = true;
    match &live.direct {
      // Nothing else in flight: write now, from this thread. With replies
      // pending, the writer task gathers what comes meanwhile into one write.
      Some(socket) if idle => {
        let socket = socket.clone();
        let generation = live.generation;
        let bytes = std::mem::take(&mut queue.out);
        drop(state);
        self.write_directly(generation, &socket, bytes);
      }
      _ => live.wake_writer.notify_one(),
    }
  }

  /// Writes what the socket takes without waiting; the rest, and whatever
  /// was queued meanwhile, goes to the writer task, which keeps the role.
  fn write_directly(self: &Arc<Self>, generation: u64, socket: &TcpStream, mut bytes: Vec<u8>) {
    let written = match socket::write_now(socket, &bytes) {
      Ok(written) => written,
      Err(error) => return self.tear_down(generation, &socket::describe(&error), Then::Idle),
    };
    let mut state = self.lock();
    let State { phase, queue, .. } = &mut *state;
    let Phase::Ready(live) = phase else { return };
    if live.generation != generation {
      return;
    }
    if written == bytes.len() && queue.out.is_empty() {
      queue.recycle(bytes);
      live.writing = false;
    } else {
      bytes.drain(..written);
      bytes.extend_from_slice(&queue.out);
      queue.out = bytes;
      live.wake_writer.notify_one();
    }
  }

  /// One connection, from connecting to its end; whatever ends it (an
  /// error, a stall, `close`, a panic) ends it through `Ended`.
  async fn run(self: Arc<Self>, generation: u64) {
    let mut ended = Ended {
      shared: &self,
      generation,
      reason: "the connection task stopped unexpectedly".into(),
      then: Then::Backoff,
    };
    (ended.reason, ended.then) = self.serve(generation).await;
  }

  async fn serve(self: &Arc<Self>, generation: u64) -> (String, Then) {
    let mut codec = ValueCodec::default();
    let mut buffer = BytesMut::with_capacity(READ_CHUNK);
    let asking = AtomicBool::new(false);
    let opened = tokio::time::timeout(
      self.connect_timeout,
      self.open(&mut codec, &mut buffer, &asking),
    )
    .await;
    let (stream, issued) = match opened {
      Ok(Ok(opened)) => opened,
      Ok(Err(error)) => return (error, Then::Backoff),
      // The provider's call has the same bound, and may not have told yet.
      Err(_) if asking.load(Ordering::Relaxed) => {
        return (credentials::no_answer(self.connect_timeout), Then::Backoff)
      }
      Err(_) => {
        let ms = self.connect_timeout.as_millis();
        return (format!("connect timed out after {ms} ms"), Then::Backoff);
      }
    };
    let (source, sink, direct) = stream.split();
    let wake_writer = Arc::new(Notify::new());
    let writer = tokio::spawn(self.clone().write(generation, sink, wake_writer.clone()));
    if !self.go_live(generation, direct, wake_writer, writer.abort_handle()) {
      writer.abort();
      return ("the connection is closed".into(), Then::Idle);
    }
    let renewals = match (&self.node.credentials, issued) {
      (Some(source), Some(issued)) => Some(Renewals::new(source.updates(), issued.version)),
      _ => None,
    };
    self.read(generation, source, codec, buffer, renewals).await
  }

  /// Connects and runs the handshake; the provider is asked while the
  /// socket opens, so that every connection opening at once shares its call.
  async fn open(
    &self,
    codec: &mut ValueCodec,
    buffer: &mut BytesMut,
    asking: &AtomicBool,
  ) -> Result<(Stream, Option<Arc<Issued>>), String> {
    let tls = self.tls().await?;
    let credentials = async {
      asking.store(true, Ordering::Relaxed);
      let credentials = self.credentials().await;
      asking.store(false, Ordering::Relaxed);
      credentials
    };
    let (mut stream, (settings, issued)) =
      tokio::try_join!(socket::open(&self.node, tls), credentials)?;
    let learnt = handshake(stream.as_dyn(), &settings, issued.is_some(), codec, buffer).await?;
    self.record(learnt);
    Ok((stream, issued))
  }

  /// Makes the connection the node's, unless it was closed meanwhile, and
  /// hands the commands queued while it connected to the writer task.
  fn go_live(
    &self,
    generation: u64,
    direct: Option<Arc<TcpStream>>,
    wake_writer: Arc<Notify>,
    writer: AbortHandle,
  ) -> bool {
    let mut state = self.lock();
    let reader = match std::mem::replace(&mut state.phase, Phase::Idle) {
      Phase::Connecting {
        generation: current,
        task,
      } if current == generation => task,
      other => {
        state.phase = other;
        return false;
      }
    };
    let writing = !state.queue.out.is_empty();
    if writing {
      wake_writer.notify_one();
    }
    // The handshake's time is not the node's delay in answering them.
    state.queue.opened(Instant::now());
    state.backoff = Duration::ZERO;
    state.phase = Phase::Ready(Live {
      generation,
      direct,
      wake_writer,
      writing,
      tasks: [reader, writer],
    });
    true
  }

  /// Reads replies and hands them to their slots, a whole read at a time,
  /// until the connection ends; also ends it when the oldest command has
  /// waited `DROP_AFTER`, and authenticates it again when its provider's
  /// credentials change.
  async fn read(
    self: &Arc<Self>,
    generation: u64,
    mut source: ReadSide,
    mut codec: ValueCodec,
    mut buffer: BytesMut,
    mut renewals: Option<Renewals>,
  ) -> (String, Then) {
    let mut replies = Vec::new();
    let stall = tokio::time::sleep(DROP_AFTER);
    tokio::pin!(stall);
    loop {
      if buffer.is_empty() && buffer.capacity() > 16 * READ_CHUNK {
        buffer = BytesMut::with_capacity(READ_CHUNK);
      }
      if buffer.capacity() - buffer.len() < READ_CHUNK / 4 {
        buffer.reserve(READ_CHUNK);
      }
      tokio::select! {
        // Replies first: after a freeze of this process, the replies that
        // came meanwhile are read before the wait is judged.
        biased;
        read = source.read(&mut buffer) => match read {
          Ok(0) => return ("the node closed the connection".into(), Then::Idle),
          Ok(_) => {}
          Err(error) => return (socket::describe(&error), Then::Idle),
        },
        () = &mut stall => {
          let checked = self.lock().queue.check_stall(Instant::now(), DROP_AFTER);
          match checked {
            Ok(next) => stall.as_mut().reset(next.into()),
            Err(()) => {
              let ms = DROP_AFTER.as_millis();
              return (format!("no reply within {ms} ms: the connection was dropped"), Then::Backoff);
            }
          }
          continue;
        }
        issued = Renewals::next(&mut renewals) => {
          self.reauthenticate(generation, &issued);
          continue;
        }
      }
      loop {
        match codec.decode(&mut buffer) {
          Ok(Some(value)) => replies.push(value),
          Ok(None) => break,
          Err(error) => return (format!("unreadable reply: {error}"), Then::Idle),
        }
      }
      if replies.is_empty() {
        continue;
      }
      let slots = {
        let mut state = self.lock();
        match &state.phase {
          Phase::Ready(live) if live.generation == generation => {}
          _ => return ("the connection is closed".into(), Then::Idle),
        }
        state.queue.take_answered(replies.len())
      };
      let Some(slots) = slots else {
        return ("the node sent a reply to no command".into(), Then::Idle);
      };
      let mut lost_scripts = false;
      let mut again = Vec::new();
      for (slot, value) in slots.into_iter().zip(replies.drain(..)) {
        match self.answered(value) {
          Err(Lost::Scripts(_)) if slot.again.is_some() => {
            lost_scripts = true;
            again.push(slot);
          }
          Err(Lost::Scripts(message)) => {
            lost_scripts = true;
            slot.answer(Err(message));
          }
          Err(Lost::Other(message)) => slot.answer(Err(message)),
          Ok(value) => slot.answer(Ok(value)),
        }
      }
      if lost_scripts {
        let reason = "the node lost the lock's scripts (NOSCRIPT): reconnecting to load them";
        self.reopen(generation, reason, again);
        return (reason.into(), Then::Idle);
      }
    }
  }

  /// Ends connection `generation` and opens a new one at once, on which the
  /// compare-and-deletes in `again` and those still unanswered go once
  /// more, in order, once it loaded the scripts; every other command still
  /// queued fails with `reason`.
  fn reopen(self: &Arc<Self>, generation: u64, reason: &str, mut again: Vec<Slot>) {
    let mut state = self.lock();
    if !matches!(&state.phase, Phase::Ready(live) if live.generation == generation) {
      drop(state);
      for slot in again {
        slot.answer(Err(reason.to_string()));
      }
      return;
    }
    self.status().last_error = Some(reason.to_string());
    let Phase::Ready(live) = std::mem::replace(&mut state.phase, Phase::Idle) else {
      unreachable!("checked above")
    };
    let mut failed = Vec::new();
    for slot in state.queue.drain() {
      match slot.again {
        Some(_) => again.push(slot),
        None => failed.push(slot),
      }
    }
    if !again.is_empty() && self.connect(&mut state).is_ok() {
      for mut slot in std::mem::take(&mut again) {
        let Some(body) = slot.again.take() else {
          continue;
        };
        state.queue.push(&body, slot);
      }
    }
    drop(state);
    for task in live.tasks {
      task.abort();
    }
    for slot in failed.into_iter().chain(again) {
      slot.answer(Err(reason.to_string()));
    }
  }

  /// Authenticates connection `generation` again with newer credentials:
  /// one `AUTH`, issued behind everything issued before it. A refusal leaves
  /// the connection as it was authenticated, and is told in `health()`.
  fn reauthenticate(self: &Arc<Self>, generation: u64, issued: &Issued) {
    let settings = with_credentials(&self.settings, &issued.credentials);
    let mut auth = redis::cmd("AUTH");
    if let Some(username) = settings.username() {
      auth.arg(username);
    }
    auth.arg(settings.password().unwrap_or_default());
    let (reply, answer) = oneshot::channel();
    if self
      .push(
        &auth.get_packed_command(),
        Some(reply),
        None,
        Sending::FollowUp,
      )
      .is_err()
    {
      return;
    }
    let shared = self.clone();
    tokio::spawn(async move {
      let Ok(Err(error)) = answer.await else { return };
      // A connection that ended failed its commands; only a live one was refused.
      if shared.is_live(generation) {
        shared.status().last_error = Some(format!(
          "authenticating again with the credentials provider's new user and password failed: {error}"
        ));
      }
    });
  }

  fn is_live(&self, generation: u64) -> bool {
    matches!(&self.lock().phase, Phase::Ready(live) if live.generation == generation)
  }

  /// A reply as its caller sees it: an error reply becomes a (redacted) error.
  fn answered(&self, value: Value) -> Result<Value, Lost> {
    value.extract_error().map_err(|error| {
      let message = self.node.redact(&error.to_string());
      self.status().last_error = Some(message.clone());
      match error.kind() {
        ErrorKind::Server(ServerErrorKind::NoScript) => Lost::Scripts(message),
        _ => Lost::Other(message),
      }
    })
  }

  /// The writer task: writes what is queued whenever it is handed the role.
  async fn write(self: Arc<Self>, generation: u64, mut sink: WriteSide, wake: Arc<Notify>) {
    let mut bytes = Vec::new();
    loop {
      wake.notified().await;
      while self.take_queued(generation, &mut bytes) {
        if let Err(error) = sink.write_all(&bytes).await {
          return self.tear_down(generation, &socket::describe(&error), Then::Idle);
        }
        bytes.clear();
        if bytes.capacity() > READ_CHUNK * 16 {
          bytes = Vec::new();
        }
      }
    }
  }

  /// Swaps the queued bytes into `bytes`; `false`, giving up the role, when
  /// there are none.
  fn take_queued(&self, generation: u64, bytes: &mut Vec<u8>) -> bool {
    let mut state = self.lock();
    let State { phase, queue, .. } = &mut *state;
    let Phase::Ready(live) = phase else {
      return false;
    };
    if live.generation != generation {
      return false;
    }
    if queue.out.is_empty() {
      live.writing = false;
      return false;
    }
    std::mem::swap(&mut queue.out, bytes);
    true
  }

  /// Ends connection `generation`, if it is still the node's. A connection
  /// the node ended (closed, reset, unreadable) runs nothing more of what
  /// it was sent, so its compare-and-deletes go once more on a new one.
  fn tear_down(self: &Arc<Self>, generation: u64, reason: &str, then: Then) {
    let message = self.node.redact(reason);
    if let Then::Idle = then {
      return self.reopen(generation, &message, Vec::new());
    }
    let mut state = self.lock();
    let current = match &state.phase {
      Phase::Connecting {
        generation: current,
        ..
      } => *current == generation,
      Phase::Ready(live) => live.generation == generation,
      _ => false,
    };
    if !current {
      return;
    }
    let next = match then {
      Then::Idle => Phase::Idle,
      Then::Backoff => {
        state.backoff = next_backoff(state.backoff);
        Phase::Down {
          error: message.as_str().into(),
          retry_at: Instant::now() + state.backoff,
        }
      }
    };
    self.status().last_error = Some(message.clone());
    self.end(state, next, &message);
  }

  /// Moves to `next`: stops the tasks of the connection that was, and fails
  /// every command still queued with `message`.
  fn end(&self, mut state: MutexGuard<'_, State>, next: Phase, message: &str) {
    let tasks = match std::mem::replace(&mut state.phase, next) {
      Phase::Connecting { task, .. } => vec![task],
      Phase::Ready(live) => live.tasks.into(),
      Phase::Idle | Phase::Down { .. } | Phase::Closed => Vec::new(),
    };
    let slots = state.queue.drain();
    drop(state);
    for task in tasks {
      task.abort();
    }
    for slot in slots {
      slot.answer(Err(message.to_string()));
    }
  }

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
    let mut status = self.status();
    status.run_id = learnt.run_id;
    status.version = learnt.version;
    status.started = Some(started);
    status.durable = learnt.durable;
  }
}

/// An error reply: `NOSCRIPT`, or any other.
enum Lost {
  Scripts(String),
  Other(String),
}

/// The provider's credentials as one open connection follows them: the
/// version it authenticated with, and the latest.
struct Renewals {
  updates: watch::Receiver<Option<Arc<Issued>>>,
  version: u64,
}

impl Renewals {
  fn new(mut updates: watch::Receiver<Option<Arc<Issued>>>, version: u64) -> Self {
    // Newer credentials may have come while the connection opened.
    updates.mark_changed();
    Renewals { updates, version }
  }

  /// Resolves with credentials newer than the connection's; never without a
  /// provider.
  async fn next(renewals: &mut Option<Renewals>) -> Arc<Issued> {
    let Some(renewals) = renewals else {
      return std::future::pending().await;
    };
    loop {
      if renewals.updates.changed().await.is_err() {
        return std::future::pending().await;
      }
      let latest = renewals.updates.borrow_and_update().clone();
      if let Some(issued) = latest.filter(|issued| issued.version > renewals.version) {
        renewals.version = issued.version;
        return issued;
      }
    }
  }
}

/// `settings` with the provider's user name (the node's own when it gives
/// none) and password.
fn with_credentials(
  settings: &RedisConnectionInfo,
  credentials: &Credentials,
) -> RedisConnectionInfo {
  let settings = settings.clone().set_password(&credentials.password);
  match &credentials.username {
    Some(username) => settings.set_username(username),
    None => settings,
  }
}

/// Ends a connection however its task ends: returning, aborted, or
/// unwinding from a panic, which would otherwise leave the node
/// "connecting" forever.
struct Ended<'a> {
  shared: &'a Arc<Shared>,
  generation: u64,
  reason: String,
  then: Then,
}

impl Drop for Ended<'_> {
  fn drop(&mut self) {
    self
      .shared
      .tear_down(self.generation, &self.reason, self.then);
  }
}

/// The pause before the next connection attempt after one of `previous`:
/// decorrelated jitter, a random span from the first backoff to three times
/// the previous one, at most the longest backoff. Every client of a node
/// that restarted then comes back at a moment of its own.
pub fn next_backoff(previous: Duration) -> Duration {
  let high = (previous * 3).clamp(FIRST_BACKOFF, MAX_BACKOFF);
  let low = FIRST_BACKOFF.as_millis() as u64;
  Duration::from_millis(rand::random_range(low..=high.as_millis() as u64))
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

fn next_generation() -> u64 {
  static GENERATION: AtomicU64 = AtomicU64::new(1);
  GENERATION.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
  use futures_util::FutureExt;

  use super::*;

  #[test]
  fn connections_start_on_the_runtime_of_the_first_command() {
    let node = NodeConfig::endpoint("127.0.0.1", 1).unwrap();
    let timeout = Duration::from_millis(100);
    let client = NodeClient::new(node, timeout, timeout, Arc::default()).unwrap();
    let outside = client.issue(b"PING\r\n").now_or_never();
    assert!(
      matches!(&outside, Some(Err(message)) if message.contains("Tokio runtime")),
      "{outside:?}"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
      .enable_all()
      .build()
      .unwrap();
    let first = runtime.block_on(async { client.issue(b"PING\r\n").await });
    assert!(first.is_err(), "nothing listens on port 1");
    // Outside the runtime again: a reconnect spawns on the one remembered.
    let later = client.probe(&Request::new(redis::cmd("PING")));
    let answered = runtime.block_on(later);
    assert!(
      matches!(&answered, Err(message) if !message.contains("Tokio runtime")),
      "{answered:?}"
    );
  }

  #[tokio::test]
  async fn a_connection_task_that_ends_abnormally_leaves_the_node_down_not_connecting() {
    // A node that accepts connections and never answers the handshake.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _accepting = tokio::spawn(async move {
      let mut held = Vec::new();
      while let Ok((socket, _)) = listener.accept().await {
        held.push(socket);
      }
    });
    let node = NodeConfig::endpoint("127.0.0.1", port).unwrap();
    let timeout = Duration::from_secs(5);
    let client = NodeClient::new(node, timeout, timeout, Arc::default()).unwrap();
    let answer = client.issue(b"PING\r\n");
    let task = match &client.shared.lock().phase {
      Phase::Connecting { task, .. } => task.clone(),
      _ => panic!("the first command opens a connection"),
    };
    // Once the task waits on the handshake, aborting it drops its future
    // the way unwinding from a panic there does.
    tokio::time::sleep(Duration::from_millis(50)).await;
    task.abort();
    let waited = tokio::time::timeout(Duration::from_secs(1), answer).await;
    assert!(
      matches!(&waited, Ok(Err(_))),
      "the queued command fails at once: {waited:?}"
    );
    assert!(
      matches!(client.shared.lock().phase, Phase::Down { .. }),
      "the node is down, to be connected to again"
    );
  }

  #[test]
  fn backoff_grows_with_jitter_between_its_bounds() {
    assert_eq!(next_backoff(Duration::ZERO), FIRST_BACKOFF);
    for _ in 0..1000 {
      let next = next_backoff(Duration::from_millis(100));
      assert!(
        (FIRST_BACKOFF..=Duration::from_millis(300)).contains(&next),
        "{next:?}"
      );
    }
    let draws: Vec<Duration> = (0..2000)
      .map(|_| next_backoff(Duration::from_secs(60)))
      .collect();
    assert!(draws
      .iter()
      .all(|d| (FIRST_BACKOFF..=MAX_BACKOFF).contains(d)));
    let (low, high) = (draws.iter().min().unwrap(), draws.iter().max().unwrap());
    assert!(
      *high - *low > Duration::from_secs(1),
      "no jitter: {low:?} to {high:?}"
    );
  }
}
