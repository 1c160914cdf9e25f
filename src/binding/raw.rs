//! A plain Rust copy of a JavaScript value, read key by key from the raw
//! object, so that the options parser can see every key (snake_case,
//! camelCase, unknown ones) and be tested without Node.

use napi::bindgen_prelude::{Array, FromNapiValue, Object};
use napi::{JsValue, Unknown, ValueType};

#[derive(Clone, Debug, PartialEq)]
pub enum Raw {
  Undefined,
  Null,
  Bool(bool),
  Number(f64),
  String(String),
  Array(Vec<Raw>),
  Object(Vec<(String, Raw)>),
  /// A function, symbol, bigint or external, by type name.
  Other(&'static str),
}

/// Objects nested deeper than this are not options: reading stops there.
const MAX_DEPTH: usize = 4;

impl Raw {
  pub fn read(value: &Unknown) -> napi::Result<Raw> {
    Self::read_at(value, 0)
  }

  fn read_at(value: &Unknown, depth: usize) -> napi::Result<Raw> {
    // SAFETY: each cast below matches the type `get_type` just reported.
    unsafe {
      Ok(match value.get_type()? {
        ValueType::Undefined => Raw::Undefined,
        ValueType::Null => Raw::Null,
        ValueType::Boolean => Raw::Bool(value.cast::<bool>()?),
        ValueType::Number => Raw::Number(value.cast::<f64>()?),
        ValueType::String => Raw::String(value.cast::<String>()?),
        ValueType::Object if depth >= MAX_DEPTH => Raw::Other("deeply nested object"),
        ValueType::Object if value.is_array()? => {
          let array = value.cast::<Array>()?;
          let mut items = Vec::with_capacity(array.len() as usize);
          for i in 0..array.len() {
            let item = array
              .get::<Unknown>(i)?
              .map_or(Ok(Raw::Undefined), |v| Self::read_at(&v, depth + 1))?;
            items.push(item);
          }
          Raw::Array(items)
        }
        ValueType::Object => {
          let object = value.cast::<Object>()?;
          let mut entries = Vec::new();
          for key in Object::keys(&object)? {
            let item = object
              .get::<Unknown>(&key)?
              .map_or(Ok(Raw::Undefined), |v| Self::read_at(&v, depth + 1))?;
            entries.push((key, item));
          }
          Raw::Object(entries)
        }
        ValueType::Function => Raw::Other("function"),
        ValueType::Symbol => Raw::Other("symbol"),
        ValueType::BigInt => Raw::Other("bigint"),
        _ => Raw::Other("external value"),
      })
    }
  }

  /// Reads a JSON text (the `REDIS_INSTANCES` variable) into the same shape.
  pub fn from_json(text: &str) -> Result<Raw, String> {
    let value: serde_json::Value =
      serde_json::from_str(text).map_err(|e| format!("is not valid JSON ({e})"))?;
    Ok(Self::from_json_value(value))
  }

  fn from_json_value(value: serde_json::Value) -> Raw {
    use serde_json::Value;
    match value {
      Value::Null => Raw::Null,
      Value::Bool(b) => Raw::Bool(b),
      Value::Number(n) => Raw::Number(n.as_f64().unwrap_or(f64::NAN)),
      Value::String(s) => Raw::String(s),
      Value::Array(items) => Raw::Array(items.into_iter().map(Self::from_json_value).collect()),
      Value::Object(map) => Raw::Object(
        map
          .into_iter()
          .map(|(k, v)| (k, Self::from_json_value(v)))
          .collect(),
      ),
    }
  }

  /// What a message calls this value: its type, and the value itself when
  /// it is short and cannot be a secret.
  pub fn describe(&self) -> String {
    match self {
      Raw::Undefined => "undefined".into(),
      Raw::Null => "null".into(),
      Raw::Bool(b) => format!("boolean {b}"),
      Raw::Number(n) => format!("number {n}"),
      Raw::String(s) => format!("string '{}'", crate::engine::node::printable(s)),
      Raw::Array(items) => format!("an array of {}", items.len()),
      Raw::Object(_) => "an object".into(),
      Raw::Other(kind) => format!("a {kind}"),
    }
  }
}

impl FromNapiValue for Raw {
  unsafe fn from_napi_value(
    env: napi::sys::napi_env,
    value: napi::sys::napi_value,
  ) -> napi::Result<Self> {
    // SAFETY: napi hands over a live value of this env.
    let unknown = unsafe { Unknown::from_napi_value(env, value)? };
    Raw::read(&unknown)
  }
}
