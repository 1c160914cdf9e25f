//! The napi-rs binding, kept thin: it reads JavaScript arguments through the
//! options parser, starts engine calls on the JavaScript thread (acquire,
//! extend and release write their first commands right away, so that
//! commands reach the nodes in the order of the calls) and returns a promise for
//! each, settled through the completion queue with a typed result. The
//! result types are the engine's shapes expanded again in `shapes`; the
//! public class and its handles live in `index.js`.

mod completion;
mod credentials;
mod errors;
mod node_options;
mod options;
mod raw;
mod shapes;
mod spelling;

use napi::bindgen_prelude::{BigInt, Function, PromiseRaw, Unknown};
use napi::Env;
use napi_derive::napi;

use crate::engine::error::LockError;
use crate::engine::lock::{Decided, Engine};
use completion::{guarded, Completions, Finished};
use errors::{invalid_arg, Code};
use raw::Raw;
use shapes::{
  Acquired, Decision, HealthReport, LockEvent, LockInfo, Mirror, NodeConfig, Stats, Validity,
};

type Result<T> = std::result::Result<T, napi::Error<Code>>;

/// Reads an argument; a getter that throws while it is read makes the call
/// throw its exception.
fn read(value: &Unknown) -> Result<Raw> {
  Raw::read(value).map_err(|error| napi::Error::new(Code::from(error.status), error.reason))
}

/// The nodes a `DistributedLock` built with `options` would use, so that
/// tools (the health check) read `REDIS_NODES` and `REDIS_INSTANCES` exactly
/// as the lock does.
#[napi(ts_args_type = "options?: unknown")]
pub fn resolve_nodes(options: Unknown) -> Result<Vec<NodeConfig>> {
  guarded(|| {
    let lookup = |name: &str| std::env::var(name).ok();
    let config = options::lock_config(&read(&options)?, &lookup).map_err(invalid_arg)?;
    Ok(config.nodes.mirror())
  })
}

/// The abort switch of one acquire: `abort()` ends its waits, and it fails
/// with `ABORT_ERR` (or, if it won meanwhile, resolves, and the caller
/// releases the lock).
#[napi]
#[derive(Default)]
pub struct Cancel {
  abort: tokio::sync::watch::Sender<bool>,
}

#[napi]
impl Cancel {
  #[napi(constructor)]
  pub fn new() -> Self {
    Cancel::default()
  }

  #[napi]
  pub fn abort(&self) {
    self.abort.send_replace(true);
  }
}

/// The native side of one `DistributedLock`.
#[napi]
pub struct LockCore {
  engine: Engine,
  completions: Completions,
}

/// The result of `decided`, and for a caller that asked (`detail`) what
/// decided it: the engine's replies become objects only then.
fn finished<T: Mirror<R>, R>(engine: &Engine, decided: Decided<T>, detail: bool) -> Finished<R> {
  let decision = detail.then(|| Decision {
    attempts: decided.attempts,
    votes: decided
      .votes
      .as_ref()
      .map(|votes| engine.node_votes(votes).mirror())
      .unwrap_or_default(),
  });
  Finished {
    result: decided.outcome.map(Mirror::mirror),
    decision,
  }
}

