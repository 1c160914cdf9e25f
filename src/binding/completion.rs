//! How a call crosses into Rust and its result back without a threadsafe
//! function per call. A call starts on the JavaScript thread (its arguments
//! read, its first commands issued) and returns a promise made there; its
//! future runs on the I/O runtime and queues its result. Only the result
//! that finds the queue empty wakes the JavaScript thread, through one
//! threadsafe function per lock, which then settles every promise whose
//! result is queued by then: under load one wake-up settles many calls.
//!
//! The threadsafe function keeps Node's event loop alive exactly while a
//! promise it will settle is pending: counted when the promise is made,
//! uncounted when it is settled, both on the JavaScript thread. Events (a
//! lease the watchdog lost) ride the same queue and are not counted, so an
//! idle lock never keeps the process alive.
//!
//! A call may be given an `onDecided` function: it is told what decided the
//! call (a `Decision`) on the JavaScript thread right before the promise
//! settles. Only such a call builds one.
//!
//! A panic while a call starts, while its future runs, or while its result
//! becomes a JavaScript value fails it with `ERR_INTERNAL`.

use std::any::Any;
use std::ffi::c_void;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use futures_util::FutureExt;
use napi::bindgen_prelude::{Function, JsValue, PromiseRaw, ToNapiValue};
use napi::{sys, Env};

use super::errors::{check, to_js, Code};
use super::shapes::{Decision, LockEvent, Mirror};
use crate::engine::error::LockError;
use crate::engine::observe;

/// One I/O thread serves every lock in the process: the work is waiting on
/// sockets, and one thread keeps every hand-off between tasks on one core.
pub fn runtime() -> &'static tokio::runtime::Runtime {
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

/// Runs a synchronous entry point; a panic in it fails with `ERR_INTERNAL`.
pub fn guarded<T, E: From<LockError>>(entry: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
  catch_unwind(AssertUnwindSafe(entry)).unwrap_or_else(|panic| Err(internal(&*panic).into()))
}

/// Runs a call's future; a panic in it fails with `ERR_INTERNAL`.
pub async fn catching<T>(future: impl Future<Output = Finished<T>>) -> Finished<T> {
  AssertUnwindSafe(future)
    .catch_unwind()
    .await
    .unwrap_or_else(|panic| Err(internal(&*panic)).into())
}

/// What a call's future ends with: its result and, for a caller that
/// asked, what decided it.
pub struct Finished<T> {
  pub result: Result<T, LockError>,
  pub decision: Option<Decision>,
}

impl<T> From<Result<T, LockError>> for Finished<T> {
  fn from(result: Result<T, LockError>) -> Self {
    Finished {
      result,
      decision: None,
    }
  }
}

/// The error a panic becomes: `ERR_INTERNAL`, with the panic's message.
fn internal(panic: &(dyn Any + Send)) -> LockError {
  LockError::Internal(panic_message(panic))
}

/// The message a panic was raised with.
fn panic_message(panic: &(dyn Any + Send)) -> String {
  match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
    (Some(message), _) => message.to_string(),
    (_, Some(message)) => message.clone(),
    _ => "a panic without a message".into(),
  }
}

/// A Node-API handle that other threads carry but only the JavaScript
/// thread uses (or, for the threadsafe function, that any thread may call).
#[derive(Clone, Copy)]
struct Handle<T>(T);

// SAFETY: see the type's documentation; no thread but the JavaScript
// thread dereferences one, except through the thread-safe calls.
unsafe impl<T> Send for Handle<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for Handle<T> {}

/// Work for the JavaScript thread.
enum Job {
  /// Settles a call's promise with its result, telling its `onDecided`
  /// function first, if it has one.
  Settle(
    Handle<sys::napi_deferred>,
    Box<dyn Settle>,
    Option<Handle<sys::napi_ref>>,
  ),
  /// The watchdog lost the lease of this lock.
  Lost(u64),
  /// An event the caller asked for.
  Event(LockEvent),
}

