//! Two extensions of one lease issued at the same time from two threads (a
//! caller's `extend` on the JavaScript thread and a watchdog turn on the I/O
//! thread) must reach every node in the order of their issue times. The
//! lease counts on the extension issued last; were the order to differ
//! between nodes, or from the issue times, a majority could keep the other
//! extension's shorter TTL while this owner counts on the longer one. Real
//! `redis-server` nodes, with AOF so that no restart quarantine applies.

use std::io::{Read, Write};
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
  /// Starts one on a port that was free a moment ago; another process may
  /// take it meanwhile, so a node that exits instead of answering is
  /// started again on another port.
  fn start() -> Node {
    for _ in 0..5 {
      if let Some(node) = Node::try_start() {
        return node;
      }
    }
    panic!("redis-server did not start on any of five free ports");
  }

  fn try_start() -> Option<Node> {
    let port = TcpListener::bind("127.0.0.1:0")
      .and_then(|listener| listener.local_addr())
      .expect("a free port")
      .port();
    let dir =
      std::env::temp_dir().join(format!("extensions-in-order-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory for the node");
    let spawned = Command::new("redis-server")
      .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
      .args([
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
      ])
      .arg("--dir")
      .arg(&dir)
      .stdout(Stdio::null())
      .spawn();
    let process = match spawned {
      Ok(process) => process,
      Err(error) => {
        let _ = std::fs::remove_dir_all(&dir);
        panic!("redis-server does not start (is it on the PATH?): {error}");
      }
    };
    let mut node = Node { port, process, dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !node.answers() {
      if node
        .process
        .try_wait()
        .expect("the node's status")
        .is_some()
      {
        return None;
      }
      assert!(
        Instant::now() < deadline,
        "redis-server on {port} did not answer PING"
      );
      thread::sleep(Duration::from_millis(20));
    }
    Some(node)
  }

  fn answers(&self) -> bool {
    let mut reply = [0u8; 7];
    TcpStream::connect(("127.0.0.1", self.port))
      .and_then(|mut socket| {
        socket.set_read_timeout(Some(Duration::from_secs(1)))?;
        socket.write_all(b"PING\r\n")?;
        socket.read_exact(&mut reply)
      })
      .is_ok_and(|()| &reply == b"+PONG\r\n")
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
    let counted_on = engine
      .inner
      .registry()
      .get(acquired.id)
      .expect("the lease is held")
      .ttl_ms;
    if kept.iter().any(|&ttl_ms| ttl_ms != counted_on) {
      mixed.push(format!(
        "round {round}: the lease counts on {counted_on} ms, the nodes keep {kept:?}"
      ));
    }
  }
  runtime.block_on(engine.release(acquired.id));
  assert!(
    mixed.is_empty(),
    "{} of {ROUNDS} rounds left a node with another extension than the lease's:\n{}",
    mixed.len(),
    mixed.join("\n")
  );
}
