//! What the nodes say about one lock (`inspect`) and about themselves
//! (`health`). Both ask every node and wait for each, up to its timeout:
//! they report, they do not decide at quorum.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use redis::Value;

use super::{Engine, InFlight};
use crate::engine::error::LockError;
use crate::engine::quorum::quorum_of;
use crate::engine::scripts::Request;

/// One node's view of a lock.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeLock {
  pub node: String,
  /// Why the node did not answer; the other fields are then empty.
  pub error: Option<String>,
  pub held: bool,
  /// The key's remaining TTL; -1 if it has none (not written by a lock).
  pub ttl_ms: Option<i64>,
  /// The holder's token (for a lock of another library, its whole value).
  pub holder: Option<String>,
  /// Whether this instance holds the lock under that token.
  pub mine: bool,
  /// The holder's metadata, as the JSON object it was stored as.
  pub metadata: Option<String>,
  /// How long this node's vote does not count yet (restart quarantine).
  pub quarantine_ms: u64,
}

/// The lock as a majority of the nodes sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct LockInfo {
  pub resource: String,
  /// Whether a majority of counted nodes agrees on one holder.
  pub locked: bool,
  pub holder: Option<String>,
  pub mine: bool,
  pub metadata: Option<String>,
  /// The smallest remaining TTL among the nodes of that majority.
  pub ttl_ms: Option<i64>,
  pub quorum: usize,
  pub nodes: Vec<NodeLock>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NodeHealth {
  pub node: String,
  pub answers: bool,
  pub latency_ms: Option<f64>,
  pub run_id: Option<String>,
  /// How long the node has been up, as of its run id.
  pub uptime_ms: Option<u64>,
  /// Whether it keeps every write on disk before replying; `None` when it
  /// does not tell.
  pub durable: Option<bool>,
  pub quarantine_ms: u64,
  /// Why this probe failed.
  pub error: Option<String>,
  /// The last error any command met on this node, even if it answers now.
  pub last_error: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct HealthReport {
  /// Whether enough nodes answer, out of quarantine, to reach a quorum now.
  pub quorum_reachable: bool,
  pub quorum: usize,
  /// How many nodes answer and count toward the quorum.
  pub counted: usize,
  pub nodes: Vec<NodeHealth>,
}

/// Splits a stored value into the owner's token and the metadata this
/// library appends to it as a JSON object after one space.
pub fn split_value(stored: &str) -> (&str, Option<&str>) {
  match stored.split_once(' ') {
    Some((token, metadata)) if metadata.starts_with('{') => (token, Some(metadata)),
    _ => (stored, None),
  }
}

impl Engine {
  pub async fn inspect(&self, resource: &str) -> Result<LockInfo, LockError> {
    let inner = &*self.inner;
    let _in_flight = InFlight::enter(inner)?;
    let key = format!("{}{resource}", inner.config.key_prefix);
    let request = inner.scripts.inspect(&key);
    let quarantine = inner.quarantine(0);
    let timeout = inner.config.command_timeout;
    let replies = futures_util::future::join_all(
      inner
        .nodes
        .iter()
        .map(|node| tokio::time::timeout(timeout, node.query(&request))),
    )
    .await;
    let mut values: Vec<Option<String>> = Vec::with_capacity(replies.len());
    let mut nodes = Vec::with_capacity(replies.len());
    for (node, reply) in inner.nodes.iter().zip(replies) {
      let quarantine_ms = quarantine
        .and_then(|max_ttl| node.quarantine_left(max_ttl))
        .map_or(0, |left| left.as_millis() as u64);
      let mut seen = NodeLock {
        node: node.label().to_string(),
        error: None,
        held: false,
        ttl_ms: None,
        holder: None,
        mine: false,
        metadata: None,
        quarantine_ms,
      };
      let mut stored = None;
      match reply {
        Err(_) => seen.error = Some(format!("no reply within {} ms", timeout.as_millis())),
        Ok(Err(message)) => seen.error = Some(message),
        Ok(Ok(Value::Array(items))) => match items.as_slice() {
          [Value::BulkString(bytes), Value::Int(ttl)] => {
            let value = String::from_utf8_lossy(bytes).into_owned();
            let (token, metadata) = split_value(&value);
            seen.held = true;
            seen.ttl_ms = Some(*ttl);
            seen.holder = Some(token.to_string());
            seen.metadata = metadata.map(str::to_string);
            seen.mine = inner.registry().holds_value(&value);
            stored = Some(value);
          }
          [Value::Nil, _] => {}
          other => seen.error = Some(format!("unexpected reply {other:?}")),
        },
        Ok(Ok(other)) => seen.error = Some(format!("unexpected reply {other:?}")),
      }
      values.push(stored.filter(|_| quarantine_ms == 0));
      nodes.push(seen);
    }
    let quorum = quorum_of(nodes.len());
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for value in values.iter().flatten() {
      *counts.entry(value).or_default() += 1;
    }
    let agreed = counts
      .into_iter()
      .find(|(_, count)| *count >= quorum)
      .map(|(value, _)| value);
    let mut info = LockInfo {
      resource: resource.to_string(),
      locked: agreed.is_some(),
      holder: None,
      mine: false,
      metadata: None,
      ttl_ms: None,
      quorum,
      nodes: Vec::new(),
    };
    if let Some(agreed) = agreed {
      let majority = || {
        nodes
          .iter()
          .zip(&values)
          .filter(|(_, value)| value.as_deref() == Some(agreed))
          .map(|(node, _)| node)
      };
      let first = majority().next();
      info.holder = first.and_then(|node| node.holder.clone());
      info.metadata = first.and_then(|node| node.metadata.clone());
      info.mine = first.is_some_and(|node| node.mine);
      info.ttl_ms = majority().filter_map(|node| node.ttl_ms).min();
    }
    info.nodes = nodes;
    Ok(info)
  }

  pub async fn health(&self) -> Result<HealthReport, LockError> {
    let inner = &*self.inner;
    let _in_flight = InFlight::enter(inner)?;
    let ping = Request {
      cmd: redis::cmd("PING"),
    };
    let quarantine = inner.quarantine(0);
    let config = &inner.config;
    let probes = inner.nodes.iter().map(|node| {
      // A first probe also opens the connection.
      let limit = match node.is_connected() {
        true => config.command_timeout,
        false => config.connect_timeout + config.command_timeout,
      };
      let ping = &ping;
      async move {
        let start = Instant::now();
        let reply = tokio::time::timeout(limit, node.probe(ping)).await;
        (start.elapsed(), limit, reply)
      }
    });
    let replies = futures_util::future::join_all(probes).await;
    let now = Instant::now();
    let nodes: Vec<NodeHealth> = inner
      .nodes
      .iter()
      .zip(replies)
      .map(|(node, (elapsed, limit, reply))| {
        let status = node.status();
        let error = match reply {
          Ok(Ok(_)) => None,
          Ok(Err(message)) => Some(message),
          Err(_) => Some(format!("no reply within {} ms", limit.as_millis())),
        };
        NodeHealth {
          node: node.label().to_string(),
          answers: error.is_none(),
          latency_ms: error.is_none().then_some(elapsed.as_secs_f64() * 1000.0),
          run_id: status.run_id,
          uptime_ms: status
            .started
            .map(|started| now.saturating_duration_since(started).as_millis() as u64),
          durable: status.durable,
          quarantine_ms: quarantine
            .and_then(|max_ttl| node.quarantine_left(max_ttl))
            .map_or(0, |left: Duration| left.as_millis() as u64),
          error,
          last_error: status.last_error,
        }
      })
      .collect();
    let quorum = quorum_of(nodes.len());
    let counted = nodes
      .iter()
      .filter(|node| node.answers && node.quarantine_ms == 0)
      .count();
    Ok(HealthReport {
      quorum_reachable: counted >= quorum,
      quorum,
      counted,
      nodes,
    })
  }
}

#[cfg(test)]
mod tests {
  use super::split_value;

  #[test]
  fn metadata_follows_the_token_after_one_space() {
    assert_eq!(split_value("abc"), ("abc", None));
    assert_eq!(
      split_value(r#"abc {"region":"eu west"}"#),
      ("abc", Some(r#"{"region":"eu west"}"#))
    );
    assert_eq!(
      split_value("a value with spaces"),
      ("a value with spaces", None)
    );
  }
}
