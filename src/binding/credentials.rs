//! Credentials providers from JavaScript: each function becomes an engine
//! `CredentialsProvider` that calls it on the JavaScript thread through a
//! threadsafe function (unreferenced, so it never keeps the process alive)
//! and reads what it settled to. The facade hands the functions over beside
//! the options, each wrapped so that it returns a promise that always
//! resolves: to `{ value }` (what the function returned or resolved to),
//! `{ error }` (the message of the error it threw or rejected with) or
//! `{ thrown }` (the type of anything else it threw).
//!
//! Nothing a provider returns is ever shown: a message names the key and
//! the type of a wrong value, never the value.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use napi::bindgen_prelude::{Function, Promise};
use napi::threadsafe_function::ThreadsafeFunction;
use napi::Status;

use super::raw::{printable, Raw, Size};
use crate::engine::config::LockConfig;
use crate::engine::credentials::{CredentialSource, Credentials, CredentialsProvider, Fetching};

/// A wrapped provider, as the facade passes it.
pub type ProviderFunction<'a> = Function<'a, (), Promise<Raw>>;

type Call = ThreadsafeFunction<(), Promise<Raw>, (), Status, false, true>;

/// What a provider returns, for messages.
const SHAPE: &str = "{ username?, password, expiresAt? }";
/// The longest part of a provider's error message that a message repeats.
const MAX_REASON: usize = 300;
/// An `expiresAt` below this (March 1973) is seconds, not milliseconds.
const MIN_EPOCH_MS: f64 = 1e11;

/// Gives each node the source of its credentials: its own provider's, else
/// the lock's, which is one source for all of them so that their calls
/// coalesce. `nodes` follows the order of the `redis_nodes` option.
pub fn attach(
  config: &mut LockConfig,
  lock: Option<ProviderFunction>,
  nodes: Vec<Option<ProviderFunction>>,
) -> napi::Result<()> {
  let timeout = config.connect_timeout;
  let shared = lock.map(|function| source(function, timeout)).transpose()?;
  let mut own = nodes.into_iter();
  for node in &mut config.nodes {
    node.credentials = match own.next().flatten() {
      Some(function) => Some(source(function, timeout)?),
      None => shared.clone(),
    };
  }
  Ok(())
}

fn source(function: ProviderFunction, timeout: Duration) -> napi::Result<CredentialSource> {
  let call: Call = function
    .build_threadsafe_function::<()>()
    .callee_handled::<false>()
    .weak::<true>()
    .build()?;
  let provider = JsProvider(Arc::new(call));
  Ok(CredentialSource::new(Box::new(provider), timeout))
}

struct JsProvider(Arc<Call>);

impl CredentialsProvider for JsProvider {
  fn fetch(&self) -> Fetching {
    let call = self.0.clone();
    Box::pin(async move {
      let settled = call
        .call_async_catch(())
        .await
        .map_err(|_| "it could not be called (the process is exiting)".to_string())?
        .await
        .map_err(|_| "what it returned could not be read".to_string())?;
      settled_credentials(&settled)
    })
  }
}

/// The credentials in what the facade's wrapper settled to, or why there are none.
fn settled_credentials(settled: &Raw) -> Result<Credentials, String> {
  let field = |name: &str| match settled {
    Raw::Object(entries) => entries.iter().find(|(key, _)| key == name).map(|(_, v)| v),
    _ => None,
  };
  if let Some(value) = field("value") {
    return credentials(value);
  }
  Err(match (field("error"), field("thrown")) {
    (Some(Raw::String(message)), _) if !message.trim().is_empty() => reason(message),
    (Some(Raw::TooLarge(Size::String(length))), _) => {
      format!("it threw an error with a message of {length} characters")
    }
    (Some(_), _) => "it threw an error without a message".into(),
    (_, Some(Raw::String(kind))) => format!("it threw {}, not an Error", article(kind)),
    _ => "it failed".into(),
  })
}

/// One line of at most `MAX_REASON` characters from a provider's message.
fn reason(message: &str) -> String {
  let mut line: String = message
    .trim()
    .chars()
    .take(MAX_REASON)
    .flat_map(char::escape_debug)
    .collect();
  if message.trim().chars().nth(MAX_REASON).is_some() {
    line.push('…');
  }
  line
}

