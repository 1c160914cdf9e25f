//! The one options parser: reads the caller's raw values (both spellings of
//! every key, environment defaults, `REDIS_INSTANCES` JSON) into the engine's
//! typed configuration, and names the key in every error.

use std::collections::HashMap;
use std::time::Duration;

use super::node_options::{nodes_from_env, nodes_from_option};
use super::raw::{printable, Raw, Size};
use super::spelling::{camel_case, suggestion};
use crate::engine::config::{
  self, AcquireOptions, LockConfig, Retries, RetryPolicy, MAX_DELAY_MS, MAX_KEY_PREFIX_BYTES,
  MAX_METADATA_BYTES, MAX_RESOURCES, MAX_RESOURCE_BYTES, MAX_TTL_MS,
};
use crate::engine::lock::HealthOptions;

/// Reads one environment variable; tests pass their own.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

const LOCK_OPTIONS: &[&str] = &[
  "redis_nodes",
  "lock_ttl_ms",
  "retry_count",
  "retry_delay_ms",
  "retry_jitter_ms",
  "drift_factor",
  "key_prefix",
  "connect_timeout_ms",
  "command_timeout_ms",
  "restart_quarantine",
  "max_ttl_ms",
  "credentials",
  // The facade's own (telemetry.js): it never reaches this parser, but a
  // misspelling of it is named as such.
  "telemetry",
];

const ACQUIRE_OPTIONS: &[&str] = &[
  "retry_count",
  "retry_delay_ms",
  "retry_jitter_ms",
  "auto_extend",
  "wait_ms",
  "fencing",
  "metadata",
];

const HEALTH_OPTIONS: &[&str] = &["lock_keys"];

/// The options a `DistributedLock` is constructed with.
pub fn lock_config(raw: &Raw, env: EnvLookup) -> Result<LockConfig, String> {
  let options = Options::read(raw, LOCK_OPTIONS, "options")?;
  let nodes = match options.get("redis_nodes") {
    Some((key, value)) => nodes_from_option(key, value)?,
    None => nodes_from_env(env)?,
  };
  let mut config = LockConfig::with_nodes(nodes);
  config.lock_ttl_ms = match options.get("lock_ttl_ms") {
    Some((key, value)) => ttl(key, value)?,
    None => env_integer(env, "REDIS_LOCK_TTL_MS", config::check_ttl)?.unwrap_or(config.lock_ttl_ms),
  };
  let retry_count = match options.get("retry_count") {
    Some((key, value)) => Some(retry_count(key, value)?),
    None => env_integer(env, "REDIS_RETRY_COUNT", |n| Retries::from_count(n as i64))?,
  };
  if let Some(retries) = retry_count {
    config.retry.retries = retries;
  }
  let retry_delay = match options.get("retry_delay_ms") {
    Some((key, value)) => Some(millis(key, value, 0)?),
    None => env_integer(env, "REDIS_RETRY_DELAY_MS", |n| {
      config::check_integer(n, 0, MAX_DELAY_MS)
    })?,
  };
  if let Some(delay) = retry_delay {
    config.retry.delay = Duration::from_millis(delay);
  }
  if let Some((key, value)) = options.get("retry_jitter_ms") {
    config.retry.jitter = Duration::from_millis(millis(key, value, 0)?);
  }
  if let Some((key, value)) = options.get("drift_factor") {
    config.drift_factor =
      config::check_drift_factor(number(key, value)?).map_err(|e| invalid(key, e))?;
  }
  if let Some((key, value)) = options.get("key_prefix") {
    config.key_prefix = match value {
      Raw::String(prefix) if prefix.len() <= MAX_KEY_PREFIX_BYTES => prefix.clone(),
      Raw::String(prefix) => {
        return Err(invalid(
          key,
          format!("at most {MAX_KEY_PREFIX_BYTES} bytes, got {}", prefix.len()),
        ))
      }
      Raw::TooLarge(Size::String(length)) => {
        return Err(invalid(
          key,
          format!("at most {MAX_KEY_PREFIX_BYTES} bytes, got {length} characters"),
        ))
      }
      other => {
        return Err(invalid(
          key,
          format!("must be a string, got {}", other.describe()),
        ))
      }
    };
  }
  if let Some((key, value)) = options.get("connect_timeout_ms") {
    config.connect_timeout = Duration::from_millis(millis(key, value, 1)?);
  }
  if let Some((key, value)) = options.get("command_timeout_ms") {
    config.command_timeout = Duration::from_millis(millis(key, value, 1)?);
  }
  if let Some((key, value)) = options.get("restart_quarantine") {
    config.restart_quarantine = boolean(key, value)?;
  }
  if let Some((key, value)) = options.get("max_ttl_ms") {
    config.max_ttl_ms = Some(ttl(key, value)?);
  }
  if let Some((key, value)) = options.get("credentials") {
    super::credentials::check_provider(value).map_err(|problem| invalid(key, problem))?;
  }
  config.validate()?;
  Ok(config)
}