/// A finished call, as JavaScript values: the decision, if one was made,
/// and the value to resolve with (`Ok`) or the error to reject with (`Err`).
type Settled = (
  Option<sys::napi_value>,
  Result<sys::napi_value, sys::napi_value>,
);

/// A finished call's result, to become JavaScript values.
trait Settle: Send {
  /// # Safety
  /// Call on the JS thread of `env`.
  unsafe fn into_js(self: Box<Self>, env: sys::napi_env) -> napi::Result<Settled>;
}

impl<T: ToNapiValue + Send> Settle for Finished<T> {
  unsafe fn into_js(self: Box<Self>, env: sys::napi_env) -> napi::Result<Settled> {
    let Finished { result, decision } = *self;
    // SAFETY: the caller is on the JS thread.
    unsafe {
      let decision = match decision {
        Some(decision) => Some(Decision::to_napi_value(env, decision)?),
        None => None,
      };
      let settled = match result {
        Ok(value) => Ok(T::to_napi_value(env, value)?),
        Err(error) => Err(to_js(env, error)?),
      };
      Ok((decision, settled))
    }
  }
}

struct Queue {
  jobs: Mutex<Vec<Job>>,
  /// Promises made and not yet settled; the JavaScript thread alone reads
  /// and writes it.
  pending: AtomicU32,
  /// Set once, right after the function is made and before any call.
  tsfn: AtomicPtr<sys::napi_threadsafe_function__>,
  /// The function told which auto-extended locks the watchdog lost, and
  /// the events asked for.
  on_lost: Handle<sys::napi_ref>,
  /// Whether Node finalized the threadsafe function, after which nothing
  /// may call or release it: at the environment's teardown it does so
  /// while calls may still be under way, and before the lock's own
  /// finalizer runs.
  finalized: Mutex<bool>,
}

impl Queue {
  fn jobs(&self) -> MutexGuard<'_, Vec<Job>> {
    self.jobs.lock().unwrap_or_else(|e| e.into_inner())
  }

  fn tsfn(&self) -> sys::napi_threadsafe_function {
    self.tsfn.load(Ordering::Relaxed)
  }
}

/// Releases the threadsafe function once the last handle to it is gone.
struct Wake {
  queue: Arc<Queue>,
}

impl Drop for Wake {
  fn drop(&mut self) {
    let finalized = self
      .queue
      .finalized
      .lock()
      .unwrap_or_else(|e| e.into_inner());
    if !*finalized {
      // SAFETY: releasing is allowed from any thread, and the function is
      // not finalized (`finalize` waits for this lock); nothing calls it
      // after.
      unsafe {
        sys::napi_release_threadsafe_function(
          self.queue.tsfn(),
          sys::ThreadsafeFunctionReleaseMode::release,
        );
      }
    }
  }
}

/// The completion queue of one lock; cheap to clone into tasks.
#[derive(Clone)]
pub struct Completions(Arc<Wake>);