/// `{ username?, password, expiresAt? }` as the engine takes it.
fn credentials(value: &Raw) -> Result<Credentials, String> {
  let Raw::Object(entries) = value else {
    return Err(format!("it returned {}, not {SHAPE}", kind(value)));
  };
  let mut username = None;
  let mut password = None;
  let mut expires_at = None;
  for (key, value) in entries {
    match (key.as_str(), value) {
      (_, Raw::Undefined) => {}
      ("username", Raw::String(name)) => username = Some(name.clone()).filter(|n| !n.is_empty()),
      ("username", other) => return Err(wrong("username", "a string", other)),
      ("password", Raw::String(secret)) if !secret.is_empty() => password = Some(secret.clone()),
      ("password", other) => return Err(wrong("password", "a non-empty string", other)),
      ("expiresAt", Raw::Null) => {}
      ("expiresAt", Raw::Number(ms)) if ms.is_finite() && *ms >= MIN_EPOCH_MS => {
        expires_at = Some(UNIX_EPOCH + Duration::from_millis(*ms as u64));
      }
      ("expiresAt", Raw::Number(ms)) if ms.is_finite() && *ms > 0.0 => {
        return Err(
          "'expiresAt' is epoch milliseconds (as Date.now() counts), and this one is too small \
           to be: seconds?"
            .into(),
        )
      }
      ("expiresAt", other) => {
        return Err(wrong("expiresAt", "a number of epoch milliseconds", other))
      }
      ("token", _) => {
        return Err(format!(
          "it returned an object with 'token', not {SHAPE}: an access token is the password \
           (entraId() from 'redis-quorum-lock/azure' makes credentials of a TokenCredential)"
        ))
      }
      (key, _) => {
        return Err(format!(
          "it returned an object with the unknown key '{}', not {SHAPE}",
          printable(key)
        ))
      }
    }
  }
  let Some(password) = password else {
    return Err(format!(
      "it returned an object without 'password', not {SHAPE}"
    ));
  };
  Ok(Credentials {
    username,
    password,
    expires_at,
  })
}

/// Whether `value`, where the options hold a credentials provider, is a
/// function: the facade hands each over apart, and `attach` takes it from
/// there.
pub fn check_provider(value: &Raw) -> Result<(), String> {
  match value {
    Raw::Other("function") => Ok(()),
    other => Err(format!(
      "must be a function returning {SHAPE} (or a promise of it), got {}",
      kind(other)
    )),
  }
}

/// A JavaScript `typeof` (or `null`) as a message says it.
fn article(type_of: &str) -> &'static str {
  match type_of {
    "undefined" => "undefined",
    "null" => "null",
    "string" => "a string",
    "number" => "a number",
    "bigint" => "a bigint",
    "boolean" => "a boolean",
    "symbol" => "a symbol",
    "function" => "a function",
    _ => "an object",
  }
}

fn wrong(key: &str, expected: &str, got: &Raw) -> String {
  format!("'{key}' must be {expected}, got {}", kind(got))
}

