//! The one place where failures become JavaScript errors: an `Error` with
//! the contract's `code`, `nodeErrors` on `ERR_QUORUM_UNAVAILABLE`, and for
//! a call that asked for detail its attempts and per-node votes.

use napi::bindgen_prelude::ToNapiValue;
use napi::sys;

use super::shapes::{Mirror, NodeError, NodeVote};
use crate::engine::error::LockError;

/// The code of an error thrown synchronously (a bad option or argument).
pub struct Code(&'static str);

impl AsRef<str> for Code {
  fn as_ref(&self) -> &str {
    self.0
  }
}

impl From<napi::Status> for Code {
  fn from(_: napi::Status) -> Self {
    Code("ERR_INTERNAL")
  }
}

pub fn invalid_arg(message: String) -> napi::Error<Code> {
  napi::Error::new(Code("ERR_INVALID_ARG"), message)
}

impl From<LockError> for napi::Error<Code> {
  fn from(error: LockError) -> Self {
    napi::Error::new(Code(error.code()), error.to_string())
  }
}

/// Why a call's promise rejects: the engine's error, with the call's
/// attempts and votes when it asked.
pub struct Failure {
  pub error: LockError,
  pub detail: Option<Detail>,
}

/// What decided a call, for a caller that asked.
pub struct Detail {
  pub attempts: u32,
  pub votes: Vec<NodeVote>,
}

impl From<LockError> for Failure {
  fn from(error: LockError) -> Self {
    Failure {
      error,
      detail: None,
    }
  }
}

/// Builds the JS error a promise rejects with.
///
/// # Safety
/// Call on the JS thread of `env`.
pub unsafe fn to_js(env: sys::napi_env, failure: Failure) -> napi::Result<sys::napi_value> {
  let Failure { error, detail } = failure;
  let mut value = std::ptr::null_mut();
  // SAFETY: Node-API calls on the JS thread, on values created here.
  unsafe {
    let code = ToNapiValue::to_napi_value(env, error.code())?;
    let message = ToNapiValue::to_napi_value(env, error.to_string())?;
    check(sys::napi_create_error(env, code, message, &mut value))?;
    if let LockError::QuorumUnavailable { node_errors, .. } = error {
      let node_errors: Vec<NodeError> = node_errors.mirror();
      set(
        env,
        value,
        c"nodeErrors",
        ToNapiValue::to_napi_value(env, node_errors)?,
      )?;
    }
    if let Some(Detail { attempts, votes }) = detail {
      set(
        env,
        value,
        c"attempts",
        ToNapiValue::to_napi_value(env, attempts)?,
      )?;
      set(
        env,
        value,
        c"votes",
        ToNapiValue::to_napi_value(env, votes)?,
      )?;
    }
  }
  Ok(value)
}

unsafe fn set(
  env: sys::napi_env,
  object: sys::napi_value,
  key: &std::ffi::CStr,
  value: sys::napi_value,
) -> napi::Result<()> {
  // SAFETY: the caller is on the JS thread with live values.
  check(unsafe { sys::napi_set_named_property(env, object, key.as_ptr(), value) })
}

pub fn check(status: sys::napi_status) -> napi::Result<()> {
  if status == sys::Status::napi_ok {
    Ok(())
  } else {
    Err(napi::Error::new(
      napi::Status::from(status),
      "a Node-API call failed",
    ))
  }
}