impl Completions {
  /// `on_lost` is called on the JS thread with the ids of the
  /// auto-extended locks whose leases the watchdog lost and the events
  /// that came meanwhile.
  pub fn new(env: &Env, on_lost: Function<(Vec<u64>, Vec<LockEvent>), ()>) -> napi::Result<Self> {
    let env = env.raw();
    let mut on_lost_ref = ptr::null_mut();
    let mut name = ptr::null_mut();
    let mut tsfn = ptr::null_mut();
    // SAFETY: Node-API calls on the JS thread (a constructor runs there).
    unsafe {
      check(sys::napi_create_reference(
        env,
        on_lost.raw(),
        1,
        &mut on_lost_ref,
      ))?;
      let label = "redis-quorum-lock completions";
      check(sys::napi_create_string_utf8(
        env,
        label.as_ptr().cast(),
        label.len() as isize,
        &mut name,
      ))?;
      // The queue is the threadsafe function's context; it owns one count
      // of it, given back when the function is finalized.
      let queue = Arc::new(Queue {
        jobs: Mutex::new(Vec::new()),
        pending: AtomicU32::new(0),
        tsfn: AtomicPtr::new(ptr::null_mut()),
        on_lost: Handle(on_lost_ref),
        finalized: Mutex::new(false),
      });
      let context = Arc::into_raw(queue.clone()) as *mut c_void;
      let created = sys::napi_create_threadsafe_function(
        env,
        ptr::null_mut(),
        ptr::null_mut(),
        name,
        0,
        1,
        context,
        Some(finalize),
        context,
        Some(deliver),
        &mut tsfn,
      );
      if let Err(error) = check(created) {
        drop(Arc::from_raw(context as *const Queue));
        sys::napi_delete_reference(env, on_lost_ref);
        return Err(error);
      }
      queue.tsfn.store(tsfn, Ordering::Relaxed);
      let completions = Completions(Arc::new(Wake { queue }));
      // Nothing is in flight yet: the function must not hold Node alive.
      check(sys::napi_unref_threadsafe_function(env, tsfn))?;
      Ok(completions)
    }
  }

  /// Starts a call on this, the JavaScript thread: `start` reads its
  /// arguments and issues its first commands, within the I/O runtime's
  /// context, or throws (a bad argument); the future it returns finishes
  /// on the runtime and settles the promise, telling `on_decided` first.
  pub fn call<'env, T, F>(
    &self,
    env: &'env Env,
    on_decided: Option<Function<Decision, ()>>,
    start: impl FnOnce() -> Result<F, napi::Error<Code>>,
  ) -> Result<PromiseRaw<'env, T>, napi::Error<Code>>
  where
    T: ToNapiValue + Send + 'static,
    F: Future<Output = Finished<T>> + Send + 'static,
  {
    let future = {
      let _runtime = runtime().enter();
      guarded(start)?
    };
    let mut deferred = ptr::null_mut();
    let mut promise = ptr::null_mut();
    let mut told = ptr::null_mut();
    // SAFETY: Node-API calls on the JS thread.
    unsafe {
      check(sys::napi_create_promise(
        env.raw(),
        &mut deferred,
        &mut promise,
      ))
      .map_err(|error| LockError::Internal(error.reason))?;
      if let Some(on_decided) = &on_decided {
        check(sys::napi_create_reference(
          env.raw(),
          on_decided.raw(),
          1,
          &mut told,
        ))
        .map_err(|error| LockError::Internal(error.reason))?;
      }
    }
    self.count(env);
    let completions = self.clone();
    let (deferred, told) = (Handle(deferred), on_decided.map(|_| Handle(told)));
    runtime().spawn(async move {
      let finished = catching(future).await;
      completions.push(Job::Settle(deferred, Box::new(finished), told));
    });
    Ok(PromiseRaw::new(env.raw(), promise))
  }

  /// Tells JavaScript that the watchdog lost the lease of lock `id`; from
  /// any thread.
  pub fn lost(&self, id: u64) {
    self.push(Job::Lost(id));
  }

  /// Tells JavaScript an event it asked for; from any thread.
  pub fn event(&self, event: observe::LockEvent) {
    self.push(Job::Event(event.mirror()));
  }

  /// Counts a promise as pending; the first one keeps the event loop alive
  /// until it is settled.
  fn count(&self, env: &Env) {
    let queue = &self.0.queue;
    if queue.pending.fetch_add(1, Ordering::Relaxed) == 0 {
      // SAFETY: on the JS thread that owns the threadsafe function.
      unsafe { sys::napi_ref_threadsafe_function(env.raw(), queue.tsfn()) };
    }
  }

  /// Queues a job; from any thread. Only the job that finds the queue
  /// empty wakes the JS thread: the jobs queued before it runs go along.
  fn push(&self, job: Job) {
    let queue = &self.0.queue;
    let was_empty = {
      let mut jobs = queue.jobs();
      jobs.push(job);
      jobs.len() == 1
    };
    if was_empty {
      let finalized = queue.finalized.lock().unwrap_or_else(|e| e.into_inner());
      if !*finalized {
        // SAFETY: calling is allowed from any thread until the function is
        // finalized, which waits for this lock, or released, which waits
        // for `self` to go.
        unsafe {
          sys::napi_call_threadsafe_function(
            queue.tsfn(),
            ptr::null_mut(),
            sys::ThreadsafeFunctionCallMode::nonblocking,
          );
        }
      }
    }
  }
}

