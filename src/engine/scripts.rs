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
const EXTEND: &str = include_str!("scripts/extend.lua");
const RELEASE: &str = include_str!("scripts/release.lua");

/// Every script, for loading into a node as soon as it is connected.
pub const SCRIPTS: &[&str] = &[ACQUIRE_ALL, EXTEND, RELEASE];

pub struct Scripts {
  acquire_all: String,
  extend: String,
  release: String,
}

impl Default for Scripts {
  fn default() -> Self {
    let hash = |source| Script::new(source).get_hash().to_string();
    Scripts {
      acquire_all: hash(ACQUIRE_ALL),
      extend: hash(EXTEND),
      release: hash(RELEASE),
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

  pub fn extend(&self, keys: &[String], value: &str, ttl_ms: u64) -> Request {
    evalsha(&self.extend, EXTEND, keys, &[value, &ttl_ms.to_string()])
  }

  pub fn release(&self, keys: &[String], value: &str) -> Request {
    evalsha(&self.release, RELEASE, keys, &[value])
  }
}

fn evalsha(hash: &str, source: &'static str, keys: &[String], args: &[&str]) -> Request {
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