/// Reads the per-call options of `acquire` over the instance's retry policy.
pub fn acquire_options(raw: &Raw, defaults: RetryPolicy) -> Result<AcquireOptions, String> {
  let options = Options::read(raw, ACQUIRE_OPTIONS, "acquire options")?;
  let mut retry = defaults;
  if let Some((key, value)) = options.get("retry_count") {
    retry.retries = retry_count(key, value)?;
  }
  if let Some((key, value)) = options.get("retry_delay_ms") {
    retry.delay = Duration::from_millis(millis(key, value, 0)?);
  }
  if let Some((key, value)) = options.get("retry_jitter_ms") {
    retry.jitter = Duration::from_millis(millis(key, value, 0)?);
  }
  let auto_extend = match options.get("auto_extend") {
    None => false,
    Some((key, value)) => boolean(key, value)?,
  };
  let fencing = match options.get("fencing") {
    None => false,
    Some((key, value)) => boolean(key, value)?,
  };
  let metadata = match options.get("metadata") {
    None => None,
    Some((key, value)) => Some(metadata(key, value)?),
  };
  let wait = match options.get("wait_ms") {
    None => None,
    Some((key, value)) => {
      let ms =
        config::check_integer(number(key, value)?, 0, MAX_TTL_MS).map_err(|e| invalid(key, e))?;
      Some(Duration::from_millis(ms))
    }
  };
  // Waiting means trying until the wait is over, unless the call limits
  // its attempts too.
  if wait.is_some() && options.get("retry_count").is_none() {
    retry.retries = Retries::Unlimited;
  }
  Ok(AcquireOptions {
    retry,
    auto_extend,
    wait,
    fencing,
    metadata,
  })
}

/// Reads the options of `health`.
pub fn health_options(raw: &Raw) -> Result<HealthOptions, String> {
  let options = Options::read(raw, HEALTH_OPTIONS, "health options")?;
  let lock_keys = match options.get("lock_keys") {
    None => false,
    Some((key, value)) => boolean(key, value)?,
  };
  Ok(HealthOptions { lock_keys })
}

/// One resource name, or a non-empty list of at most [`MAX_RESOURCES`]
/// distinct ones whose names take at most [`MAX_RESOURCE_BYTES`] together.
pub fn resources(raw: &Raw) -> Result<Vec<String>, String> {
  let items = match raw {
    Raw::Array(items) if items.is_empty() => {
      return Err("resource: the list of resources is empty".into())
    }
    Raw::Array(items) if items.len() <= MAX_RESOURCES => items,
    Raw::Array(items) => return Err(too_many_resources(items.len())),
    Raw::TooLarge(Size::Array(length)) => return Err(too_many_resources(*length)),
    other => return Ok(vec![resource(other, "resource")?.to_string()]),
  };
  let mut first: HashMap<&str, usize> = HashMap::with_capacity(items.len());
  let mut names = Vec::with_capacity(items.len());
  let mut total = 0;
  for (i, item) in items.iter().enumerate() {
    let name = resource(item, &format!("resource [{i}]"))?;
    if let Some(earlier) = first.insert(name, i) {
      return Err(format!(
        "resource: '{}' is listed twice (entries {earlier} and {i})",
        printable(name)
      ));
    }
    total += name.len();
    if total > MAX_RESOURCE_BYTES {
      return Err(format!(
        "resource: the names of one lock take at most {MAX_RESOURCE_BYTES} bytes together, \
         got {total} up to [{i}]"
      ));
    }
    names.push(name.to_string());
  }
  Ok(names)
}

