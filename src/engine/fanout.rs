//! One command to every node at once, decided at quorum. Issuing is
//! synchronous: when `issue` returns, the command is queued on every node
//! behind everything issued before it. Tallying is async: the replies are
//! counted as they arrive and the wait ends as soon as the outcome is
//! certain, or at the deadline for the nodes still silent. Those still get
//! the command, in its place: their connections deliver it.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use redis::Value;

use super::connection::{Answer, Answered, NodeClient};
use super::quorum::{quorum_of, Tally, Verdict};
use super::scripts::Request;

/// What one node answered in one attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
  Pending,
  Granted,
  Refused,
  Failed(String),
}

/// What the nodes answered to one command, and what that decided.
pub struct Votes {
  pub verdict: Verdict,
  /// One reply per node, in the order of the nodes.
  pub replies: Vec<Reply>,
  /// How long after the command was issued each node's reply (or failure)
  /// came; `None` for the nodes that had not answered when it was decided.
  pub latencies: Vec<Option<Duration>>,
  /// The quarantine the tally applied: a node in it answered, but its vote
  /// did not count.
  pub quarantine: Option<Duration>,
}

impl Votes {
  /// Whether a majority of the nodes refused, quarantined ones too: what
  /// they hold is not this owner's, so no later try of the same command can
  /// win.
  pub fn refused_by_majority(&self) -> bool {
    let refused = self
      .replies
      .iter()
      .filter(|reply| matches!(reply, Reply::Refused))
      .count();
    refused >= quorum_of(self.replies.len())
  }
}

/// A command issued to every node, its replies still to come.
pub struct Issued {
  at: Instant,
  answers: Vec<Option<Answer>>,
}

/// Queues `request` on every node, now; a node that is stalled fails it
/// at once.
pub fn issue(nodes: &[NodeClient], request: &Request) -> Issued {
  let at = Instant::now();
  let packed = request.cmd.get_packed_command();
  Issued {
    at,
    answers: nodes.iter().map(|node| Some(node.issue(&packed))).collect(),
  }
}

/// Queues `request`, which must follow the commands issued before it (a
/// release), on every node, now, a stalled one too.
pub fn issue_follow_up(nodes: &[NodeClient], request: &Request) -> Issued {
  let at = Instant::now();
  let packed: Arc<[u8]> = request.cmd.get_packed_command().into();
  Issued {
    at,
    answers: nodes
      .iter()
      .map(|node| Some(node.follow_up(&packed, request.repeatable)))
      .collect(),
  }
}

/// Counts the replies to `issued` until the outcome is certain, or until
/// `timeout` after it was issued gives up on the rest. With `quarantine`
/// (the longest TTL in use), a node that may have forgotten locks in a
/// recent restart still gets the command but its vote does not count,
/// neither for nor against.
pub async fn tally(
  nodes: &[NodeClient],
  mut issued: Issued,
  timeout: Duration,
  quarantine: Option<Duration>,
  vote: impl Fn(&Value) -> Option<bool>,
) -> Votes {
  let mut tally = Tally::new(nodes.len());
  let mut replies = vec![Reply::Pending; nodes.len()];
  let mut latencies = vec![None; nodes.len()];
  let issued_at = issued.at;
  let mut deadline = pin!(tokio::time::sleep_until((issued_at + timeout).into()));
  let mut count = |i: usize, answered: Answered| {
    latencies[i] = Some(issued_at.elapsed());
    let counts = quarantine.is_none_or(|max_ttl| nodes[i].quarantine_left(max_ttl).is_none());
    match answered.map(|value| (vote(&value), value)) {
      Ok((Some(granted), _)) => {
        replies[i] = if granted {
          Reply::Granted
        } else {
          Reply::Refused
        };
        match (counts, granted) {
          (true, true) => tally.grant(),
          (true, false) => tally.refuse(),
          (false, _) => tally.fail(),
        }
      }
      Ok((None, value)) => {
        replies[i] = Reply::Failed(format!("unexpected reply {value:?}"));
        tally.fail()
      }
      Err(message) => {
        replies[i] = Reply::Failed(message);
        tally.fail()
      }
    }
  };
  let decided = poll_fn(|cx| {
    for (i, waiting) in issued.answers.iter_mut().enumerate() {
      let Some(answer) = waiting else { continue };
      let Poll::Ready(answered) = Pin::new(answer).poll(cx) else {
        continue;
      };
      *waiting = None;
      let verdict = count(i, answered);
      if verdict != Verdict::Pending {
        return Poll::Ready(true);
      }
    }
    if issued.answers.iter().all(Option::is_none) || deadline.as_mut().poll(cx).is_ready() {
      return Poll::Ready(false);
    }
    Poll::Pending
  })
  .await;
  if !decided {
    for reply in replies.iter_mut().filter(|r| **r == Reply::Pending) {
      *reply = Reply::Failed(format!("no reply within {} ms", timeout.as_millis()));
      tally.fail();
    }
  }
  Votes {
    verdict: tally.verdict(),
    replies,
    latencies,
    quarantine,
  }
}

/// `SET NX` answers OK when it wrote and nil when the key existed; the
/// all-or-nothing script answers 1 or 0.
pub fn acquire_vote(value: &Value) -> Option<bool> {
  match value {
    Value::Okay => Some(true),
    Value::Nil => Some(false),
    Value::Int(n) => Some(*n == 1),
    _ => None,
  }
}

/// A script vote is a grant when the node answered `expected`.
pub fn script_vote(expected: i64) -> impl Fn(&Value) -> Option<bool> {
  move |value| match value {
    Value::Int(n) => Some(*n == expected),
    _ => None,
  }
}

/// Phase 1 of a fenced acquire answers `{1, counter}` when it locked and 0
/// when it did not; the largest counter among the grants goes to `highest`.
pub fn fenced_vote(highest: &AtomicU64) -> impl Fn(&Value) -> Option<bool> + '_ {
  move |value| match value {
    Value::Int(0) => Some(false),
    Value::Array(items) => match items.as_slice() {
      [Value::Int(1), Value::BulkString(counter)] => {
        let counter = std::str::from_utf8(counter).ok()?.parse::<u64>().ok()?;
        highest.fetch_max(counter, Ordering::Relaxed);
        Some(true)
      }
      _ => None,
    },
    _ => None,
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn votes(replies: Vec<Reply>) -> Votes {
    Votes {
      verdict: Verdict::Held,
      latencies: vec![None; replies.len()],
      replies,
      quarantine: None,
    }
  }

  #[test]
  fn only_refusals_from_a_majority_are_final() {
    use Reply::{Failed, Granted, Pending, Refused};
    let failed = || Failed("timed out".into());
    assert!(votes(vec![Refused, Refused, Pending]).refused_by_majority());
    // Held too, but one node still holds the key and another may answer next time.
    assert!(!votes(vec![Granted, Refused, failed()]).refused_by_majority());
    assert!(!votes(vec![Granted, Granted, Refused, failed(), failed()]).refused_by_majority());
    assert!(votes(vec![Refused, Granted, Refused, Refused, Pending]).refused_by_majority());
  }
}
