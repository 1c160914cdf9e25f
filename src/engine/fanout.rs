//! One command to every node at once, decided at quorum: the replies are
//! tallied as they arrive and the wait ends as soon as the outcome is
//! certain, or when the timeout gives up on the nodes still silent.

use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use redis::Value;
use tokio::sync::watch;

use super::connection::NodeClient;
use super::quorum::{Tally, Verdict};
use super::scripts::Request;
use super::tracker::Tracker;

/// What one node answered in one attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
  Pending,
  Granted,
  Refused,
  Failed(String),
}

pub struct Votes {
  pub verdict: Verdict,
  /// One reply per node, in the order of the nodes.
  pub replies: Vec<Reply>,
  /// When the command still goes to nodes that were connecting after the
  /// verdict: closed once it reached them (or gave up).
  pub trailing: Option<Trailing>,
}

/// Writes of a decided command still on their way to nodes that were
/// connecting. A later command on the same key (a release, a clean-up)
/// waits for them, or it could reach such a node first and be undone.
#[derive(Clone, Debug)]
pub struct Trailing(watch::Receiver<()>);

impl Trailing {
  /// Resolves when the trailing writes are done, or after `limit`.
  pub async fn done(&self, limit: Duration) {
    let mut done = self.0.clone();
    let _ = tokio::time::timeout(limit, done.changed()).await;
  }
}

/// Sends `request` to every node at once and returns as soon as the
/// outcome is certain, or when `timeout` ends the wait for the rest. With
/// `quarantine` (the longest TTL in use), a node that may have forgotten
/// locks in a recent restart still gets the command but its vote does not
/// count, neither for nor against.
pub async fn fan_out(
  nodes: &[NodeClient],
  request: &Arc<Request>,
  timeout: Duration,
  quarantine: Option<Duration>,
  work: &Arc<Tracker>,
  vote: impl Fn(&Value) -> Option<bool>,
) -> Votes {
  let mut tally = Tally::new(nodes.len());
  let mut replies = vec![Reply::Pending; nodes.len()];
  let all_connected = nodes.iter().all(NodeClient::is_connected);
  let mut answers: FuturesUnordered<_> = nodes
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
        let counts = quarantine.is_none_or(|max_ttl| nodes[i].quarantine_left(max_ttl).is_none());
        let verdict = match answer.map(|value| (vote(&value), value)) {
          Ok((Some(true), _)) => {
            replies[i] = Reply::Granted;
            if counts { tally.grant() } else { tally.fail() }
          }
          Ok((Some(false), _)) => {
            replies[i] = Reply::Refused;
            if counts { tally.refuse() } else { tally.fail() }
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
          let mut trailing = None;
          if !all_connected && !answers.is_empty() {
            // A node that was still connecting has not been sent the
            // command yet; it gets it in the background, so that a write
            // or a delete reaches every node and not only a majority.
            let left = timeout.saturating_sub(started.elapsed());
            let (finished, waiting) = watch::channel(());
            let tracked = Tracker::track(work);
            tokio::spawn(async move {
              let _ = tokio::time::timeout(left, answers.collect::<Vec<_>>()).await;
              drop((finished, tracked));
            });
            trailing = Some(Trailing(waiting));
          }
          return Votes { verdict, replies, trailing };
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
    trailing: None,
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
