//! Typed configuration with every default in one place. Values arrive here
//! already typed; the ranges every caller must respect are checked here too.

use std::time::Duration;

use super::node::NodeConfig;

pub const DEFAULT_NODES: [&str; 3] = ["localhost:6379", "localhost:6380", "localhost:6381"];
pub const DEFAULT_LOCK_TTL_MS: u64 = 30_000;
pub const DEFAULT_RETRY_COUNT: i64 = 3;
pub const DEFAULT_RETRY_DELAY_MS: u64 = 200;
pub const DEFAULT_RETRY_JITTER_MS: u64 = 100;
pub const DEFAULT_DRIFT_FACTOR: f64 = 0.01;
pub const DEFAULT_KEY_PREFIX: &str = "redlock:";
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Long enough for a node across a region (tens of ms), short enough that a
/// stuck node costs a vote rather than the caller's lease.
pub const DEFAULT_COMMAND_TIMEOUT_MS: u64 = 500;

/// The largest metadata, as JSON, stored with a lock: it travels with every
/// extend and release of the lock, so it stays small.
pub const MAX_METADATA_BYTES: usize = 8192;
/// The most resources one lock takes: a multi-resource lock covers a few
/// rows or accounts, and every one of its keys is read and written by one
/// script on each node, which blocks that node while it runs.
pub const MAX_RESOURCES: usize = 64;
/// The longest resource name, in bytes of UTF-8, and the most the names of
/// one lock may take together: generous for keys built from URLs or JSON,
/// while every command of a lock stays within a megabyte.
pub const MAX_RESOURCE_BYTES: usize = 1 << 20;
/// The longest `key_prefix`, in bytes: it is repeated in every key.
pub const MAX_KEY_PREFIX_BYTES: usize = 256;
/// The largest TTL Redis accepts as a 32-bit signed PX argument.
pub const MAX_TTL_MS: u64 = i32::MAX as u64;
/// Beyond this a quorum is pointless to wait for and suggests a mistake.
pub const MAX_NODES: usize = 15;
/// Ten minutes: retry delays and timeouts longer than this are almost
/// certainly a unit mistake (seconds given as milliseconds).
pub const MAX_DELAY_MS: u64 = 600_000;

/// How many times an acquire tries after its first attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retries {
  Limited(u32),
  Unlimited,
}

impl Retries {
  /// `-1` means no limit; anything else must be a count.
  pub fn from_count(count: i64) -> Result<Self, String> {
    match count {
      -1 => Ok(Retries::Unlimited),
      0..=1_000_000 => Ok(Retries::Limited(count as u32)),
      _ => Err(format!(
        "must be -1 (no limit) or an integer from 0 to 1000000, got {count}"
      )),
    }
  }
}

/// How an acquire retries; the instance's defaults, overridable per call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
  pub retries: Retries,
  pub delay: Duration,
  pub jitter: Duration,
}

/// What one acquire asks for beyond its resources and TTL.
#[derive(Clone, Debug, PartialEq)]
pub struct AcquireOptions {
  pub retry: RetryPolicy,
  pub auto_extend: bool,
  /// Keep trying this long, woken as soon as the holder releases.
  pub wait: Option<Duration>,
  /// Also return a fencing token (one more round trip).
  pub fencing: bool,
  /// The holder's metadata as a JSON object, stored with the lock.
  pub metadata: Option<String>,
}

#[derive(Clone, Debug)]
pub struct LockConfig {
  pub nodes: Vec<NodeConfig>,
  pub lock_ttl_ms: u64,
  pub retry: RetryPolicy,
  pub drift_factor: f64,
  pub key_prefix: String,
  pub connect_timeout: Duration,
  pub command_timeout: Duration,
  /// Keep the votes of a node that may have forgotten locks out of the quorum.
  pub restart_quarantine: bool,
  /// The longest lease any client of these nodes holds; when unset, the
  /// longest this instance has been configured with or used.
  pub max_ttl_ms: Option<u64>,
}