#[napi]
impl LockCore {
  /// Parses `options` (environment defaults included); `onLost` is told the
  /// ids of auto-extended locks whose leases the watchdog lost, and the
  /// events asked for with `observe` that came meanwhile. `provider`
  /// is the lock's credentials function and `nodeProviders` those of the
  /// `redis_nodes` entries, by index, each wrapped by the facade.
  #[napi(
    constructor,
    ts_args_type = "options: unknown, onLost: (locks: bigint[], events: LockEvent[]) => void, provider?: () => Promise<unknown>, nodeProviders?: Array<(() => Promise<unknown>) | undefined>"
  )]
  pub fn new(
    env: Env,
    options: Unknown,
    on_lost: Function<(Vec<u64>, Vec<LockEvent>), ()>,
    provider: Option<credentials::ProviderFunction>,
    node_providers: Option<Vec<Option<credentials::ProviderFunction>>>,
  ) -> Result<Self> {
    guarded(|| {
      let lookup = |name: &str| std::env::var(name).ok();
      let mut config = options::lock_config(&read(&options)?, &lookup).map_err(invalid_arg)?;
      credentials::attach(&mut config, provider, node_providers.unwrap_or_default())
        .map_err(|e| invalid_arg(e.reason.clone()))?;
      let completions =
        Completions::new(&env, on_lost).map_err(|e| LockError::Internal(e.reason))?;
      let (losses, events) = (completions.clone(), completions.clone());
      let on_lost = Box::new(move |lock| losses.lost(lock));
      let on_event = Box::new(move |event| events.event(event));
      let engine = Engine::new(config, on_lost, on_event)?;
      Ok(LockCore {
        engine,
        completions,
      })
    })
  }

  /// Acquires `resource` (one name or a list) for `ttlMs`: the lock, or
  /// `null` when another owner holds it. A `cancel` switch makes the call
  /// abortable; `onDecided` is told what decided it.
  #[napi(
    ts_args_type = "resource: unknown, ttlMs: unknown, options: unknown, cancel?: Cancel | undefined | null, onDecided?: ((decision: Decision) => void) | undefined | null",
    ts_return_type = "Promise<Acquired | null>"
  )]
  pub fn acquire<'env>(
    &self,
    env: &'env Env,
    resource: Unknown,
    ttl_ms: Unknown,
    options: Unknown,
    cancel: Option<&Cancel>,
    on_decided: Option<Function<Decision, ()>>,
  ) -> Result<PromiseRaw<'env, Option<Acquired>>> {
    let cancel = cancel.map(|cancel| cancel.abort.subscribe());
    let detail = on_decided.is_some();
    self.completions.call(env, on_decided, || {
      let config = self.engine.config();
      let resources = options::resources(&read(&resource)?).map_err(invalid_arg)?;
      let ttl_ms =
        options::ttl_argument(&read(&ttl_ms)?, config.lock_ttl_ms).map_err(invalid_arg)?;
      let options =
        options::acquire_options(&read(&options)?, config.retry).map_err(invalid_arg)?;
      let acquiring = self.engine.acquire(&resources, ttl_ms, options, cancel);
      let engine = self.engine.clone();
      Ok(async move { finished(&engine, acquiring.await, detail) })
    })
  }

  /// Extends lock `lock` to `ttlMs` (its acquire TTL when undefined): the
  /// new validity, or `null` when the lease is lost.
  #[napi(
    ts_args_type = "lock: bigint, ttlMs: unknown, onDecided?: ((decision: Decision) => void) | undefined | null",
    ts_return_type = "Promise<Validity | null>"
  )]
  pub fn extend<'env>(
    &self,
    env: &'env Env,
    lock: BigInt,
    ttl_ms: Unknown,
    on_decided: Option<Function<Decision, ()>>,
  ) -> Result<PromiseRaw<'env, Option<Validity>>> {
    let detail = on_decided.is_some();
    self.completions.call(env, on_decided, || {
      let ttl_ms = match read(&ttl_ms)? {
        Raw::Undefined => None,
        other => Some(options::ttl_argument(&other, 0).map_err(invalid_arg)?),
      };
      let extending = self.engine.extend(lock.get_u64().1, ttl_ms);
      let engine = self.engine.clone();
      Ok(async move { finished(&engine, extending.await, detail) })
    })
  }

  /// Releases lock `lock`: whether a majority still held it.
  #[napi(
    ts_args_type = "lock: bigint, onDecided?: ((decision: Decision) => void) | undefined | null"
  )]
  pub fn release<'env>(
    &self,
    env: &'env Env,
    lock: BigInt,
    on_decided: Option<Function<Decision, ()>>,
  ) -> Result<PromiseRaw<'env, bool>> {
    let detail = on_decided.is_some();
    self.completions.call(env, on_decided, || {
      // Issued here, as acquire and extend are: a call made after this one
      // reaches every node after it.
      let releasing = self.engine.release(lock.get_u64().1);
      let engine = self.engine.clone();
      Ok(async move { finished(&engine, releasing.await, detail) })
    })
  }

  /// What each node holds for `resource` (one name).
  #[napi(ts_args_type = "resource: unknown")]
  pub fn inspect<'env>(
    &self,
    env: &'env Env,
    resource: Unknown,
  ) -> Result<PromiseRaw<'env, LockInfo>> {
    self.completions.call(env, None, || {
      let resource = match options::resources(&read(&resource)?)
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
      Ok(async move { engine.inspect(&resource).await.map(Mirror::mirror).into() })
    })
  }

  /// Pings every node and asks what it tells of itself; counts its lock
  /// keys when the options ask.
  #[napi(ts_args_type = "options?: unknown")]
  pub fn health<'env>(
    &self,
    env: &'env Env,
    options: Unknown,
  ) -> Result<PromiseRaw<'env, HealthReport>> {
    self.completions.call(env, None, || {
      let options = options::health_options(&read(&options)?).map_err(invalid_arg)?;
      let engine = self.engine.clone();
      Ok(async move { engine.health(options).await.map(Mirror::mirror).into() })
    })
  }

  /// What this lock did so far: a snapshot of its counts and nodes.
  #[napi]
  pub fn stats(&self) -> Result<Stats> {
    guarded(|| Ok(self.engine.stats().mirror()))
  }

  /// Which events `onLost` is told from now on: each watchdog extension
  /// (`watchdog`), each node's change of state (`nodes`).
  #[napi]
  pub fn observe(&self, watchdog: bool, nodes: bool) {
    self.engine.observe(watchdog, nodes);
  }

  /// Refuses new calls from now on; resolves once held locks are released
  /// and connections closed.
  #[napi(ts_return_type = "Promise<void>")]
  pub fn close<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
    self.completions.call(env, None, || {
      let closing = self.engine.close();
      Ok(async move {
        closing.await;
        Ok(()).into()
      })
    })
  }
}
