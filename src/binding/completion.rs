//! How results cross back to JavaScript without a threadsafe function per
//! call: the I/O runtime pushes finished calls onto one queue per lock, and
//! only the push that finds the queue empty wakes the JS thread. One wake-up
//! delivers every result finished by then, as one flat array.
//!
//! The wake-up function is unreferenced while nothing is in flight, so an
//! idle lock never keeps Node's event loop alive.

use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::{Function, ToNapiValue, Unknown};
use napi::sys;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, Status};

use super::errors::check;
use crate::engine::error::LockError;
use crate::engine::lock::{Acquired, HealthReport, LockInfo, Validity};

/// What one finished call delivers, by the request id JavaScript gave it.
pub enum Outcome {
  Acquired(Option<Acquired>),
  Extended(Option<Validity>),
  Released(bool),
  Closed,
  Inspected(LockInfo),
  Health(HealthReport),
  Failed(LockError),
  /// Not a call's result: the watchdog lost the lease of this lock.
  Lost(u64),
}

/// The slot layout per result in the delivered array; `index.js` reads the
/// same constants.
const SLOTS: u32 = 8;
const ACQUIRED: u32 = 0;
const NOT_ACQUIRED: u32 = 1;
const EXTENDED: u32 = 2;
const RELEASED: u32 = 3;
const CLOSED: u32 = 4;
const FAILED: u32 = 5;
const LOST: u32 = 6;
const REPORT: u32 = 7;
/// The request id of events, which answer no call.
const EVENT: u32 = 0;

pub struct Batch(Vec<(u32, Outcome)>);

type Wake = ThreadsafeFunction<(), Unknown<'static>, Batch, Status, false, true>;

struct Queue {
  finished: Mutex<Vec<(u32, Outcome)>>,
  in_flight: AtomicU32,
  raw: AtomicPtr<sys::napi_threadsafe_function__>,
}

/// The queue and the wake-up function of one lock; cheap to clone into tasks.
#[derive(Clone)]
pub struct Completions {
  queue: Arc<Queue>,
  wake: Arc<Wake>,
}

impl Completions {
  /// `deliver` is called on the JS thread with each batch.
  pub fn new(deliver: Function<Batch, Unknown<'static>>) -> napi::Result<Self> {
    let queue = Arc::new(Queue {
      finished: Mutex::new(Vec::new()),
      in_flight: AtomicU32::new(0),
      raw: AtomicPtr::new(std::ptr::null_mut()),
    });
    let drained = queue.clone();
    let wake: Wake = deliver
      .build_threadsafe_function::<()>()
      .callee_handled::<false>()
      .weak::<true>()
      .build_callback(move |ctx| {
        let batch =
          std::mem::take(&mut *drained.finished.lock().unwrap_or_else(|e| e.into_inner()));
        let left = drained
          .in_flight
          .fetch_sub(batch.len() as u32, Ordering::Relaxed)
          - batch.len() as u32;
        if left == 0 && !batch.is_empty() {
          // SAFETY: called on the JS thread that owns the threadsafe function.
          unsafe {
            sys::napi_unref_threadsafe_function(ctx.env.raw(), drained.raw.load(Ordering::Relaxed))
          };
        }
        Ok(Batch(batch))
      })?;
    queue.raw.store(wake.raw(), Ordering::Relaxed);
    Ok(Completions {
      queue,
      wake: Arc::new(wake),
    })
  }

  /// Counts a call as in flight; the first one keeps the event loop alive
  /// until its result is delivered. Call on the JS thread only.
  pub fn start(&self, env: &Env) {
    if self.queue.in_flight.fetch_add(1, Ordering::Relaxed) == 0 {
      // SAFETY: called on the JS thread that owns the threadsafe function.
      unsafe { sys::napi_ref_threadsafe_function(env.raw(), self.wake.raw()) };
    }
  }

  /// Queues an event that answers no call; from any thread. It is
  /// delivered with the next wake-up, and does not keep Node alive.
  pub fn event(&self, outcome: Outcome) {
    self.finish(EVENT, outcome);
  }

