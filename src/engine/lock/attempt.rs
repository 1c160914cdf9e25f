//! One acquire attempt (the write, and with fencing the raising of the
//! counters) and the clean-up of whatever a failed attempt or a lost lease
//! left behind.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Inner;
use crate::engine::fanout::{
  acquire_vote, fenced_vote, issue, script_vote, tally, Issued, Reply, Votes,
};
use crate::engine::quorum::{Began, Verdict};
use crate::engine::scripts::Request;

/// What every attempt of one acquire shares.
pub(super) struct Plan {
  pub keys: Arc<[String]>,
  /// The fencing counters of the keys, with fencing.
  pub fences: Option<Arc<[String]>>,
  pub metadata: Option<String>,
  /// Until when to keep trying, with `wait_ms`: counted from the call.
  pub deadline: Option<Instant>,
  pub ttl_ms: u64,
  pub timeout: Duration,
  pub quarantine: Option<Duration>,
}

impl Plan {
  /// How long a wait begun at `from` may last: one command timeout, and
  /// with `wait_ms` never past the deadline plus one command timeout, the
  /// bound of the whole call.
  pub fn wait_from(&self, from: Instant) -> Duration {
    match self.deadline {
      Some(deadline) => {
        let end = deadline + self.timeout;
        self.timeout.min(end.saturating_duration_since(from))
      }
      None => self.timeout,
    }
  }
}

/// An attempt whose write is on its way to every node.
pub(super) struct Begun {
  token: Arc<str>,
  value: Arc<str>,
  began: Began,
  written: Issued,
}

/// One acquire attempt: the replies of the write, and with fencing those of
/// raising the counters, which then decide it.
pub(super) struct Attempt {
  /// This owner's random token; `value` adds the metadata to it.
  pub token: Arc<str>,
  pub value: Arc<str>,
  pub began: Began,
  pub written: Votes,
  raised: Option<Votes>,
  pub fencing_token: Option<u64>,
}

impl Attempt {
  pub fn verdict(&self) -> Verdict {
    self.raised.as_ref().unwrap_or(&self.written).verdict
  }

  /// The votes that decided the attempt.
  pub fn into_deciding(self) -> Votes {
    self.raised.unwrap_or(self.written)
  }
}

impl Inner {
  /// Issues the write of a new attempt to every node, now. A fresh token
  /// per attempt: the clean-up of an earlier attempt still on its way to a
  /// slow node can then never delete this one's key.
  pub(super) fn begin_attempt(&self, plan: &Plan) -> Begun {
    let token: Arc<str> = uuid::Uuid::new_v4().to_string().into();
    let value: Arc<str> = match &plan.metadata {
      Some(metadata) => format!("{token} {metadata}").into(),
      None => token.clone(),
    };
    let began = Began::now();
    let request = match &plan.fences {
      None => self.scripts.acquire(&plan.keys, &value, plan.ttl_ms),
      Some(fences) => self
        .scripts
        .acquire_fenced(&plan.keys, fences, &value, plan.ttl_ms),
    };
    let written = issue(&self.nodes, &request);
    Begun {
      token,
      value,
      began,
      written,
    }
  }

  /// Decides the attempt: with fencing, once the write won, raises the
  /// counters of the resources to the new token on every node that still
  /// holds the lock, and the attempt stands or falls with that.
  pub(super) async fn finish_attempt(&self, plan: &Plan, begun: Begun) -> Attempt {
    let Begun {
      token,
      value,
      began,
      written,
    } = begun;
    let (nodes, quarantine) = (&self.nodes, plan.quarantine);
    let timeout = plan.wait_from(began.at);
    let (written, raised, fencing_token) = match &plan.fences {
      None => (
        self.noted(tally(nodes, written, timeout, quarantine, acquire_vote).await),
        None,
        None,
      ),
      Some(fences) => {
        let highest = AtomicU64::new(0);
        let written =
          self.noted(tally(nodes, written, timeout, quarantine, fenced_vote(&highest)).await);
        if written.verdict == Verdict::Won {
          let fencing_token = highest.load(Ordering::Relaxed) + 1;
          let request = self
            .scripts
            .fence(&plan.keys, fences, &value, fencing_token);
          let raised = self.noted(
            tally(
              nodes,
              issue(nodes, &request),
              plan.wait_from(Instant::now()),
              quarantine,
              script_vote(1),
            )
            .await,
          );
          (written, Some(raised), Some(fencing_token))
        } else {
          (written, None, None)
        }
      }
    };
    Attempt {
      token,
      value,
      began,
      written,
      raised,
      fencing_token,
    }
  }

  /// Removes what a failed attempt wrote, quietly: nothing was held, so no
  /// waiter is woken (the caller itself among them). Waits for the nodes
  /// that granted within the call's bound.
  pub(super) async fn clean_up_attempt(&self, plan: &Plan, attempt: &Attempt) {
    let request = self.scripts.clean_up(&plan.keys, &attempt.value);
    let wait = plan.wait_from(Instant::now());
    self.delete(&request, &attempt.written.replies, wait).await;
  }

  /// Sends `request`, a compare-and-delete of this owner's keys, wherever
  /// they may have been written. Nodes that granted are cleaned before
  /// returning (for `wait` at most), so a retry is never blocked by its own
  /// key; nodes that failed or had not answered are sent the delete without
  /// waiting, so a stuck node does not delay the caller. Each delete follows
  /// the write on its node's connection, whenever that write lands, a
  /// stalled node's too.
  pub(super) async fn delete(&self, request: &Request, replies: &[Reply], wait: Duration) {
    let packed: Arc<[u8]> = request.cmd.get_packed_command().into();
    let mut granted = Vec::new();
    for (node, reply) in self.nodes.iter().zip(replies) {
      match reply {
        Reply::Refused => {}
        Reply::Granted => granted.push(node.follow_up(&packed, request.repeatable)),
        Reply::Pending | Reply::Failed(_) => node.send(&packed, request.repeatable),
      }
    }
    if !granted.is_empty() {
      let _ = tokio::time::timeout(wait, futures_util::future::join_all(granted)).await;
    }
  }
}
