//! What a node tells about itself when a connection opens: its run id,
//! version, uptime and persistence.

use std::time::Duration;

use redis::Value;

/// What a node says about itself when a connection opens.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Learnt {
  pub run_id: Option<String>,
  pub version: Option<String>,
  pub uptime: Option<Duration>,
  pub durable: Option<bool>,
}

/// The run id, version, uptime and persistence from the replies to `INFO
/// server` and `CONFIG GET append*`. A node that refuses either (managed
/// services often do) is not an error: what it does not tell is assumed the
/// unsafe way.
pub(super) fn learn(info: &Value, config: &Value) -> Learnt {
  let durable = match config {
    Value::ServerError(_) => None,
    config => Some(is_durable(&pairs_of(config))),
  };
  Learnt {
    durable,
    ..parse_info(&text_of(info))
  }
}

fn text_of(value: &Value) -> String {
  match value {
    Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
    Value::SimpleString(text) | Value::VerbatimString { text, .. } => text.clone(),
    _ => String::new(),
  }
}

fn pairs_of(value: &Value) -> Vec<(String, String)> {
  match value {
    Value::Array(items) => items
      .chunks(2)
      .filter_map(|pair| match pair {
        [key, value] => Some((text_of(key), text_of(value))),
        _ => None,
      })
      .collect(),
    Value::Map(entries) => entries
      .iter()
      .map(|(key, value)| (text_of(key), text_of(value)))
      .collect(),
    _ => Vec::new(),
  }
}

/// The run id, version and uptime from an `INFO server` reply.
fn parse_info(info: &str) -> Learnt {
  let field = |name: &str| {
    info
      .lines()
      .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
      .map(str::trim)
  };
  Learnt {
    run_id: field("run_id").map(str::to_string),
    version: field("redis_version").map(str::to_string),
    uptime: field("uptime_in_seconds")
      .and_then(|s| s.parse::<u64>().ok())
      .map(Duration::from_secs),
    durable: None,
  }
}

/// Only an append-only file written before every reply survives a crash
/// with every lock the node granted.
fn is_durable(config: &[(String, String)]) -> bool {
  let get = |name: &str| {
    config
      .iter()
      .find(|(key, _)| key == name)
      .map(|(_, value)| value.as_str())
  };
  get("appendonly") == Some("yes") && get("appendfsync") == Some("always")
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn info_gives_the_run_id_version_and_uptime() {
    let info = "# Server\r\nredis_version:7.0.15\r\nrun_id:abc123\r\nuptime_in_seconds:42\r\n";
    assert_eq!(
      parse_info(info),
      Learnt {
        run_id: Some("abc123".into()),
        version: Some("7.0.15".into()),
        uptime: Some(Duration::from_secs(42)),
        durable: None,
      }
    );
    assert_eq!(parse_info("garbage"), Learnt::default());
  }

  #[test]
  fn only_an_aof_synced_on_every_write_is_durable() {
    let config = |only: &str, fsync: &str| {
      vec![
        ("appendonly".to_string(), only.to_string()),
        ("appendfsync".to_string(), fsync.to_string()),
      ]
    };
    assert!(is_durable(&config("yes", "always")));
    assert!(!is_durable(&config("yes", "everysec")));
    assert!(!is_durable(&config("no", "always")));
    assert!(!is_durable(&[]));
  }
}
