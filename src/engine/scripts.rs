//! The commands the lock sends, and the Lua scripts behind them, loaded from
//! `scripts/*.lua`; each file says what it guarantees. A single-resource
//! acquire needs no script: plain `SET NX PX`.

use redis::{Cmd, Script};

/// One command for every node.
pub struct Request {
  pub cmd: Cmd,
  /// Whether the command may run late or twice (a compare-and-delete), and
  /// so be sent again to a node that lost its script.
  pub repeatable: bool,
}

impl Request {
  pub fn new(cmd: Cmd) -> Self {
    Request {
      cmd,
      repeatable: false,
    }
  }
}

const ACQUIRE_ALL: &str = include_str!("scripts/acquire_all.lua");
const ACQUIRE_FENCED: &str = include_str!("scripts/acquire_fenced.lua");
const FENCE: &str = include_str!("scripts/fence.lua");
const EXTEND: &str = include_str!("scripts/extend.lua");
const RELEASE: &str = include_str!("scripts/release.lua");
const INSPECT: &str = include_str!("scripts/inspect.lua");

/// Every script, for loading into a node as soon as it is connected.
pub const SCRIPTS: &[&str] = &[ACQUIRE_ALL, ACQUIRE_FENCED, FENCE, EXTEND, RELEASE, INSPECT];

/// The fencing counter of a resource: `<key_prefix>fence:<resource>`
/// (`redlock:fence:invoices`), under the key prefix so that a user whose
/// ACL covers the prefix may fence. No resource is named `fence:...` (the
/// options refuse it), so a counter is never taken for a lock key; the
/// counters are the keys under the prefix without a TTL.
pub fn fence_key(key_prefix: &str, resource: &str) -> String {
  format!("{key_prefix}fence:{resource}")
}

/// Where the counter of a lock key lived before counters moved under the key
/// prefix; still read as a floor, so that tokens never go back.
fn old_fence_key(lock_key: &str) -> String {
  format!("fence:{lock_key}")
}

/// The largest counter a token can follow: tokens are `u64`, and the next
/// one is the largest counter plus one.
const LARGEST_COUNTER: u64 = u64::MAX - 1;

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
        Request::new(cmd)
      }
      _ => evalsha(&self.acquire_all, keys, &[value, &ttl_ms.to_string()]),
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
    let old_fences: Vec<String> = keys.iter().map(|key| old_fence_key(key)).collect();
    let (ttl, largest) = (ttl_ms.to_string(), LARGEST_COUNTER.to_string());
    let args: Vec<&str> = [value, &ttl, &largest]
      .into_iter()
      .chain(old_fences.iter().map(String::as_str))
      .collect();
    evalsha(&self.acquire_fenced, &both, &args)
  }

  /// Phase 2 of a fenced acquire: raises the counters to `token`.
  pub fn fence(&self, keys: &[String], fences: &[String], value: &str, token: u64) -> Request {
    let both: Vec<&String> = keys.iter().chain(fences).collect();
    evalsha(&self.fence, &both, &[value, &token.to_string()])
  }

  pub fn inspect(&self, key: &str) -> Request {
    evalsha(&self.inspect, &[key], &[])
  }

  pub fn extend(&self, keys: &[String], value: &str, ttl_ms: u64) -> Request {
    evalsha(&self.extend, keys, &[value, &ttl_ms.to_string()])
  }

  /// Deletes the owner's keys and wakes their waiters.
  pub fn release(&self, keys: &[String], value: &str) -> Request {
    compare_and_delete(&self.release, keys, &[value, "1"])
  }

  /// The release of an attempt that failed: the same deletes, announced to
  /// no waiter.
  pub fn clean_up(&self, keys: &[String], value: &str) -> Request {
    compare_and_delete(&self.release, keys, &[value, "0"])
  }
}

fn evalsha(hash: &str, keys: &[impl redis::ToRedisArgs], args: &[&str]) -> Request {
  let mut cmd = redis::cmd("EVALSHA");
  cmd.arg(hash).arg(keys.len()).arg(keys).arg(args);
  Request::new(cmd)
}