/// Runs every queued job, on the JS thread.
unsafe extern "C" fn deliver(
  env: sys::napi_env,
  _: sys::napi_value,
  context: *mut c_void,
  _: *mut c_void,
) {
  if env.is_null() {
    // Node is tearing the environment down: nothing can be settled.
    return;
  }
  // SAFETY: the context is the queue, alive until `finalize`.
  let queue = unsafe { &*(context as *const Queue) };
  let jobs = std::mem::take(&mut *queue.jobs());
  let mut settled = 0;
  let mut lost = Vec::new();
  let mut events = Vec::new();
  for job in jobs {
    match job {
      Job::Settle(deferred, result, told) => {
        // SAFETY: on the JS thread, with a deferred not settled before and
        // a reference not deleted before.
        unsafe { settle(env, deferred.0, result, told.map(|told| told.0)) };
        settled += 1;
      }
      Job::Lost(id) => lost.push(id),
      Job::Event(event) => events.push(event),
    }
  }
  if settled > 0 && queue.pending.fetch_sub(settled, Ordering::Relaxed) == settled {
    // SAFETY: on the JS thread that owns the threadsafe function.
    unsafe { sys::napi_unref_threadsafe_function(env, queue.tsfn()) };
  }
  if !lost.is_empty() || !events.is_empty() {
    // SAFETY: on the JS thread; the reference lives until `finalize`.
    unsafe { tell_lost(env, queue.on_lost.0, lost, events) };
  }
}

/// Resolves or rejects `deferred` with `result`, after telling the
/// referenced `told` function its decision (and deleting the reference). A
/// result that cannot become a JavaScript value, even by panicking, rejects
/// with `ERR_INTERNAL`; a `told` function that throws, with its exception.
unsafe fn settle(
  env: sys::napi_env,
  deferred: sys::napi_deferred,
  result: Box<dyn Settle>,
  told: Option<sys::napi_ref>,
) {
  // SAFETY: the caller is on the JS thread.
  let converted = catch_unwind(AssertUnwindSafe(|| unsafe { result.into_js(env) }));
  let (decision, mut settled) = match converted {
    Ok(Ok(settled)) => settled,
    Ok(Err(error)) => (None, Err(unsafe { internal_error(env, error.reason) })),
    Err(panic) => (
      None,
      Err(unsafe { internal_error(env, panic_message(&*panic)) }),
    ),
  };
  // SAFETY: Node-API calls on the JS thread; the reference lives until
  // deleted here, and a deferred is settled exactly once, here.
  unsafe {
    if let Some(told) = told {
      if let Some(decision) = decision {
        if let Some(thrown) = call_with(env, told, &[decision]) {
          settled = Err(thrown);
        }
      }
      sys::napi_delete_reference(env, told);
    }
    match settled {
      Ok(value) => sys::napi_resolve_deferred(env, deferred, value),
      Err(error) => sys::napi_reject_deferred(env, deferred, error),
    };
  }
}

