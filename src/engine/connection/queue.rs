//! The commands of one node in issue order: their bytes not yet written,
//! and one reply slot per command not yet answered. Replies arrive in the
//! order the commands were written, so the oldest slot takes the next reply;
//! a caller that stopped waiting leaves its slot in place, which keeps every
//! later reply with its own command. The age of the oldest slot tells how
//! far behind the node is, and the backlog has a cap, so a slow node cannot
//! make it grow without limit. Pure bookkeeping, no I/O.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use redis::Value;
use tokio::sync::oneshot;

use crate::engine::tracker::Tracked;

/// A node's reply to one command, or why there is none.
pub type Answered = Result<Value, String>;

/// The most commands a node may owe replies to; past it a command fails at
/// once instead of waiting behind the others.
pub(super) const MAX_SLOTS: usize = 10_000;
/// The most bytes queued for a node and not yet taken by its socket.
pub(super) const MAX_UNSENT: usize = 32 << 20;

/// Where one command's reply goes; it counts as work under way until then.
pub(super) struct Slot {
  reply: Option<oneshot::Sender<Answered>>,
  issued_at: Instant,
  /// The command again, for a node that answers `NOSCRIPT`: only commands
  /// that may safely run late or twice keep it.
  pub again: Option<Arc<[u8]>>,
  _work: Tracked,
}

impl Slot {
  /// A slot for a reply someone awaits, or `None` for a command sent without
  /// waiting for its reply.
  pub fn new(
    reply: Option<oneshot::Sender<Answered>>,
    again: Option<Arc<[u8]>>,
    work: Tracked,
    issued_at: Instant,
  ) -> Self {
    Slot {
      reply,
      issued_at,
      again,
      _work: work,
    }
  }

  pub fn answer(self, answered: Answered) {
    if let Some(reply) = self.reply {
      // A caller that gave up has dropped its receiver: nothing to tell.
      let _ = reply.send(answered);
    }
  }
}

/// The reply to one issued command, as a future; dropping it gives up
/// waiting, never the command.
pub struct Answer(Waiting);

enum Waiting {
  Failed(Option<String>),
  Reply(oneshot::Receiver<Answered>),
}

impl Answer {
  pub(super) fn failed(message: String) -> Self {
    Answer(Waiting::Failed(Some(message)))
  }

  pub(super) fn reply(receiver: oneshot::Receiver<Answered>) -> Self {
    Answer(Waiting::Reply(receiver))
  }
}

impl Future for Answer {
  type Output = Answered;

  fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answered> {
    match &mut self.get_mut().0 {
      Waiting::Failed(message) => Poll::Ready(Err(message.take().unwrap_or_default())),
      Waiting::Reply(receiver) => Pin::new(receiver)
        .poll(cx)
        .map(|answered| answered.unwrap_or_else(|_| Err("the connection is closed".into()))),
    }
  }
}

/// Bytes and slots kept for reuse after a backlog: a queue that was once
/// large does not keep its largest size forever.
const KEPT_CAPACITY: usize = 64 << 10;

pub(super) struct Queue {
  /// Encoded commands not yet handed to the socket, in issue order.
  pub out: Vec<u8>,
  slots: VecDeque<Slot>,
  /// Since when the node's connection could answer: a command queued while
  /// it connected waits from then, not from its issue.
  open_since: Instant,
}

impl Queue {
  pub fn new(now: Instant) -> Self {
    Queue {
      out: Vec::new(),
      slots: VecDeque::new(),
      open_since: now,
    }
  }

  /// Whether no command is waiting for a reply.
  pub fn is_idle(&self) -> bool {
    self.slots.is_empty()
  }

  /// How many commands wait for a reply.
  pub fn backlog(&self) -> usize {
    self.slots.len()
  }

  /// Whether `bytes` more would pass the cap of the backlog.
  pub fn is_full(&self, bytes: usize) -> bool {
    self.slots.len() >= MAX_SLOTS || self.out.len() + bytes > MAX_UNSENT
  }

  pub fn push(&mut self, packed: &[u8], slot: Slot) {
    self.out.extend_from_slice(packed);
    self.slots.push_back(slot);
  }

  /// Takes the slot of each reply, oldest first; `None` when the node sent
  /// more replies than it was sent commands (the stream cannot be trusted).
  pub fn take_answered(&mut self, replies: usize) -> Option<Vec<Slot>> {
    if replies > self.slots.len() {
      return None;
    }
    let answered = self.slots.drain(..replies).collect();
    if self.slots.is_empty() && self.slots.capacity() > KEPT_CAPACITY / 64 {
      self.slots.shrink_to(KEPT_CAPACITY / 64);
    }
    Some(answered)
  }

  /// The connection the commands wait for just opened.
  pub fn opened(&mut self, now: Instant) {
    self.open_since = now;
  }

  /// How long the oldest command has waited for its reply since the
  /// connection could answer it; zero when none waits.
  pub fn oldest_wait(&self, now: Instant) -> Duration {
    self.slots.front().map_or(Duration::ZERO, |oldest| {
      now.saturating_duration_since(oldest.issued_at.max(self.open_since))
    })
  }

  /// `Err` when the oldest command has waited `limit` for its reply (a
  /// paused, black-holed or hopelessly slow node); else when to look again.
  pub fn check_stall(&self, now: Instant, limit: Duration) -> Result<Instant, ()> {
    let waited = self.oldest_wait(now);
    if waited >= limit {
      Err(())
    } else {
      Ok(now + (limit - waited))
    }
  }

