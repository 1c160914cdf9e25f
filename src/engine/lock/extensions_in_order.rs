//! Two extensions of one lease issued at the same time from two threads (a
//! caller's `extend` on the JavaScript thread and a watchdog turn on the I/O
//! thread) must reach every node in one order. The lease's validity is the
//! one of the extension issued last; were the order to differ between nodes,
//! a majority could keep the other extension's shorter TTL while this owner
//! counts on the longer one. Real `redis-server` nodes, with AOF so that no
//! restart quarantine applies.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::engine::config::{AcquireOptions, LockConfig};
use crate::engine::lock::Engine;
use crate::engine::node::NodeConfig;

const NODES: usize = 5;
const SHORT_MS: u64 = 10_000;
const LONG_MS: u64 = 20_000;
const ROUNDS: usize = 300;

/// A `redis-server` on a free port, stopped (and its directory removed) on drop.
struct Node {
  port: u16,
  process: Child,
  dir: PathBuf,
}

impl Node {
  fn start() -> Node {
    let port = TcpListener::bind("127.0.0.1:0")
      .and_then(|listener| listener.local_addr())
      .expect("a free port")
      .port();
    let dir =
      std::env::temp_dir().join(format!("extensions-in-order-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory for the node");
    let process = Command::new("redis-server")
      .args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
      ])
      .args(["--appendonly", "yes", "--appendfsync", "always"])
      .arg("--dir")
      .arg(&dir)
      .stdout(Stdio::null())
      .spawn()
      .expect("redis-server starts (is it installed?)");
    let node = Node { port, process, dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
      assert!(
        Instant::now() < deadline,
        "redis-server on {port} did not listen"
      );
      thread::sleep(Duration::from_millis(20));
    }
    node
  }
}

impl Drop for Node {
  fn drop(&mut self) {
    let _ = self.process.kill();
    let _ = self.process.wait();
    let _ = std::fs::remove_dir_all(&self.dir);
  }
}

#[test]
fn extensions_from_two_threads_reach_every_node_in_the_order_they_were_issued() {
  let nodes: Vec<Node> = (0..NODES).map(|_| Node::start()).collect();
  let runtime = Arc::new(
    tokio::runtime::Builder::new_multi_thread()
      .worker_threads(1)
      .enable_all()
      .build()
      .expect("a runtime"),
  );
  let _context = runtime.enter();
  let specs = nodes
    .iter()
    .map(|node| NodeConfig::endpoint("127.0.0.1", node.port))
    .collect::<Result<Vec<_>, _>>()
    .expect("node addresses");
  let config = LockConfig::with_nodes(specs);
  let retry = config.retry;
  let engine =
    Arc::new(Engine::new(config, Box::new(|_| {}), Box::new(|_| {})).expect("an engine"));
  let options = AcquireOptions {
    retry,
    auto_extend: false,
    wait: None,
    fencing: false,
    metadata: None,
  };
  let resource = "extensions-in-order".to_string();
  let acquired = runtime
    .block_on(engine.acquire(std::slice::from_ref(&resource), LONG_MS, options, None))
    .outcome
    .expect("the nodes answer")
    .expect("the lock is free");

  let mut mixed = Vec::new();
  for round in 0..ROUNDS {
    let start = Arc::new(Barrier::new(2));
    let extend = |ttl_ms: u64| {
      let (engine, runtime, start) = (engine.clone(), runtime.clone(), start.clone());
      thread::spawn(move || {
        let _context = runtime.enter();
        start.wait();
        let extension = engine.extend(acquired.id, Some(ttl_ms));
        let validity = runtime
          .block_on(extension)
          .outcome
          .expect("the nodes answer");
        assert!(validity.is_some(), "a majority extended it");
      })
    };
    for extension in [extend(SHORT_MS), extend(LONG_MS)] {
      extension.join().expect("the extension succeeded");
    }
    let seen = runtime
      .block_on(engine.inspect(&resource))
      .expect("the nodes answer");
    let kept: Vec<u64> = seen
      .nodes
      .iter()
      .map(|node| {
        let ttl_ms = node.ttl_ms.expect("every node holds the key") as u64;
        if ttl_ms > SHORT_MS {
          LONG_MS
        } else {
          SHORT_MS
        }
      })
      .collect();
    if kept.iter().any(|&ttl_ms| ttl_ms != kept[0]) {
      mixed.push(format!("round {round}: the nodes keep {kept:?}"));
    }
  }
  runtime.block_on(engine.release(acquired.id));
  assert!(
    mixed.is_empty(),
    "{} of {ROUNDS} rounds left the nodes with different extensions last:\n{}",
    mixed.len(),
    mixed.join("\n")
  );
}
