//! The napi-rs binding, kept thin: it reads JavaScript arguments through the
//! options parser, starts engine calls (acquire and extend write their first
//! commands right away, from the JavaScript thread) and awaits them on the
//! I/O runtime, and hands their results back through the completion queue.
//! The public class and its promises live in `index.js`; this layer only
//! knows request ids.

mod completion;
mod credentials;
mod errors;
mod node_options;
mod options;
mod raw;
mod reports;
mod spelling;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use napi::bindgen_prelude::{Function, Unknown};
use napi::Env;
use napi_derive::napi;

use crate::engine::lock::Engine;
use completion::{Batch, Completions, Outcome};
use errors::{from_engine, invalid_arg, Code};
use raw::Raw;

type Result<T> = std::result::Result<T, napi::Error<Code>>;

/// One I/O thread serves every lock in the process: the work is waiting on
/// sockets, and one thread keeps every hand-off between tasks on one core.
fn runtime() -> &'static tokio::runtime::Runtime {
  static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
  RUNTIME.get_or_init(|| {
    tokio::runtime::Builder::new_multi_thread()
      .worker_threads(1)
      .thread_name("redis-quorum-lock-io")
      .enable_all()
      .build()
      .expect("the I/O runtime starts")
  })
}

/// A node of the quorum as the lock resolves it from options and environment.
#[napi(object)]
pub struct ResolvedNode {
  pub host: String,
  pub port: u32,
  pub username: Option<String>,
  pub password: Option<String>,
  pub db: u32,
  pub tls: bool,
  /// `host:port`, safe to print.
  pub label: String,
}

/// The nodes a `DistributedLock` built with `options` would use, so that
/// tools (the health check) read `REDIS_NODES` and `REDIS_INSTANCES` exactly
/// as the lock does.
#[napi(ts_args_type = "options?: unknown")]
pub fn resolve_nodes(options: Raw) -> Result<Vec<ResolvedNode>> {
  let lookup = |name: &str| std::env::var(name).ok();
  let config = options::lock_config(&options, &lookup).map_err(invalid_arg)?;
  Ok(
    config
      .nodes
      .into_iter()
      .map(|node| ResolvedNode {
        label: node.label(),
        host: node.host,
        port: u32::from(node.port),
        username: node.username,
        password: node.password,
        db: node.db,
        tls: node.tls,
      })
      .collect(),
  )
}

/// The native side of one `DistributedLock`.
#[napi]
pub struct LockCore {
  engine: Engine,
  completions: Completions,
  /// The abort switches of cancellable acquires in flight, by request id.
  aborts: Arc<Mutex<HashMap<u32, tokio::sync::watch::Sender<bool>>>>,
}

