//! A plain Rust copy of a JavaScript value, read key by key from the raw
//! object, so that the options parser can see every key (snake_case,
//! camelCase, unknown ones) and be tested without Node.
//!
//! Reading is bounded before it starts: a list, an object or a string
//! larger than any argument of the library takes is kept as its size alone,
//! unread, so that `acquire(new Array(2 ** 32 - 1))` or a 100 MB name costs
//! no more than a small one; and one argument reads at most a fixed budget
//! of entries and characters in all, however it nests.

use napi::bindgen_prelude::{Array, FromNapiValue, JsObjectValue, Object};
use napi::{JsString, JsValue, Unknown, ValueType};

use crate::engine::config;

#[derive(Clone, Debug, PartialEq)]
pub enum Raw {
  Undefined,
  Null,
  Bool(bool),
  Number(f64),
  String(String),
  Array(Vec<Raw>),
  Object(Vec<(String, Raw)>),
  /// A string, list or object larger than any argument takes, by its size.
  TooLarge(Size),
  /// A function, symbol, bigint or external, by type name.
  Other(&'static str),
}

/// The size of a value too large to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
  /// A string of this many characters (UTF-16 code units, as JavaScript's
  /// `length` counts them).
  String(usize),
  /// A list of this many elements.
  Array(usize),
  /// An object of this many keys.
  Object(usize),
  /// An object with a key of this many characters.
  Key(usize),
}

/// Objects nested deeper than this are not options: reading stops there.
const MAX_DEPTH: usize = 4;
/// The longest list any argument is: the resources of one lock.
const MAX_ITEMS: usize = config::MAX_RESOURCES;
/// More keys than any argument has: metadata, the largest object, holds at
/// most 1,171 keys in its 8192 bytes of JSON (each takes at least `"k":"",`).
const MAX_KEYS: usize = 2048;
/// The longest string any argument is: a resource name, whose UTF-8 takes
/// at least one byte per UTF-16 unit.
const MAX_STRING: usize = config::MAX_RESOURCE_BYTES;
/// What one argument may hold in all (entries, and characters of its
/// strings and keys), whatever its nesting: twice what the largest valid
/// argument holds.
const BUDGET_ENTRIES: usize = 2 * MAX_KEYS;
const BUDGET_CHARACTERS: usize = 2 * config::MAX_RESOURCE_BYTES;

/// What is left of one argument's budget.
struct Reader {
  entries: usize,
  characters: usize,
}

impl Raw {
  pub fn read(value: &Unknown) -> napi::Result<Raw> {
    Reader {
      entries: BUDGET_ENTRIES,
      characters: BUDGET_CHARACTERS,
    }
    .read(value, 0)
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
  /// it cannot be a secret (a number, or a string that spells one or a
  /// boolean: the mistake of passing `'30000'` for `30000`).
  pub fn describe(&self) -> String {
    match self {
      Raw::Undefined => "undefined".into(),
      Raw::Null => "null".into(),
      Raw::Bool(b) => format!("boolean {b}"),
      Raw::Number(n) => format!("number {n}"),
      Raw::String(s) if spells_a_number_or_boolean(s) => format!("string '{s}'"),
      Raw::String(_) => "a string".into(),
      Raw::Array(items) => format!("a list of {}", items.len()),
      Raw::Object(_) => "an object".into(),
      Raw::TooLarge(Size::String(n)) => format!("a string of {n} characters"),
      Raw::TooLarge(Size::Array(n)) => format!("a list of {n}"),
      Raw::TooLarge(Size::Object(n)) => format!("an object of {n} keys"),
      Raw::TooLarge(Size::Key(n)) => format!("an object with a key of {n} characters"),
      Raw::Other(kind) => format!("a {kind}"),
    }
  }
}

fn spells_a_number_or_boolean(text: &str) -> bool {
  text.len() <= 24 && (text == "true" || text == "false" || text.trim().parse::<f64>().is_ok())
}

impl Reader {
  fn read(&mut self, value: &Unknown, depth: usize) -> napi::Result<Raw> {
    // SAFETY: each cast below matches the type `get_type` just reported.
    unsafe {
      Ok(match value.get_type()? {
        ValueType::Undefined => Raw::Undefined,
        ValueType::Null => Raw::Null,
        ValueType::Boolean => Raw::Bool(value.cast::<bool>()?),
        ValueType::Number => Raw::Number(value.cast::<f64>()?),
        ValueType::String => match self.string(value.cast::<JsString>()?)? {
          Ok(text) => Raw::String(text),
          Err(length) => Raw::TooLarge(Size::String(length)),
        },
        ValueType::Object if depth >= MAX_DEPTH => Raw::Other("deeply nested object"),
        ValueType::Object if value.is_array()? => self.array(value.cast::<Array>()?, depth)?,
        ValueType::Object => self.object(value.cast::<Object>()?, depth)?,
        ValueType::Function => Raw::Other("function"),
        ValueType::Symbol => Raw::Other("symbol"),
        ValueType::BigInt => Raw::Other("bigint"),
        _ => Raw::Other("external value"),
      })
    }
  }

