//! What the nodes say about one lock (`inspect`) and about themselves
//! (`health`). Both ask every node and wait for each, up to its timeout:
//! they report, they do not decide at quorum.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use redis::{InfoDict, Value};

use super::{Engine, InFlight};
use crate::engine::connection::NodeClient;
use crate::engine::error::LockError;
use crate::engine::quorum::quorum_of;
use crate::engine::scripts::{fence_key, Request};
use crate::engine::shape::plain;

/// What `inspect` and `health` report (see `shape`).
macro_rules! report_shapes {
  ($expand:ident) => {
    $expand! {
      in crate::engine::lock;

      #[doc = "One node's view of a lock, in a `LockInfo`."]
      #[derive(Clone, Debug, PartialEq)]
      pub struct NodeLockInfo {
        #[doc = "The node as `host:port`, never with its password."]
        pub node: String,
        #[doc = "Why the node did not answer; then nothing else is known of it."]
        pub error: Option<String>,
        #[doc = "Whether the node holds a key for the resource."]
        pub held: bool,
        #[doc = "Remaining TTL of the key in ms (-1: a key without TTL, not written by a lock)."]
        pub ttl_ms: Option<i64>,
        #[doc = "The holder's token (its handle's `value`); another library's whole value."]
        pub holder: Option<String>,
        #[doc = "Whether this instance holds the lock under that token."]
        pub mine: bool,
        #[doc = "The holder's metadata (the `metadata` option of acquire)."]
        pub metadata: Option<BTreeMap<String, String>>,
        #[doc = "How long this node's vote does not count yet (restart quarantine), in ms."]
        pub quarantine_ms: f64,
      }

      #[doc = "What `inspect()` reports: the lock as a majority of the nodes sees it."]
      #[derive(Clone, Debug, PartialEq)]
      pub struct LockInfo {
        pub resource: String,
        #[doc = "Whether a majority of the nodes (out of quarantine) agrees on one holder."]
        pub locked: bool,
        #[doc = "That holder's token, when locked."]
        pub holder: Option<String>,
        #[doc = "Whether that holder is this instance."]
        pub mine: bool,
        #[doc = "That holder's metadata, when it gave some."]
        pub metadata: Option<BTreeMap<String, String>>,
        #[doc = "The smallest remaining TTL among the nodes of that majority, in ms."]
        pub ttl_ms: Option<i64>,
        #[doc = "How many nodes make a majority."]
        pub quorum: u32,
        pub nodes: Vec<NodeLockInfo>,
      }

      #[doc = "One node in a `HealthReport`."]
      #[derive(Clone, Debug, PartialEq)]
      pub struct NodeHealth {
        #[doc = "The node as `host:port`, never with its password."]
        pub node: String,
        #[doc = "Whether it answered PING within the timeout."]
        pub answers: bool,
        #[doc = "The PING round trip in ms (with the connect, for a first probe)."]
        pub latency_ms: Option<f64>,
        #[doc = "The node's run id, which changes with every restart."]
        pub run_id: Option<String>,
        #[doc = "The Redis version it runs (`redis_version` of `INFO server`)."]
        pub version: Option<String>,
        #[doc = "Its replication role (`role` of `INFO`): `master`, or `slave` for a replica, which a lock should not use."]
        pub role: Option<String>,
        #[doc = "How long the node has run under that run id, in ms."]
        pub uptime_ms: Option<f64>,
        #[doc = "The memory its data takes, in bytes (`used_memory` of `INFO`)."]
        pub used_memory_bytes: Option<f64>,
        #[doc = "Whether its append-only file is on (`aof_enabled` of `INFO`)."]
        pub aof: Option<bool>,
        #[doc = "When it writes the append-only file to disk: `always`, `everysec` or `no` (`CONFIG GET`)."]
        pub appendfsync: Option<String>,
        #[doc = "Whether it keeps every write on disk before replying; `null` when it does not say."]
        pub durable: Option<bool>,
        #[doc = "The lock keys it holds under the key prefix, fencing counters left out; counted with `SCAN` only when `health({ lock_keys: true })` asks."]
        pub lock_keys: Option<u32>,
        #[doc = "Why the lock keys were asked for and not counted."]
        pub lock_keys_error: Option<String>,
        #[doc = "How long its vote does not count yet (restart quarantine), in ms."]
        pub quarantine_ms: f64,
        #[doc = "Why this probe failed."]
        pub error: Option<String>,
        #[doc = "The last error any command met on this node, even if it answers now."]
        pub last_error: Option<String>,
      }

      #[doc = "What `health()` reports."]
      #[derive(Clone, Debug, PartialEq)]
      pub struct HealthReport {
        #[doc = "Whether enough nodes answer, out of quarantine, to reach a majority now."]
        pub quorum_reachable: bool,
        #[doc = "How many nodes make a majority."]
        pub quorum: u32,
        #[doc = "How many nodes answer and count toward it."]
        pub counted: u32,
        pub nodes: Vec<NodeHealth>,
      }
    }
  };
}