#[napi]
impl LockCore {
  /// Parses `options` (environment defaults included); `deliver` receives
  /// finished calls in batches. `provider` is the lock's credentials
  /// function and `nodeProviders` those of the `redis_nodes` entries, by
  /// index, each wrapped by the facade.
  #[napi(
    constructor,
    ts_args_type = "options: unknown, deliver: (batch: unknown[]) => void, provider?: () => Promise<unknown>, nodeProviders?: Array<(() => Promise<unknown>) | undefined>"
  )]
  pub fn new(
    options: Raw,
    deliver: Function<Batch, Unknown<'static>>,
    provider: Option<credentials::ProviderFunction>,
    node_providers: Option<Vec<Option<credentials::ProviderFunction>>>,
  ) -> Result<Self> {
    let lookup = |name: &str| std::env::var(name).ok();
    let mut config = options::lock_config(&options, &lookup).map_err(invalid_arg)?;
    credentials::attach(&mut config, provider, node_providers.unwrap_or_default())
      .map_err(|e| invalid_arg(e.reason.clone()))?;
    let completions = Completions::new(deliver).map_err(|e| invalid_arg(e.reason.clone()))?;
    let events = completions.clone();
    let on_lost = Box::new(move |lock| events.event(Outcome::Lost(lock)));
    let engine = Engine::new(config, on_lost).map_err(from_engine)?;
    Ok(LockCore {
      engine,
      completions,
      aborts: Arc::default(),
    })
  }

  /// With `cancellable`, `abort(request)` ends the call's waits.
  #[napi(
    ts_args_type = "request: number, resource: unknown, ttlMs: unknown, options: unknown, cancellable: boolean"
  )]
  pub fn acquire(
    &self,
    env: Env,
    request: u32,
    resource: Raw,
    ttl_ms: Raw,
    options: Raw,
    cancellable: bool,
  ) -> Result<()> {
    self.check_open()?;
    let config = self.engine.config();
    let resources = options::resources(&resource).map_err(invalid_arg)?;
    let ttl_ms = options::ttl_argument(&ttl_ms, config.lock_ttl_ms).map_err(invalid_arg)?;
    let options = options::acquire_options(&options, config.retry).map_err(invalid_arg)?;
    let cancel = cancellable.then(|| {
      let (abort, cancel) = tokio::sync::watch::channel(false);
      self.aborts().insert(request, abort);
      cancel
    });
    let _runtime = runtime().enter();
    let acquiring = self.engine.acquire(&resources, ttl_ms, options, cancel);
    let aborts = self.aborts.clone();
    self.spawn(&env, request, async move {
      let outcome = acquiring.await;
      if cancellable {
        aborts
          .lock()
          .unwrap_or_else(|e| e.into_inner())
          .remove(&request);
      }
      match outcome {
        Ok(lock) => Outcome::Acquired(lock),
        Err(error) => Outcome::Failed(error),
      }
    });
    Ok(())
  }

  /// Ends the waits of a cancellable acquire; it fails with `ABORT_ERR`, or,
  /// if it won meanwhile, resolves and the caller releases the lock.
  #[napi]
  pub fn abort(&self, request: u32) {
    if let Some(abort) = self.aborts().remove(&request) {
      let _ = abort.send(true);
    }
  }

  #[napi(ts_args_type = "request: number, lock: number, ttlMs: unknown")]
  pub fn extend(&self, env: Env, request: u32, lock: f64, ttl_ms: Raw) -> Result<()> {
    self.check_open()?;
    let ttl_ms = match ttl_ms {
      Raw::Undefined => None,
      other => Some(options::ttl_argument(&other, 0).map_err(invalid_arg)?),
    };
    let _runtime = runtime().enter();
    let extending = self.engine.extend(lock as u64, ttl_ms);
    self.spawn(&env, request, async move {
      match extending.await {
        Ok(validity) => Outcome::Extended(validity),
        Err(error) => Outcome::Failed(error),
      }
    });
    Ok(())
  }

  #[napi]
  pub fn release(&self, env: Env, request: u32, lock: f64) -> Result<()> {
    self.check_open()?;
    // Unlike acquire and extend, a release is issued on the I/O thread: its
    // writes to every node then leave before that thread can act on the
    // first node's release notification. From here, a waiter of this process
    // woken by it could reach the other nodes ahead of the release, find the
    // lock still held there, and try again and again until it lands.
    let engine = self.engine.clone();
    self.spawn(&env, request, async move {
      match engine.release(lock as u64).await {
        Ok(released) => Outcome::Released(released),
        Err(error) => Outcome::Failed(error),
      }
    });
    Ok(())
  }

  #[napi(ts_args_type = "request: number, resource: unknown")]
  pub fn inspect(&self, env: Env, request: u32, resource: Raw) -> Result<()> {
    self.check_open()?;
    let resource = match options::resources(&resource)
      .map_err(invalid_arg)?
      .as_slice()
    {
      [one] => one.clone(),
      _ => {
        return Err(invalid_arg(
          "inspect() takes one resource name, got a list".into(),
        ))
      }
    };
    let engine = self.engine.clone();
    self.spawn(&env, request, async move {
      match engine.inspect(&resource).await {
        Ok(info) => Outcome::Inspected(info),
        Err(error) => Outcome::Failed(error),
      }
    });
    Ok(())
  }

  #[napi]
  pub fn health(&self, env: Env, request: u32) -> Result<()> {
    self.check_open()?;
    let engine = self.engine.clone();
    self.spawn(&env, request, async move {
      match engine.health().await {
        Ok(report) => Outcome::Health(report),
        Err(error) => Outcome::Failed(error),
      }
    });
    Ok(())
  }

  /// Refuses new calls from now on; the result arrives once held locks
  /// are released and connections closed.
  #[napi]
  pub fn close(&self, env: Env, request: u32) {
    let closing = self.engine.close();
    self.spawn(&env, request, async move {
      closing.await;
      Outcome::Closed
    });
  }

  fn aborts(&self) -> std::sync::MutexGuard<'_, HashMap<u32, tokio::sync::watch::Sender<bool>>> {
    self.aborts.lock().unwrap_or_else(|e| e.into_inner())
  }

  fn check_open(&self) -> Result<()> {
    if self.engine.is_closed() {
      return Err(from_engine(crate::engine::error::LockError::Closed));
    }
    Ok(())
  }

  fn spawn(
    &self,
    env: &Env,
    request: u32,
    work: impl std::future::Future<Output = Outcome> + Send + 'static,
  ) {
    self.completions.start(env);
    let completions = self.completions.clone();
    runtime().spawn(async move {
      let outcome = work.await;
      completions.finish(request, outcome);
    });
  }
}