/// The release script, which deletes only the owner's keys: it may run late
/// or twice.
fn compare_and_delete(hash: &str, keys: &[String], args: &[&str]) -> Request {
  let mut request = evalsha(hash, keys, args);
  request.repeatable = true;
  request
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
      (scripts.clean_up(&keys, "v"), RELEASE),
    ] {
      let args: Vec<_> = request.cmd.args_iter().collect();
      let redis::Arg::Simple(hash) = args[1] else {
        panic!("no hash")
      };
      assert_eq!(hash, Script::new(source).get_hash().as_bytes());
      assert_eq!(args[2], redis::Arg::Simple(&b"2"[..]));
    }
    let set = scripts.acquire(&keys[..1], "v", 100);
    assert_eq!(
      set.cmd.args_iter().next(),
      Some(redis::Arg::Simple(&b"SET"[..]))
    );
  }

  #[test]
  fn a_release_announces_itself_and_a_clean_up_does_not() {
    let scripts = Scripts::default();
    let keys = ["redlock:a".to_string()];
    let last = |request: Request| match request.cmd.args_iter().last() {
      Some(redis::Arg::Simple(flag)) => flag.to_vec(),
      _ => panic!("no flag"),
    };
    assert_eq!(last(scripts.release(&keys, "v")), b"1");
    assert_eq!(last(scripts.clean_up(&keys, "v")), b"0");
  }

  #[test]
  fn only_compare_and_deletes_may_be_sent_again() {
    let scripts = Scripts::default();
    let keys = ["redlock:a".to_string(), "redlock:b".to_string()];
    assert!(scripts.release(&keys, "v").repeatable);
    assert!(scripts.clean_up(&keys, "v").repeatable);
    assert!(!scripts.extend(&keys, "v", 100).repeatable);
    assert!(!scripts.acquire(&keys, "v", 100).repeatable);
    assert!(!scripts.acquire(&keys[..1], "v", 100).repeatable);
  }

  #[test]
  fn counters_live_under_the_key_prefix() {
    assert_eq!(fence_key("redlock:", "invoices"), "redlock:fence:invoices");
    assert_eq!(fence_key("", "invoices"), "fence:invoices");
  }

  #[test]
  fn a_fenced_acquire_declares_locks_and_counters_and_passes_the_old_counters_and_the_bound() {
    let scripts = Scripts::default();
    let keys = ["redlock:a".to_string(), "redlock:b".to_string()];
    let fences = [fence_key("redlock:", "a"), fence_key("redlock:", "b")];
    for (request, source, tail) in [
      (
        scripts.acquire_fenced(&keys, &fences, "v", 100),
        ACQUIRE_FENCED,
        vec![
          "v",
          "100",
          "18446744073709551614",
          "fence:redlock:a",
          "fence:redlock:b",
        ],
      ),
      (
        scripts.fence(&keys, &fences, "v", u64::MAX),
        FENCE,
        vec!["v", "18446744073709551615"],
      ),
    ] {
      let args: Vec<Vec<u8>> = request
        .cmd
        .args_iter()
        .map(|arg| match arg {
          redis::Arg::Simple(bytes) => bytes.to_vec(),
          _ => panic!("only plain arguments"),
        })
        .collect();
      assert_eq!(args[1], Script::new(source).get_hash().as_bytes());
      assert_eq!(args[2], b"4");
      let declared: Vec<&[u8]> = args[3..7].iter().map(Vec::as_slice).collect();
      assert_eq!(
        declared,
        [
          &b"redlock:a"[..],
          b"redlock:b",
          b"redlock:fence:a",
          b"redlock:fence:b"
        ]
      );
      let rest: Vec<&[u8]> = args[7..].iter().map(Vec::as_slice).collect();
      let tail: Vec<&[u8]> = tail.iter().map(|arg| arg.as_bytes()).collect();
      assert_eq!(rest, tail);
    }
  }
}
