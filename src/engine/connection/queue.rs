//! The commands of one node in issue order: their bytes not yet written,
//! and one reply slot per command not yet answered. Replies arrive in the
//! order the commands were written, so the oldest slot takes the next reply;
//! a caller that stopped waiting leaves its slot in place, which keeps every
//! later reply with its own command. Pure bookkeeping, no I/O.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use redis::Value;
use tokio::sync::oneshot;

use crate::engine::tracker::Tracked;

/// A node's reply to one command, or why there is none.
pub type Answered = Result<Value, String>;

/// Where one command's reply goes; it counts as work under way until then.
pub(super) struct Slot {
  reply: Option<oneshot::Sender<Answered>>,
  _work: Tracked,
}

impl Slot {
  /// A slot for a reply someone awaits, or `None` for a command sent without
  /// waiting for its reply.
  pub fn new(reply: Option<oneshot::Sender<Answered>>, work: Tracked) -> Self {
    Slot { reply, _work: work }
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

pub(super) struct Queue {
  /// Encoded commands not yet handed to the socket, in issue order.
  pub out: Vec<u8>,
  slots: VecDeque<Slot>,
  /// When the oldest unanswered command last saw progress: the latest
  /// reply, or the moment it was issued to a queue with nothing pending.
  progress_at: Instant,
}

impl Queue {
  pub fn new(now: Instant) -> Self {
    Queue {
      out: Vec::new(),
      slots: VecDeque::new(),
      progress_at: now,
    }
  }

  /// Whether no command is waiting for a reply.
  pub fn is_idle(&self) -> bool {
    self.slots.is_empty()
  }

  pub fn push(&mut self, packed: &[u8], slot: Slot, now: Instant) {
    if self.slots.is_empty() {
      self.progress_at = now;
    }
    self.out.extend_from_slice(packed);
    self.slots.push_back(slot);
  }

  /// Takes the slot of each reply, oldest first; `None` when the node sent
  /// more replies than it was sent commands (the stream cannot be trusted).
  pub fn take_answered(&mut self, replies: usize, now: Instant) -> Option<Vec<Slot>> {
    if replies > self.slots.len() {
      return None;
    }
    self.progressed(now);
    Some(self.slots.drain(..replies).collect())
  }

  /// Counts the wait of the commands pending from `now`: a reply came, or
  /// the connection they waited for just opened.
  pub fn progressed(&mut self, now: Instant) {
    self.progress_at = now;
  }

  /// `Err` when commands have waited `limit` without a single reply (a
  /// paused or black-holed node); else when to look again.
  pub fn check_stall(&self, now: Instant, limit: Duration) -> Result<Instant, ()> {
    if self.slots.is_empty() {
      return Ok(now + limit);
    }
    let due = self.progress_at + limit;
    if now >= due {
      Err(())
    } else {
      Ok(due)
    }
  }

  /// Everything still queued, to fail: the connection it was meant for is gone.
  pub fn drain(&mut self) -> VecDeque<Slot> {
    self.out.clear();
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
    (Slot::new(Some(sender), Tracker::track(work)), receiver)
  }

  #[test]
  fn replies_stay_with_their_commands_when_a_caller_gives_up() {
    let work = Arc::new(Tracker::default());
    let now = Instant::now();
    let mut queue = Queue::new(now);
    let (first, mut first_reply) = slot(&work);
    let (second, second_reply) = slot(&work);
    let (third, mut third_reply) = slot(&work);
    queue.push(b"A", first, now);
    queue.push(b"B", second, now);
    queue.push(b"C", third, now);
    queue.push(b"D", Slot::new(None, Tracker::track(&work)), now);
    assert_eq!(queue.out, b"ABCD", "bytes in issue order");
    drop(second_reply);
    let answered = queue.take_answered(3, now).unwrap();
    for (slot, value) in answered.into_iter().zip(1..) {
      slot.answer(Ok(Value::Int(value)));
    }
    assert_eq!(first_reply.try_recv().unwrap(), Ok(Value::Int(1)));
    assert_eq!(third_reply.try_recv().unwrap(), Ok(Value::Int(3)));
    assert!(
      !queue.is_idle(),
      "the command sent without a receiver still awaits its reply"
    );
    assert!(queue.take_answered(2, now).is_none(), "one reply too many");
    let left = queue.drain();
    assert_eq!(left.len(), 1);
    assert!(queue.out.is_empty());
  }

  #[test]
  fn a_slot_counts_as_work_until_answered() {
    let work = Arc::new(Tracker::default());
    let mut queue = Queue::new(Instant::now());
    queue.push(b"A", Slot::new(None, Tracker::track(&work)), Instant::now());
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
  fn a_stall_is_a_limit_without_replies_while_commands_wait() {
    let work = Arc::new(Tracker::default());
    let limit = Duration::from_secs(2);
    let start = Instant::now();
    let mut queue = Queue::new(start);
    // Idle for an hour is not a stall: nothing waits.
    let later = start + Duration::from_secs(3600);
    assert_eq!(queue.check_stall(later, limit), Ok(later + limit));
    // A command issued then is due a reply within the limit from its issue.
    queue.push(b"A", Slot::new(None, Tracker::track(&work)), later);
    let almost = later + limit - Duration::from_millis(1);
    assert_eq!(queue.check_stall(almost, limit), Ok(later + limit));
    assert_eq!(queue.check_stall(later + limit, limit), Err(()));
    // A reply is progress: the next command has the limit again from there.
    queue.push(b"B", Slot::new(None, Tracker::track(&work)), almost);
    let replied = later + Duration::from_secs(1);
    assert_eq!(queue.take_answered(1, replied).map(|s| s.len()), Some(1));
    assert_eq!(queue.check_stall(later + limit, limit), Ok(replied + limit));
    assert_eq!(queue.check_stall(replied + limit, limit), Err(()));
  }
}