fn too_many_resources(count: usize) -> String {
  format!("resource: at most {MAX_RESOURCES} resources per lock, got a list of {count}")
}

/// One resource name, `what` in messages.
fn resource<'r>(value: &'r Raw, what: &str) -> Result<&'r str, String> {
  match value {
    Raw::String(name) if name.is_empty() => Err(format!(
      "{what} is an empty string; name the resource to lock"
    )),
    Raw::String(name) if name.len() > MAX_RESOURCE_BYTES => Err(format!(
      "{what}: a resource name is at most {MAX_RESOURCE_BYTES} bytes, got {}",
      name.len()
    )),
    Raw::String(name) if name.starts_with("fence:") => Err(format!(
      "{what} '{}' is the name of the fencing counter of resource '{}'; \
       choose a name that does not begin with 'fence:'",
      printable(name),
      printable(&name["fence:".len()..])
    )),
    Raw::String(name) => Ok(name),
    Raw::TooLarge(Size::String(length)) => Err(format!(
      "{what}: a resource name is at most {MAX_RESOURCE_BYTES} bytes, got {length} characters"
    )),
    other => Err(format!("{what} must be a string, got {}", other.describe())),
  }
}

/// A TTL argument: the default when undefined.
pub fn ttl_argument(raw: &Raw, default: u64) -> Result<u64, String> {
  match raw {
    Raw::Undefined => Ok(default),
    Raw::Object(_) => Err(
      "ttlMs must be a number of milliseconds, got an object (options go in the third argument)"
        .into(),
    ),
    other => ttl("ttlMs", other),
  }
}

/// The caller's keys, each mapped to its snake_case name, with the spelling
/// the caller used kept for messages.
struct Options<'a> {
  values: HashMap<&'static str, (&'a str, &'a Raw)>,
}

impl<'a> Options<'a> {
  fn read(raw: &'a Raw, known: &[&'static str], what: &str) -> Result<Self, String> {
    let entries: &[(String, Raw)] = match raw {
      Raw::Undefined => &[],
      Raw::Object(entries) => entries,
      Raw::TooLarge(Size::Object(length)) => {
        return Err(format!(
          "{what}: an object of {length} keys, more than there are options"
        ))
      }
      other => {
        return Err(format!(
          "{what} must be an object, got {}",
          other.describe()
        ))
      }
    };
    let mut values: HashMap<&'static str, (&'a str, &'a Raw)> = HashMap::new();
    for (key, value) in entries {
      let Some(name) = known
        .iter()
        .find(|name| **name == key || camel_case(name) == *key)
      else {
        return Err(unknown_key(key, known, what));
      };
      if let Some((first, _)) = values.get(name) {
        return Err(invalid(
          key,
          format!("given twice, as '{first}' and '{key}'; keep one spelling"),
        ));
      }
      values.insert(name, (key.as_str(), value));
    }
    values.retain(|_, (_, value)| **value != Raw::Undefined);
    Ok(Options { values })
  }

  fn get(&self, name: &str) -> Option<(&'a str, &'a Raw)> {
    self.values.get(name).copied()
  }
}

fn unknown_key(key: &str, known: &[&str], what: &str) -> String {
  let shown = printable(key);
  let (elsewhere, place) = if known == LOCK_OPTIONS {
    (
      ACQUIRE_OPTIONS,
      "an option of acquire(), not of the DistributedLock constructor",
    )
  } else if known == ACQUIRE_OPTIONS {
    (
      LOCK_OPTIONS,
      "an option of the DistributedLock constructor, not of acquire()",
    )
  } else {
    (&[][..], "")
  };
  if elsewhere
    .iter()
    .any(|n| !known.contains(n) && (*n == key || camel_case(n) == key))
  {
    return format!("invalid option '{shown}': it is {place}");
  }
  match suggestion(key, known) {
    Some(name) => format!(
      "invalid option '{shown}': unknown {what} key; did you mean '{name}' (or '{}')?",
      camel_case(name)
    ),
    None => {
      let all: Vec<&str> = known.to_vec();
      format!(
        "invalid option '{shown}': unknown {what} key; known keys are {}",
        all.join(", ")
      )
    }
  }
}