/// Calls the referenced function with `arguments`; what it threw, if it
/// threw, taken off the environment so the promise can still settle.
unsafe fn call_with(
  env: sys::napi_env,
  function: sys::napi_ref,
  arguments: &[sys::napi_value],
) -> Option<sys::napi_value> {
  let mut callee = ptr::null_mut();
  let mut this = ptr::null_mut();
  // SAFETY: Node-API calls on the JS thread, with a live reference.
  unsafe {
    if sys::napi_get_reference_value(env, function, &mut callee) != sys::Status::napi_ok
      || sys::napi_get_undefined(env, &mut this) != sys::Status::napi_ok
    {
      return None;
    }
    let called = sys::napi_call_function(
      env,
      this,
      callee,
      arguments.len(),
      arguments.as_ptr(),
      ptr::null_mut(),
    );
    if called == sys::Status::napi_ok {
      return None;
    }
    let mut thrown = ptr::null_mut();
    let cleared = sys::napi_get_and_clear_last_exception(env, &mut thrown);
    (cleared == sys::Status::napi_ok && !thrown.is_null()).then_some(thrown)
  }
}

unsafe fn internal_error(env: sys::napi_env, message: String) -> sys::napi_value {
  // SAFETY: the caller is on the JS thread.
  unsafe { to_js(env, LockError::Internal(message)) }.unwrap_or(ptr::null_mut())
}

unsafe fn tell_lost(
  env: sys::napi_env,
  on_lost: sys::napi_ref,
  ids: Vec<u64>,
  events: Vec<LockEvent>,
) {
  // SAFETY: Node-API calls on the JS thread, with a live reference. What
  // the function throws is thrown again, for Node to report as uncaught.
  unsafe {
    let (Ok(ids), Ok(events)) = (
      Vec::<u64>::to_napi_value(env, ids),
      Vec::<LockEvent>::to_napi_value(env, events),
    ) else {
      return;
    };
    if let Some(thrown) = call_with(env, on_lost, &[ids, events]) {
      sys::napi_throw(env, thrown);
    }
  }
}

/// Frees the queue when the threadsafe function is finalized: released by
/// its last handle, or at the environment's teardown.
unsafe extern "C" fn finalize(env: sys::napi_env, data: *mut c_void, _: *mut c_void) {
  // SAFETY: `data` is the count of the queue given to the function.
  let queue = unsafe { Arc::from_raw(data as *const Queue) };
  *queue.finalized.lock().unwrap_or_else(|e| e.into_inner()) = true;
  if !env.is_null() {
    // SAFETY: on the JS thread, which finalizes.
    unsafe { sys::napi_delete_reference(env, queue.on_lost.0) };
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn internal_message<T>(result: Result<T, LockError>) -> String {
    match result {
      Err(LockError::Internal(message)) => message,
      _ => panic!("expected an internal error"),
    }
  }

  #[test]
  fn a_panic_in_a_synchronous_entry_point_fails_with_its_message() {
    let message = internal_message(guarded::<(), _>(|| panic!("the start broke")));
    assert!(message.contains("the start broke"), "{message}");
    let formatted = internal_message(guarded::<(), _>(|| panic!("{} of {}", 3, 4)));
    assert!(formatted.contains("3 of 4"), "{formatted}");
    assert_eq!(guarded::<_, LockError>(|| Ok(7)), Ok(7));
    assert_eq!(
      LockError::Internal(message).code(),
      "ERR_INTERNAL",
      "the code a caller sees"
    );
  }

  #[tokio::test]
  async fn a_panic_in_a_future_fails_with_its_message_and_the_runtime_goes_on() {
    let broken = async {
      tokio::task::yield_now().await;
      panic!("the future broke")
    };
    let message = internal_message::<()>(catching(broken).await.result);
    assert!(message.contains("the future broke"), "{message}");
    let in_a_task = tokio::spawn(catching::<()>(async { panic!("in a task") }));
    let joined = in_a_task.await.expect("the task ends normally");
    assert!(internal_message(joined.result).contains("in a task"));
    let fine = catching(async { Finished::from(Ok(())) }).await;
    assert_eq!(fine.result, Ok(()));
  }
}