  /// Queues a result; from any thread.
  pub fn finish(&self, request: u32, outcome: Outcome) {
    let was_empty = {
      let mut finished = self
        .queue
        .finished
        .lock()
        .unwrap_or_else(|e| e.into_inner());
      finished.push((request, outcome));
      finished.len() == 1
    };
    if was_empty {
      self.wake.call((), ThreadsafeFunctionCallMode::NonBlocking);
    }
  }
}

impl ToNapiValue for Batch {
  unsafe fn to_napi_value(env: sys::napi_env, batch: Self) -> napi::Result<sys::napi_value> {
    let mut array = std::ptr::null_mut();
    // SAFETY: plain Node-API calls on the JS thread with values they created.
    unsafe {
      check(sys::napi_create_array_with_length(
        env,
        batch.0.len() * SLOTS as usize,
        &mut array,
      ))?;
      for (i, (request, outcome)) in batch.0.into_iter().enumerate() {
        let base = i as u32 * SLOTS;
        let fencing_token = match &outcome {
          Outcome::Acquired(Some(lock)) => lock.fencing_token,
          _ => None,
        };
        let (kind, numbers, tail) = match outcome {
          Outcome::Acquired(Some(lock)) => (
            ACQUIRED,
            [
              lock.id as f64,
              lock.validity.ms as f64,
              lock.validity.expires_at_epoch_ms,
              f64::from(lock.attempts),
              // The token follows as a decimal string (below): a double
              // would round it above 2^53.
              0.0,
            ],
            ToNapiValue::to_napi_value(env, &*lock.value)?,
          ),
          Outcome::Acquired(None) => (NOT_ACQUIRED, [0.0; 5], null(env)?),
          Outcome::Extended(Some(validity)) => (
            EXTENDED,
            [
              1.0,
              validity.ms as f64,
              validity.expires_at_epoch_ms,
              0.0,
              0.0,
            ],
            null(env)?,
          ),
          Outcome::Extended(None) => (EXTENDED, [0.0; 5], null(env)?),
          Outcome::Released(released) => (
            RELEASED,
            [f64::from(u8::from(released)), 0.0, 0.0, 0.0, 0.0],
            null(env)?,
          ),
          Outcome::Closed => (CLOSED, [0.0; 5], null(env)?),
          Outcome::Inspected(info) => (
            REPORT,
            [0.0; 5],
            ToNapiValue::to_napi_value(env, super::reports::LockInfo::from(info))?,
          ),
          Outcome::Health(report) => (
            REPORT,
            [0.0; 5],
            ToNapiValue::to_napi_value(env, super::reports::HealthReport::from(report))?,
          ),
          Outcome::Failed(error) => (FAILED, [0.0; 5], super::errors::to_js(env, &error)?),
          Outcome::Lost(lock) => (LOST, [lock as f64, 0.0, 0.0, 0.0, 0.0], null(env)?),
        };
        check(sys::napi_set_element(
          env,
          array,
          base,
          u32::to_napi_value(env, request)?,
        ))?;
        check(sys::napi_set_element(
          env,
          array,
          base + 1,
          u32::to_napi_value(env, kind)?,
        ))?;
        for (offset, number) in numbers.into_iter().enumerate() {
          check(sys::napi_set_element(
            env,
            array,
            base + 2 + offset as u32,
            f64::to_napi_value(env, number)?,
          ))?;
        }
        if let Some(token) = fencing_token {
          check(sys::napi_set_element(
            env,
            array,
            base + 6,
            ToNapiValue::to_napi_value(env, token.to_string())?,
          ))?;
        }
        check(sys::napi_set_element(env, array, base + 7, tail))?;
      }
    }
    Ok(array)
  }
}

unsafe fn null(env: sys::napi_env) -> napi::Result<sys::napi_value> {
  let mut value = std::ptr::null_mut();
  // SAFETY: a plain Node-API call on the JS thread.
  check(unsafe { sys::napi_get_null(env, &mut value) })?;
  Ok(value)
}
