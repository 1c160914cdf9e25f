//! The W1 floor: the raw baseline's algorithm without a runtime or a
//! JavaScript engine in the way. One thread sends `SET NX PX` to every node,
//! then blocks on the replies in node order (not in the order they arrive,
//! so one slow node can hold it up) and is decided at a majority's grants;
//! the release is the compare-and-delete script on every node. What it
//! measures is what the machine itself costs a quorum acquire: the writes
//! and the wake-ups of the processes on both ends.
//!
//!   cargo run --release --example quorum_floor -- <host:port,...> <pairs>
//!
//! Prints one line of JSON, as `benchmark/workload.ts` does for a library.

use std::time::Instant;

use redis::{Client, Connection, Value};

const TTL_MS: u64 = 60_000;
const WARM_UP: usize = 200;
const RELEASE: &str =
  "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

fn main() -> redis::RedisResult<()> {
  let mut args = std::env::args().skip(1);
  let usage = "usage: quorum_floor <host:port,...> <pairs>";
  let addresses = args.next().expect(usage);
  let pairs: usize = args.next().and_then(|n| n.parse().ok()).expect(usage);
  let mut nodes = addresses
    .split(',')
    .map(|address| Client::open(format!("redis://{address}"))?.get_connection())
    .collect::<redis::RedisResult<Vec<Connection>>>()?;
  let quorum = nodes.len() / 2 + 1;
  let prefix = format!("bench:floor:{}", std::process::id());
  let mut latencies_us = Vec::with_capacity(pairs);
  let mut measured = 0.0;
  for i in 0..WARM_UP + pairs {
    let key = format!("{prefix}:{i}");
    let value = format!("{prefix}:{i}:value");
    let set = redis::cmd("SET")
      .arg(&key)
      .arg(&value)
      .arg("PX")
      .arg(TTL_MS)
      .arg("NX")
      .get_packed_command();
    let started = Instant::now();
    for node in &mut nodes {
      node.send_packed_command(&set)?;
    }
    let mut granted = 0;
    let mut answered = 0;
    while granted < quorum {
      if nodes[answered].recv_response()? == Value::Okay {
        granted += 1;
      }
      answered += 1;
      assert!(
        granted + (nodes.len() - answered) >= quorum,
        "{key} was not acquired"
      );
    }
    let took = started.elapsed().as_secs_f64();
    for node in &mut nodes[answered..] {
      node.recv_response()?;
    }
    let release = redis::cmd("EVAL")
      .arg(RELEASE)
      .arg(1)
      .arg(&key)
      .arg(&value)
      .get_packed_command();
    for node in &mut nodes {
      node.send_packed_command(&release)?;
    }
    for node in &mut nodes {
      node.recv_response()?;
    }
    if i >= WARM_UP {
      latencies_us.push(took * 1e6);
      measured += started.elapsed().as_secs_f64();
    }
  }
  latencies_us.sort_by(f64::total_cmp);
  let at = |share: f64| latencies_us[(latencies_us.len() as f64 * share) as usize];
  println!(
    "{}",
    serde_json::json!({
      "pairsPerSecond": pairs as f64 / measured,
      "p50Us": at(0.5),
      "p99Us": at(0.99),
      "seconds": measured,
      "latenciesUs": latencies_us,
    })
  );
  Ok(())
}
