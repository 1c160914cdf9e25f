//! The one place where failures become JavaScript errors: an `Error` with
//! the contract's `code`, and `nodeErrors` on `ERR_QUORUM_UNAVAILABLE`.

use napi::bindgen_prelude::ToNapiValue;
use napi::sys;

use super::shapes::{Mirror, NodeError};
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

/// Builds the JS error a promise rejects with.
///
/// # Safety
/// Call on the JS thread of `env`.
pub unsafe fn to_js(env: sys::napi_env, error: LockError) -> napi::Result<sys::napi_value> {
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