  /// The text of `string`, or its length when that is more than is left.
  fn string(&mut self, string: JsString) -> napi::Result<Result<String, usize>> {
    // V8 keeps the UTF-16 length: asking for it reads nothing.
    let length = string.utf16_len()?;
    if length > MAX_STRING.min(self.characters) {
      return Ok(Err(length));
    }
    self.characters -= length;
    // SAFETY: `string` is a live JavaScript string of this env.
    let text = unsafe { String::from_napi_value(string.value().env, string.raw())? };
    Ok(Ok(text))
  }

  fn array(&mut self, array: Array, depth: usize) -> napi::Result<Raw> {
    let length = array.len() as usize;
    if length > MAX_ITEMS.min(self.entries) {
      return Ok(Raw::TooLarge(Size::Array(length)));
    }
    self.entries -= length;
    let mut items = Vec::with_capacity(length);
    for i in 0..array.len() {
      let item = array
        .get::<Unknown>(i)?
        .map_or(Ok(Raw::Undefined), |v| self.read(&v, depth + 1))?;
      items.push(item);
    }
    Ok(Raw::Array(items))
  }

  fn object(&mut self, object: Object, depth: usize) -> napi::Result<Raw> {
    // The names as `for...in` sees them, listed by V8 in one call; none is
    // read before their number is known.
    let names = object.get_property_names()?;
    let length = names.get_array_length()? as usize;
    if length > MAX_KEYS.min(self.entries) {
      return Ok(Raw::TooLarge(Size::Object(length)));
    }
    self.entries -= length;
    let mut entries = Vec::with_capacity(length);
    for i in 0..length as u32 {
      let name = names.get_element::<Unknown>(i)?;
      if name.get_type()? != ValueType::String {
        continue;
      }
      // SAFETY: `get_type` just reported a string.
      let key = match self.string(unsafe { name.cast::<JsString>()? })? {
        Ok(key) => key,
        Err(length) => return Ok(Raw::TooLarge(Size::Key(length))),
      };
      let item = object.get_property_unchecked::<Unknown, Unknown>(name)?;
      entries.push((key, self.read(&item, depth + 1)?));
    }
    Ok(Raw::Object(entries))
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

/// Shows at most 64 characters of caller input, with control characters
/// escaped, so a message stays one readable line. Only for input that
/// cannot be a secret: option keys, resource names, numbers.
pub fn printable(text: &str) -> String {
  let mut out: String = text.chars().take(64).flat_map(char::escape_debug).collect();
  if text.chars().nth(64).is_some() {
    out.push('…');
  }
  out
}

/// Raw values as the parsers' tests write them.
#[cfg(test)]
pub(super) mod build {
  use super::Raw;

  pub fn obj(entries: &[(&str, Raw)]) -> Raw {
    Raw::Object(
      entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect(),
    )
  }

  pub fn s(text: &str) -> Raw {
    Raw::String(text.into())
  }
}