impl LockConfig {
  /// A configuration with every default and the given nodes.
  pub fn with_nodes(nodes: Vec<NodeConfig>) -> Self {
    LockConfig {
      nodes,
      lock_ttl_ms: DEFAULT_LOCK_TTL_MS,
      retry: RetryPolicy {
        retries: Retries::Limited(DEFAULT_RETRY_COUNT as u32),
        delay: Duration::from_millis(DEFAULT_RETRY_DELAY_MS),
        jitter: Duration::from_millis(DEFAULT_RETRY_JITTER_MS),
      },
      drift_factor: DEFAULT_DRIFT_FACTOR,
      key_prefix: DEFAULT_KEY_PREFIX.to_string(),
      connect_timeout: Duration::from_millis(DEFAULT_CONNECT_TIMEOUT_MS),
      command_timeout: Duration::from_millis(DEFAULT_COMMAND_TIMEOUT_MS),
      restart_quarantine: true,
      max_ttl_ms: None,
    }
  }

  /// Checks what no single option can check alone.
  pub fn validate(&self) -> Result<(), String> {
    if self.nodes.is_empty() {
      return Err("redis_nodes: needs at least one node".into());
    }
    if self.nodes.len() > MAX_NODES {
      return Err(format!(
        "redis_nodes: at most {MAX_NODES} nodes, got {}",
        self.nodes.len()
      ));
    }
    for (i, node) in self.nodes.iter().enumerate() {
      if let Some(first) = self.nodes[..i].iter().position(|n| n.same_endpoint(node)) {
        return Err(format!(
          "redis_nodes: {} is listed twice (entries {first} and {i}); each node must be independent",
          node.label()
        ));
      }
    }
    Ok(())
  }
}

/// A TTL in milliseconds: an integer from 1 to 2^31-1.
pub fn check_ttl(ttl: f64) -> Result<u64, String> {
  check_integer(ttl, 1, MAX_TTL_MS)
}

/// A whole number of milliseconds within `min..=max`.
pub fn check_integer(value: f64, min: u64, max: u64) -> Result<u64, String> {
  if !value.is_finite() || value.fract() != 0.0 {
    return Err(format!("must be an integer, got {value}"));
  }
  if value < min as f64 || value > max as f64 {
    return Err(format!("must be from {min} to {max}, got {value}"));
  }
  Ok(value as u64)
}

/// The clock drift allowance: a fraction from 0 to 0.5 of the TTL.
pub fn check_drift_factor(value: f64) -> Result<f64, String> {
  if value.is_finite() && (0.0..=0.5).contains(&value) {
    Ok(value)
  } else {
    Err(format!("must be a number from 0 to 0.5, got {value}"))
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn ttl_must_be_a_positive_32_bit_integer() {
    assert_eq!(check_ttl(1.0), Ok(1));
    assert_eq!(check_ttl(2_147_483_647.0), Ok(2_147_483_647));
    for bad in [
      0.0,
      -1.0,
      1.5,
      f64::NAN,
      f64::INFINITY,
      1e20,
      2_147_483_648.0,
    ] {
      assert!(check_ttl(bad).is_err(), "{bad} accepted");
    }
  }

  #[test]
  fn retry_count_accepts_minus_one_as_no_limit() {
    assert_eq!(Retries::from_count(-1), Ok(Retries::Unlimited));
    assert_eq!(Retries::from_count(0), Ok(Retries::Limited(0)));
    assert!(Retries::from_count(-2).is_err());
    assert!(Retries::from_count(1_000_001).is_err());
  }

  #[test]
  fn drift_factor_is_a_fraction() {
    assert_eq!(check_drift_factor(0.01), Ok(0.01));
    assert!(check_drift_factor(-0.1).is_err());
    assert!(check_drift_factor(0.9).is_err());
    assert!(check_drift_factor(f64::NAN).is_err());
  }

  #[test]
  fn nodes_must_be_present_independent_and_few() {
    let node = |s: &str| NodeConfig::parse(s).unwrap();
    assert!(LockConfig::with_nodes(vec![]).validate().is_err());
    let twice = LockConfig::with_nodes(vec![node("a:1"), node("b:1"), node("redis://a:1")]);
    let message = twice.validate().unwrap_err();
    assert!(message.contains("a:1 is listed twice"), "{message}");
    let many = (1..=16).map(|p| node(&format!("h:{p}"))).collect();
    assert!(LockConfig::with_nodes(many).validate().is_err());
    assert!(
      LockConfig::with_nodes(vec![node("a"), node("b"), node("c")])
        .validate()
        .is_ok()
    );
  }
}