  /// Gives back what a drained buffer of `out` held beyond the kept size.
  pub fn recycle(&mut self, mut bytes: Vec<u8>) {
    bytes.clear();
    if bytes.capacity() > KEPT_CAPACITY {
      bytes.shrink_to(KEPT_CAPACITY);
    }
    self.out = bytes;
  }

  /// Everything still queued, to fail: the connection it was meant for is gone.
  pub fn drain(&mut self) -> VecDeque<Slot> {
    self.out = Vec::new();
    std::mem::take(&mut self.slots)
  }
}

#[cfg(test)]
mod tests {
  use std::sync::Arc;

  use futures_util::FutureExt;

  use super::*;
  use crate::engine::tracker::Tracker;

  fn slot(work: &Arc<Tracker>) -> (Slot, oneshot::Receiver<Answered>) {
    let (sender, receiver) = oneshot::channel();
    (
      Slot::new(Some(sender), None, Tracker::track(work), Instant::now()),
      receiver,
    )
  }

  #[test]
  fn replies_stay_with_their_commands_when_a_caller_gives_up() {
    let work = Arc::new(Tracker::default());
    let now = Instant::now();
    let mut queue = Queue::new(now);
    let (first, mut first_reply) = slot(&work);
    let (second, second_reply) = slot(&work);
    let (third, mut third_reply) = slot(&work);
    queue.push(b"A", first);
    queue.push(b"B", second);
    queue.push(b"C", third);
    queue.push(b"D", Slot::new(None, None, Tracker::track(&work), now));
    assert_eq!(queue.out, b"ABCD", "bytes in issue order");
    drop(second_reply);
    let answered = queue.take_answered(3).unwrap();
    for (slot, value) in answered.into_iter().zip(1..) {
      slot.answer(Ok(Value::Int(value)));
    }
    assert_eq!(first_reply.try_recv().unwrap(), Ok(Value::Int(1)));
    assert_eq!(third_reply.try_recv().unwrap(), Ok(Value::Int(3)));
    assert!(
      !queue.is_idle(),
      "the command sent without a receiver still awaits its reply"
    );
    assert!(queue.take_answered(2).is_none(), "one reply too many");
    let left = queue.drain();
    assert_eq!(left.len(), 1);
    assert!(queue.out.is_empty());
  }

  #[test]
  fn a_slot_counts_as_work_until_answered() {
    let work = Arc::new(Tracker::default());
    let mut queue = Queue::new(Instant::now());
    let now = Instant::now();
    queue.push(b"A", Slot::new(None, None, Tracker::track(&work), now));
    assert!(
      work.idle().now_or_never().is_none(),
      "busy while the slot waits"
    );
    for slot in queue.drain() {
      slot.answer(Err("gone".into()));
    }
    assert!(
      work.idle().now_or_never().is_some(),
      "idle once it is answered"
    );
  }

  #[test]
  fn a_stall_is_the_age_of_the_oldest_unanswered_command() {
    let work = Arc::new(Tracker::default());
    let limit = Duration::from_secs(2);
    let start = Instant::now();
    let mut queue = Queue::new(start);
    let slot = |at| Slot::new(None, None, Tracker::track(&work), at);
    // Idle for an hour is not a stall: nothing waits.
    let later = start + Duration::from_secs(3600);
    assert_eq!(queue.check_stall(later, limit), Ok(later + limit));
    // A command issued then is due a reply within the limit from its issue.
    queue.push(b"A", slot(later));
    let almost = later + limit - Duration::from_millis(1);
    assert_eq!(queue.check_stall(almost, limit), Ok(later + limit));
    assert_eq!(queue.check_stall(later + limit, limit), Err(()));
    // A node that answers, but slower than commands come, falls behind: a
    // reply to the oldest leaves the next oldest, issued long ago, waiting.
    let mut at = later;
    for _ in 0..10 {
      at += Duration::from_millis(300);
      queue.push(b"B", slot(at));
    }
    let replied = later + Duration::from_secs(1);
    assert_eq!(queue.take_answered(1).map(|s| s.len()), Some(1));
    assert_eq!(
      queue.oldest_wait(replied),
      Duration::from_millis(700),
      "the next oldest was issued 300 ms after the first"
    );
    assert_eq!(
      queue.check_stall(later + Duration::from_millis(2300), limit),
      Err(())
    );
    // Commands queued while the connection opened wait from its opening.
    queue.opened(replied);
    assert_eq!(queue.oldest_wait(replied), Duration::ZERO);
  }

  #[test]
  fn the_backlog_has_a_cap() {
    let work = Arc::new(Tracker::default());
    let now = Instant::now();
    let mut queue = Queue::new(now);
    for _ in 0..MAX_SLOTS - 1 {
      queue.push(b"", Slot::new(None, None, Tracker::track(&work), now));
    }
    assert!(!queue.is_full(1));
    assert!(queue.is_full(MAX_UNSENT + 1), "too many bytes");
    queue.push(b"", Slot::new(None, None, Tracker::track(&work), now));
    assert!(queue.is_full(0), "too many commands");
    assert_eq!(queue.backlog(), MAX_SLOTS);
  }
}
