//! The commands the lock sends, and the Lua scripts behind them, loaded from
//! `scripts/*.lua`; each file says what it guarantees. A single-resource
//! acquire needs no script: plain `SET NX PX`.

use redis::{Cmd, Script};

/// One command for every node, with the script source to load when a node
/// answers `NOSCRIPT` (it restarted, or its script cache was flushed).
pub struct Request {
  pub cmd: Cmd,
  pub script: Option<&'static str>,
}

const ACQUIRE_ALL: &str = include_str!("scripts/acquire_all.lua");
const ACQUIRE_FENCED: &str = include_str!("scripts/acquire_fenced.lua");
const FENCE: &str = include_str!("scripts/fence.lua");
const EXTEND: &str = include_str!("scripts/extend.lua");
const RELEASE: &str = include_str!("scripts/release.lua");
const INSPECT: &str = include_str!("scripts/inspect.lua");

/// Every script, for loading into a node as soon as it is connected.
pub const SCRIPTS: &[&str] = &[ACQUIRE_ALL, ACQUIRE_FENCED, FENCE, EXTEND, RELEASE, INSPECT];

/// The fencing counter of a lock key. Outside the key prefix, so that the
/// lock keys (`redlock:*`) are all the keys with a TTL, and the counters
/// (`fence:redlock:*`), which have none, are found by their own pattern.
pub fn fence_key(lock_key: &str) -> String {
  format!("fence:{lock_key}")
}

pub struct Scripts {
  acquire_all: String,
  acquire_fenced: String,
  fence: String,
  extend: String,
  release: String,
  inspect: String,
}

impl Default for Scripts {
  fn default() -> Self {
    let hash = |source| Script::new(source).get_hash().to_string();
    Scripts {
      acquire_all: hash(ACQUIRE_ALL),
      acquire_fenced: hash(ACQUIRE_FENCED),
      fence: hash(FENCE),
      extend: hash(EXTEND),
      release: hash(RELEASE),
      inspect: hash(INSPECT),
    }
  }
}

impl Scripts {
  pub fn acquire(&self, keys: &[String], value: &str, ttl_ms: u64) -> Request {
    match keys {
      [key] => {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value).arg("NX").arg("PX").arg(ttl_ms);
        Request { cmd, script: None }
      }
      _ => evalsha(
        &self.acquire_all,
        ACQUIRE_ALL,
        keys,
        &[value, &ttl_ms.to_string()],
      ),
    }
  }

  /// Phase 1 of a fenced acquire: `fences` are the counter keys of `keys`.
  pub fn acquire_fenced(
    &self,
    keys: &[String],
    fences: &[String],
    value: &str,
    ttl_ms: u64,
  ) -> Request {
    let both: Vec<&String> = keys.iter().chain(fences).collect();
    evalsha(
      &self.acquire_fenced,
      ACQUIRE_FENCED,
      &both,
      &[value, &ttl_ms.to_string()],
    )
  }

  /// Phase 2 of a fenced acquire: raises the counters to `token`.
  pub fn fence(&self, keys: &[String], fences: &[String], value: &str, token: u64) -> Request {
    let both: Vec<&String> = keys.iter().chain(fences).collect();
    evalsha(&self.fence, FENCE, &both, &[value, &token.to_string()])
  }

  pub fn inspect(&self, key: &str) -> Request {
    evalsha(&self.inspect, INSPECT, &[key], &[])
  }

  pub fn extend(&self, keys: &[String], value: &str, ttl_ms: u64) -> Request {
    evalsha(&self.extend, EXTEND, keys, &[value, &ttl_ms.to_string()])
  }

  pub fn release(&self, keys: &[String], value: &str) -> Request {
    evalsha(&self.release, RELEASE, keys, &[value])
  }
}

fn evalsha(
  hash: &str,
  source: &'static str,
  keys: &[impl redis::ToRedisArgs],
  args: &[&str],
) -> Request {
  let mut cmd = redis::cmd("EVALSHA");
  cmd.arg(hash).arg(keys.len()).arg(keys).arg(args);
  Request {
    cmd,
    script: Some(source),
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn requests_carry_the_hash_of_their_script() {
    let scripts = Scripts::default();
    let keys = ["redlock:a".to_string(), "redlock:b".to_string()];
    for (request, source) in [
      (scripts.acquire(&keys, "v", 100), ACQUIRE_ALL),
      (scripts.extend(&keys, "v", 100), EXTEND),
      (scripts.release(&keys, "v"), RELEASE),
    ] {
      assert_eq!(request.script, Some(source));
      let args: Vec<_> = request.cmd.args_iter().collect();
      let redis::Arg::Simple(hash) = args[1] else {
        panic!("no hash")
      };
      assert_eq!(hash, Script::new(source).get_hash().as_bytes());
      assert_eq!(args[2], redis::Arg::Simple(&b"2"[..]));
    }
    assert_eq!(scripts.acquire(&keys[..1], "v", 100).script, None);
  }
}
