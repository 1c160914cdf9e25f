//! The one place where engine errors become JavaScript errors: an `Error`
//! with the contract's `code`, and `nodeErrors` on `ERR_QUORUM_UNAVAILABLE`.

use napi::bindgen_prelude::ToNapiValue;
use napi::sys;

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

pub fn from_engine(error: LockError) -> napi::Error<Code> {
  napi::Error::new(Code(error.code()), error.to_string())
}

/// Builds the JS error for a rejected promise.
///
/// # Safety
/// Call on the JS thread of `env`.
pub unsafe fn to_js(env: sys::napi_env, error: &LockError) -> napi::Result<sys::napi_value> {
  let mut value = std::ptr::null_mut();
  // SAFETY: Node-API calls on the JS thread, on values created here.
  unsafe {
    let code = ToNapiValue::to_napi_value(env, error.code())?;
    let message = ToNapiValue::to_napi_value(env, error.to_string())?;
    check(sys::napi_create_error(env, code, message, &mut value))?;
    if let LockError::QuorumUnavailable { node_errors, .. } = error {
      let mut list = std::ptr::null_mut();
      check(sys::napi_create_array_with_length(
        env,
        node_errors.len(),
        &mut list,
      ))?;
      for (i, node_error) in node_errors.iter().enumerate() {
        let mut entry = std::ptr::null_mut();
        check(sys::napi_create_object(env, &mut entry))?;
        set(
          env,
          entry,
          c"node",
          ToNapiValue::to_napi_value(env, node_error.node.as_str())?,
        )?;
        set(
          env,
          entry,
          c"message",
          ToNapiValue::to_napi_value(env, node_error.message.as_str())?,
        )?;
        check(sys::napi_set_element(env, list, i as u32, entry))?;
      }
      set(env, value, c"nodeErrors", list)?;
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