pub(crate) use report_shapes;
report_shapes!(plain);

/// Splits a stored value into the owner's token and the metadata this
/// library appends to it as a JSON object after one space.
pub fn split_value(stored: &str) -> (&str, Option<&str>) {
  match stored.split_once(' ') {
    Some((token, metadata)) if metadata.starts_with('{') => (token, Some(metadata)),
    _ => (stored, None),
  }
}

/// The metadata in a stored value's JSON, string values by name; `None` for
/// anything else after the token (another library's value that only looks
/// like ours).
fn parse_metadata(json: &str) -> Option<BTreeMap<String, String>> {
  serde_json::from_str(json).ok()
}

impl Engine {
  pub async fn inspect(&self, resource: &str) -> Result<LockInfo, LockError> {
    let inner = &*self.inner;
    let _in_flight = InFlight::enter(inner)?;
    let key = format!("{}{resource}", inner.config.key_prefix);
    let request = inner.scripts.inspect(&key);
    let quarantine = inner.quarantine();
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
      let mut seen = NodeLockInfo {
        node: node.label().to_string(),
        error: None,
        held: false,
        ttl_ms: None,
        holder: None,
        mine: false,
        metadata: None,
        quarantine_ms: quarantine_ms as f64,
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
            seen.metadata = metadata.and_then(parse_metadata);
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
      quorum: quorum as u32,
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

  pub async fn health(&self, options: HealthOptions) -> Result<HealthReport, LockError> {
    let inner = &*self.inner;
    let _in_flight = InFlight::enter(inner)?;
    let quarantine = inner.quarantine();
    let config = &inner.config;
    let probes = inner.nodes.iter().map(|node| {
      // A first probe also opens the connection.
      let limit = match node.is_connected() {
        true => config.command_timeout,
        false => config.connect_timeout + config.command_timeout,
      };
      async move {
        let start = Instant::now();
        let pong = node.probe(&request(&["PING"]));
        // Behind the PING on the same connection, so they neither delay its
        // reply nor wait for a connection of their own.
        let info = node.query(&request(&["INFO"]));
        let persistence = node.query(&request(&["CONFIG", "GET", "append*"]));
        let reply = tokio::time::timeout(limit, pong).await;
        let elapsed = start.elapsed();
        let mut found = Found::default();
        if let Ok(Ok(_)) = reply {
          let details = futures_util::future::join(info, persistence);
          if let Ok((info, persistence)) =
            tokio::time::timeout(config.command_timeout, details).await
          {
            found.read(info.ok(), persistence.ok());
          }
          if options.lock_keys {
            found.lock_keys =
              Some(count_lock_keys(node, &config.key_prefix, config.command_timeout).await);
          }
        }
        (elapsed, limit, reply, found)
      }
    });
    let replies = futures_util::future::join_all(probes).await;
    let now = Instant::now();
    let nodes: Vec<NodeHealth> = inner
      .nodes
      .iter()
      .zip(replies)
      .map(|(node, (elapsed, limit, reply, found))| {
        let status = node.status();
        let error = match reply {
          Ok(Ok(_)) => None,
          Ok(Err(message)) => Some(message),
          Err(_) => Some(format!("no reply within {} ms", limit.as_millis())),
        };
        let (lock_keys, lock_keys_error) = match found.lock_keys {
          None => (None, None),
          Some(Ok(count)) => (Some(count), None),
          Some(Err(problem)) => (None, Some(problem)),
        };
        NodeHealth {
          node: node.label().to_string(),
          answers: error.is_none(),
          latency_ms: error.is_none().then_some(elapsed.as_secs_f64() * 1000.0),
          run_id: status.run_id,
          version: status.version,
          role: found.role,
          uptime_ms: status
            .started
            .map(|started| now.saturating_duration_since(started).as_millis() as f64),
          used_memory_bytes: found.used_memory_bytes,
          aof: found.aof,
          appendfsync: found.appendfsync,
          durable: status.durable,
          lock_keys,
          lock_keys_error,
          quarantine_ms: quarantine
            .and_then(|max_ttl| node.quarantine_left(max_ttl))
            .map_or(0.0, |left: Duration| left.as_millis() as f64),
          error,
          last_error: status.last_error,
        }
      })
      .collect();
    let quorum = quorum_of(nodes.len());
    let counted = nodes
      .iter()
      .filter(|node| node.answers && node.quarantine_ms == 0.0)
      .count();
    Ok(HealthReport {
      quorum_reachable: counted >= quorum,
      quorum: quorum as u32,
      counted: counted as u32,
      nodes,
    })
  }
}

/// What `health` does beyond pinging, when asked, since it costs more.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HealthOptions {
  /// Count each node's lock keys, with one `SCAN` per thousand keys.
  pub lock_keys: bool,
}

/// How many `SCAN` steps' command timeouts one node's count may take in
/// all: a node with millions of keys is reported as not counted rather than
/// holding `health` for minutes.
const SCAN_STEPS_ALLOWED: u32 = 10;

fn request(args: &[&str]) -> Request {
  let mut cmd = redis::cmd(args[0]);
  for arg in &args[1..] {
    cmd.arg(*arg);
  }
  Request::new(cmd)
}

/// What a node that answered tells of itself now. A node that refuses
/// `INFO` or `CONFIG` (an ACL, a managed service) leaves those fields out:
/// it still answers.
#[derive(Default)]
struct Found {
  role: Option<String>,
  used_memory_bytes: Option<f64>,
  aof: Option<bool>,
  appendfsync: Option<String>,
  lock_keys: Option<Result<u32, String>>,
}

impl Found {
  fn read(&mut self, info: Option<Value>, persistence: Option<Value>) {
    if let Some(info) = info.and_then(|info| redis::from_redis_value::<InfoDict>(info).ok()) {
      self.role = info.get("role");
      self.used_memory_bytes = info.get::<u64>("used_memory").map(|bytes| bytes as f64);
      self.aof = info.get::<String>("aof_enabled").map(|on| on == "1");
    }
    let persistence = persistence
      .and_then(|config| redis::from_redis_value::<HashMap<String, String>>(config).ok());
    self.appendfsync = persistence.and_then(|mut config| config.remove("appendfsync"));
  }
}

/// The keys under `prefix` on `node`, but the fencing counters, which are
/// no locks; each `SCAN` step within `step`, all of them within
/// [`SCAN_STEPS_ALLOWED`] steps' time.
async fn count_lock_keys(node: &NodeClient, prefix: &str, step: Duration) -> Result<u32, String> {
  let pattern = format!("{}*", glob_escaped(prefix));
  let counters = fence_key(prefix, "");
  let deadline = Instant::now() + step * SCAN_STEPS_ALLOWED;
  let mut cursor = 0u64;
  let mut count = 0u32;
  loop {
    let mut scan = redis::cmd("SCAN");
    scan
      .arg(cursor)
      .arg("MATCH")
      .arg(&pattern)
      .arg("COUNT")
      .arg(1000);
    let left = deadline.saturating_duration_since(Instant::now());
    let reply = match tokio::time::timeout(step.min(left), node.query(&Request::new(scan))).await {
      Ok(answered) => answered?,
      Err(_) if left <= step => {
        return Err(format!(
          "not counted within {} ms",
          (step * SCAN_STEPS_ALLOWED).as_millis()
        ))
      }
      Err(_) => return Err(format!("no reply to SCAN within {} ms", step.as_millis())),
    };
    let (next, keys): (u64, Vec<Vec<u8>>) =
      redis::from_redis_value(reply).map_err(|e| format!("unexpected SCAN reply: {e}"))?;
    count += keys
      .iter()
      .filter(|key| !key.starts_with(counters.as_bytes()))
      .count() as u32;
    if next == 0 {
      return Ok(count);
    }
    cursor = next;
  }
}

/// `text` as a `SCAN MATCH` pattern that matches only itself.
fn glob_escaped(text: &str) -> String {
  let mut escaped = String::with_capacity(text.len());
  for c in text.chars() {
    if matches!(c, '*' | '?' | '[' | ']' | '\\') {
      escaped.push('\\');
    }
    escaped.push(c);
  }
  escaped
}

#[cfg(test)]
mod tests {
  use super::{glob_escaped, parse_metadata, split_value};

  #[test]
  fn a_key_prefix_matches_only_itself_in_scan() {
    assert_eq!(glob_escaped("redlock:"), "redlock:");
    assert_eq!(glob_escaped(r"a*b?[c]\\"), r"a\*b\?\[c\]\\\\");
  }

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

  #[test]
  fn metadata_is_an_object_of_strings_or_nothing() {
    let parsed = parse_metadata(r#"{"region":"eu west","pid":"42"}"#).unwrap();
    assert_eq!(parsed.get("region").map(String::as_str), Some("eu west"));
    assert_eq!(parsed.len(), 2);
    assert_eq!(parse_metadata(r#"{"pid":42}"#), None);
    assert_eq!(parse_metadata("{not json"), None);
  }
}