pub(super) fn invalid(key: &str, problem: impl AsRef<str>) -> String {
  format!("invalid option '{}': {}", printable(key), problem.as_ref())
}

fn number(key: &str, value: &Raw) -> Result<f64, String> {
  match value {
    Raw::Number(n) => Ok(*n),
    other => Err(wrong_type(key, "a number", other)),
  }
}

fn boolean(key: &str, value: &Raw) -> Result<bool, String> {
  match value {
    Raw::Bool(flag) => Ok(*flag),
    other => Err(wrong_type(key, "a boolean", other)),
  }
}

fn wrong_type(key: &str, wanted: &str, got: &Raw) -> String {
  invalid(key, format!("must be {wanted}, got {}", got.describe()))
}

/// Holder metadata: an object of strings, kept as the JSON stored with the
/// lock.
fn metadata(key: &str, value: &Raw) -> Result<String, String> {
  let too_large = |size: String| {
    invalid(
      key,
      format!("at most {MAX_METADATA_BYTES} bytes as JSON are stored with a lock, got {size}"),
    )
  };
  let entries = match value {
    Raw::Object(entries) => entries,
    Raw::TooLarge(Size::Object(length)) => {
      return Err(too_large(format!("an object of {length} keys")))
    }
    other => {
      return Err(invalid(
        key,
        format!(
          "must be an object of strings, as {{ instance: 'us-east-1' }}, got {}",
          other.describe()
        ),
      ))
    }
  };
  let mut object = serde_json::Map::new();
  for (name, field) in entries {
    match field {
      Raw::String(text) => {
        object.insert(name.clone(), serde_json::Value::String(text.clone()));
      }
      Raw::Undefined => {}
      Raw::TooLarge(Size::String(length)) => {
        return Err(too_large(format!(
          "a string of {length} characters in '{}'",
          printable(name)
        )))
      }
      other => {
        return Err(invalid(
          &format!("{key}.{name}"),
          format!("must be a string, got {}", other.describe()),
        ))
      }
    }
  }
  let json = serde_json::Value::Object(object).to_string();
  if json.len() > MAX_METADATA_BYTES {
    return Err(too_large(format!("{} bytes", json.len())));
  }
  Ok(json)
}

fn ttl(key: &str, value: &Raw) -> Result<u64, String> {
  config::check_ttl(number(key, value)?).map_err(|e| invalid(key, e))
}

fn millis(key: &str, value: &Raw, min: u64) -> Result<u64, String> {
  config::check_integer(number(key, value)?, min, MAX_DELAY_MS).map_err(|e| invalid(key, e))
}

fn retry_count(key: &str, value: &Raw) -> Result<Retries, String> {
  let count = number(key, value)?;
  if count.is_finite() && count.fract() == 0.0 {
    if let Ok(retries) = Retries::from_count(count as i64) {
      return Ok(retries);
    }
  }
  Err(invalid(
    key,
    format!(
      "must be -1 (no limit) or an integer from 0 to 1000000, got {}",
      value.describe()
    ),
  ))
}

fn env_integer<T>(
  env: EnvLookup,
  name: &str,
  check: impl Fn(f64) -> Result<T, String>,
) -> Result<Option<T>, String> {
  let Some(text) = env(name).filter(|t| !t.trim().is_empty()) else {
    return Ok(None);
  };
  let parsed = text
    .trim()
    .parse::<i64>()
    .map_err(|_| format!("must be an integer, got '{}'", printable(&text)))
    .and_then(|n| check(n as f64));
  parsed
    .map(Some)
    .map_err(|e| format!("invalid environment variable {name}: {e}"))
}

#[cfg(test)]
#[path = "options_tests.rs"]
mod tests;