/// The type of a value, and nothing of the value: it may be a secret.
fn kind(value: &Raw) -> &'static str {
  match value {
    Raw::Undefined => "undefined",
    Raw::Null => "null",
    Raw::Bool(_) => "a boolean",
    Raw::Number(_) => "a number",
    Raw::String(text) if text.is_empty() => "an empty string",
    Raw::String(_) | Raw::TooLarge(Size::String(_)) => "a string",
    Raw::Array(_) | Raw::TooLarge(Size::Array(_)) => "a list",
    Raw::Object(_) | Raw::TooLarge(_) => "an object",
    Raw::Other(kind) => kind,
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::binding::raw::build::{obj, s};
  use crate::engine::node::secrets::{leaked, KEY};

  fn epoch_ms(at: std::time::SystemTime) -> u128 {
    at.duration_since(UNIX_EPOCH)
      .unwrap_or_default()
      .as_millis()
  }

  #[test]
  fn what_a_provider_returns_becomes_the_credentials() {
    let value = obj(&[
      ("username", s("00000000-aaaa-bbbb-cccc-000000000000")),
      ("password", s(KEY)),
      ("expiresAt", Raw::Number(1_900_000_000_123.0)),
    ]);
    let got = settled_credentials(&obj(&[("value", value)])).unwrap();
    assert_eq!(
      got.username.as_deref(),
      Some("00000000-aaaa-bbbb-cccc-000000000000")
    );
    assert_eq!(got.password, KEY);
    assert_eq!(got.expires_at.map(epoch_ms), Some(1_900_000_000_123));
    let bare = obj(&[("value", obj(&[("password", s("pw")), ("username", s(""))]))]);
    let bare = settled_credentials(&bare).unwrap();
    assert_eq!((bare.username, bare.expires_at), (None, None));
  }

  #[test]
  fn garbage_is_named_by_its_key_and_type_never_by_its_value() {
    let returned = |value: Raw| settled_credentials(&obj(&[("value", value)])).unwrap_err();
    let cases = [
      (
        s(KEY),
        "it returned a string, not { username?, password, expiresAt? }",
      ),
      (Raw::Null, "it returned null"),
      (Raw::Undefined, "it returned undefined"),
      (obj(&[]), "without 'password'"),
      (
        obj(&[("password", s(""))]),
        "'password' must be a non-empty string, got an empty string",
      ),
      (
        obj(&[("password", Raw::Number(12345.0))]),
        "'password' must be a non-empty string, got a number",
      ),
      (
        obj(&[("password", s(KEY)), ("username", Raw::Number(7.0))]),
        "'username' must be a string, got a number",
      ),
      (
        obj(&[("password", s(KEY)), ("expiresAt", s(KEY))]),
        "'expiresAt' must be a number of epoch milliseconds, got a string",
      ),
      (
        obj(&[
          ("password", s(KEY)),
          ("expiresAt", Raw::Number(1_900_000_000.0)),
        ]),
        "seconds?",
      ),
      (
        obj(&[("password", s(KEY)), ("expiresAt", Raw::Number(f64::NAN))]),
        "got a number",
      ),
      (
        obj(&[("token", s(KEY)), ("expiresOnTimestamp", Raw::Number(1.0))]),
        "an access token is the password",
      ),
      (
        obj(&[("password", s(KEY)), ("pasword", s(KEY))]),
        "the unknown key 'pasword'",
      ),
    ];
    for (value, expected) in cases {
      let error = returned(value);
      assert!(error.contains(expected), "{error}");
      assert_eq!(leaked(&error, KEY), None, "{error}");
      assert!(!error.contains("12345"), "{error}");
    }
  }

  #[test]
  fn a_failure_is_told_by_its_message_or_the_type_of_what_was_thrown() {
    let failed = |entries: &[(&str, Raw)]| settled_credentials(&obj(entries)).unwrap_err();
    assert_eq!(
      failed(&[(
        "error",
        s("ManagedIdentityCredential: no identity endpoint\n")
      )]),
      "ManagedIdentityCredential: no identity endpoint"
    );
    assert_eq!(failed(&[("error", s("a\nb"))]), "a\\nb");
    let long = failed(&[("error", s(&"x".repeat(1000)))]);
    assert_eq!(long.chars().count(), MAX_REASON + 1);
    assert_eq!(
      failed(&[("error", s(" "))]),
      "it threw an error without a message"
    );
    assert_eq!(
      failed(&[("thrown", s("string"))]),
      "it threw a string, not an Error"
    );
    assert_eq!(
      failed(&[("thrown", s("null"))]),
      "it threw null, not an Error"
    );
    assert_eq!(failed(&[]), "it failed");
  }

  #[test]
  fn the_options_hold_a_function_where_a_provider_goes_or_nothing() {
    use crate::binding::options::lock_config;
    let no_env = |_: &str| None;
    let function = Raw::Other("function");
    let node = obj(&[("host", s("h")), ("credentials", function.clone())]);
    let given = obj(&[
      ("credentials", function),
      ("redis_nodes", Raw::Array(vec![node])),
    ]);
    assert!(lock_config(&given, &no_env).is_ok());
    let error = lock_config(&obj(&[("credentials", s(KEY))]), &no_env).unwrap_err();
    assert_eq!(
      error,
      "invalid option 'credentials': must be a function returning \
       { username?, password, expiresAt? } (or a promise of it), got a string"
    );
    let node = obj(&[
      ("host", s("h")),
      ("credentials", obj(&[("password", s(KEY))])),
    ]);
    let error = lock_config(&obj(&[("redis_nodes", Raw::Array(vec![node]))]), &no_env).unwrap_err();
    assert!(
      error.contains("entry 0: node key 'credentials' must be a function"),
      "{error}"
    );
    assert_eq!(leaked(&error, KEY), None, "{error}");
    let near = lock_config(&obj(&[("credential", s("x"))]), &no_env).unwrap_err();
    assert!(near.contains("did you mean 'credentials'"), "{near}");
  }
}
