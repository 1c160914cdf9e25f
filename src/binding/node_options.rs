//! Node lists from the `redis_nodes` option, `REDIS_NODES` or
//! `REDIS_INSTANCES`: address strings, Azure / StackExchange.Redis
//! connection strings (`host:port,password=...,ssl=True`), or objects as in
//! `REDIS_INSTANCES`. No message repeats a value: any of them may be, or
//! hold, a password.

use std::collections::HashMap;

use super::options::{invalid, EnvLookup};
use super::raw::{printable, Raw, Size};
use super::spelling::suggestion;
use crate::engine::config;
use crate::engine::node::{NodeConfig, DEFAULT_PORT};

const NODE_KEYS: &[&str] = &[
  "host",
  "port",
  "username",
  "password",
  "db",
  "tls",
  "ssl",
  "credentials",
];

/// The keys of a connection string this library reads, spelled as
/// StackExchange.Redis documents them; they match in any case, as there.
const CONNECTION_KEYS: &[&str] = &["password", "user", "ssl", "abortConnect", "defaultDatabase"];

/// StackExchange.Redis keys whose counterpart is an option of the whole
/// lock, not of one node.
const LOCK_WIDE_KEYS: &[(&str, &str)] = &[
  ("connectTimeout", "connect_timeout_ms"),
  ("syncTimeout", "command_timeout_ms"),
  ("asyncTimeout", "command_timeout_ms"),
];

/// The port of a TLS endpoint written without one, as StackExchange.Redis
/// (and Azure Cache for Redis) has it.
const DEFAULT_TLS_PORT: u16 = 6380;

/// Longer environment values are no node list (15 connection strings take a
/// few kilobytes).
const MAX_ENV_BYTES: usize = 64 * 1024;

pub(super) fn nodes_from_option(key: &str, value: &Raw) -> Result<Vec<NodeConfig>, String> {
  let items = match value {
    Raw::Array(items) if items.len() <= config::MAX_NODES => items,
    Raw::Array(items) => return Err(too_many_nodes(key, items.len())),
    Raw::TooLarge(Size::Array(length)) => return Err(too_many_nodes(key, *length)),
    other => {
      return Err(invalid(
        key,
        format!(
          "must be an array of node addresses or objects (a list even for one node), got {}",
          other.describe()
        ),
      ))
    }
  };
  items
    .iter()
    .enumerate()
    .map(|(i, item)| node(item).map_err(|e| invalid(key, format!("entry {i}: {e}"))))
    .collect()
}

fn too_many_nodes(key: &str, count: usize) -> String {
  invalid(
    key,
    format!("at most {} nodes, got {count}", config::MAX_NODES),
  )
}

pub(super) fn nodes_from_env(env: EnvLookup) -> Result<Vec<NodeConfig>, String> {
  if let Some(list) = env_text(env, "REDIS_NODES")? {
    let problem = |e: String| format!("invalid environment variable REDIS_NODES: {e}");
    return split_node_list(&list)
      .map_err(problem)?
      .iter()
      .enumerate()
      .map(|(i, spec)| {
        node_string(spec).map_err(|e| {
          // A ',' in a URL's password cut the URL in two.
          let hint = if spec.contains("://") || spec.contains('@') {
            " (REDIS_NODES is split at commas: write a ',' in a password as %2C)"
          } else {
            ""
          };
          problem(format!("entry {i}: {e}{hint}"))
        })
      })
      .collect();
  }
  if let Some(json) = env_text(env, "REDIS_INSTANCES")? {
    let problem = |e: String| format!("invalid environment variable REDIS_INSTANCES: {e}");
    let raw = Raw::from_json(&json).map_err(problem)?;
    let Raw::Array(items) = raw else {
      return Err(problem(
        "must be a JSON list of {host, port, password, ssl} objects or node strings".into(),
      ));
    };
    if items.len() > config::MAX_NODES {
      return Err(problem(format!(
        "at most {} nodes, got {}",
        config::MAX_NODES,
        items.len()
      )));
    }
    return items
      .iter()
      .enumerate()
      .map(|(i, item)| node(item).map_err(|e| problem(format!("entry {i}: {e}"))))
      .collect();
  }
  Ok(
    config::DEFAULT_NODES
      .iter()
      .map(|spec| NodeConfig::parse(spec).expect("the default nodes parse"))
      .collect(),
  )
}

/// The variable's text when set and not blank; too long a text is refused
/// before it is parsed.
fn env_text(env: EnvLookup, name: &str) -> Result<Option<String>, String> {
  match env(name).filter(|text| !text.trim().is_empty()) {
    Some(text) if text.len() > MAX_ENV_BYTES => Err(format!(
      "invalid environment variable {name}: {} bytes, at most {MAX_ENV_BYTES}",
      text.len()
    )),
    text => Ok(text),
  }
}

/// Splits `REDIS_NODES` at each comma that starts a new node: a `key=value`
/// part belongs to the connection string whose host:port comes before it,
/// so that several portal strings joined with commas stay apart.
fn split_node_list(list: &str) -> Result<Vec<String>, String> {
  let mut entries: Vec<String> = Vec::new();
  for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
    if key_value(part).is_none() {
      entries.push(part.to_string());
      continue;
    }
    let Some(entry) = entries.last_mut() else {
      return Err(
        "entry 0: a connection string starts with its host:port, before its key=value parts".into(),
      );
    };
    entry.push(',');
    entry.push_str(part);
  }
  Ok(entries)
}

/// A node address string or a connection string.
fn node_string(spec: &str) -> Result<NodeConfig, String> {
  let spec = spec.trim();
  let first = spec.split(',').next().unwrap_or("");
  if first.contains("://") {
    // A URL may hold ',' and '=' in its password: it is read whole first.
    return NodeConfig::parse(spec).map_err(|e| {
      if spec
        .split(',')
        .skip(1)
        .any(|part| key_value(part).is_some())
      {
        "key=value parts follow a host:port, not a URL: give the password in the URL \
         (percent-encoded), or write host:port,password=...,ssl=True"
          .to_string()
      } else {
        e
      }
    });
  }
  if spec.contains(',') || key_value(first).is_some() {
    return connection_string(spec);
  }
  NodeConfig::parse(spec)
}

/// `key=value` when `part` starts with a key name and '=', as the parts of a
/// connection string after its host:port do.
fn key_value(part: &str) -> Option<(&str, &str)> {
  let (key, value) = part.split_once('=')?;
  let key = key.trim();
  let mut letters = key.bytes();
  let starts = letters.next().is_some_and(|b| b.is_ascii_alphabetic());
  (starts && letters.all(|b| b.is_ascii_alphanumeric())).then(|| (key, value.trim()))
}

/// A StackExchange.Redis configuration string naming one node: its
/// `host[:port]` and `key=value` parts in any order, separated by commas.
/// `abortConnect` is checked and ignored: this lock never connects while it
/// is constructed, and a node it cannot reach costs a vote, as
/// `abortConnect=False` asks.
fn connection_string(spec: &str) -> Result<NodeConfig, String> {
  let parts: Vec<&str> = spec
    .split(',')
    .map(str::trim)
    .filter(|p| !p.is_empty())
    .collect();
  if parts.iter().any(|part| part.chars().any(char::is_control)) {
    return Err("a connection string holds a control character (a tab, a NUL, ...)".into());
  }
  let endpoints: Vec<&str> = parts
    .iter()
    .copied()
    .filter(|part| key_value(part).is_none())
    .collect();
  if endpoints.len() > 1 {
    // Which of them is the host is unknown: a password pasted without
    // `password=` looks like one too, so none is named.
    return Err(
      "a connection string names one node, and this one has a second host:port: \
       give each node its own entry"
        .into(),
    );
  }
  let endpoint = endpoints.first().copied();
  // The host is named in messages only once it parses as one.
  let shown = endpoint.filter(|e| NodeConfig::parse_endpoint(e, DEFAULT_PORT).is_ok());
  let fail = |problem: String| match shown {
    Some(host) => format!("'{host}': {problem}"),
    None => problem,
  };
  // Portal strings of several nodes joined with ';' read as one string
  // whose values run into the next host.
  let hint = if parts
    .iter()
    .filter_map(|part| key_value(part))
    .any(|(_, value)| value.contains(';'))
  {
    "; to list several connection strings, separate them with ','"
  } else {
    ""
  };
  let mut given: HashMap<&str, &str> = HashMap::new();
  for (key, value) in parts.iter().filter_map(|part| key_value(part)) {
    let name = CONNECTION_KEYS
      .iter()
      .find(|name| name.eq_ignore_ascii_case(key))
      .ok_or_else(|| fail(unknown_key(key)))?;
    if given.insert(name, value).is_some() {
      return Err(fail(format!("'{name}' is given twice{hint}")));
    }
  }
  let flag = |name: &str| -> Result<Option<bool>, String> {
    match given.get(name) {
      None => Ok(None),
      Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
      Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
      Some(_) => Err(fail(format!("'{name}' must be True or False{hint}"))),
    }
  };
  let tls = flag("ssl")?.unwrap_or(false);
  flag("abortConnect")?;
  let db = match given.get("defaultDatabase") {
    None => 0,
    Some(v) => v
      .parse::<u32>()
      .ok()
      .filter(|_| v.bytes().all(|b| b.is_ascii_digit()))
      .ok_or_else(|| {
        fail(format!(
          "'defaultDatabase' must be a database number, 0 or more{hint}"
        ))
      })?,
  };
  let Some(endpoint) = endpoint else {
    return Err(
      "a connection string starts with its host:port, then key=value parts; this one has no host:port"
        .into(),
    );
  };
  if endpoint.contains("://") {
    return Err(
      "key=value parts follow a host:port, not a URL: write host:port,password=...,ssl=True".into(),
    );
  }
  let default_port = if tls { DEFAULT_TLS_PORT } else { DEFAULT_PORT };
  let mut node = NodeConfig::parse_endpoint(endpoint, default_port)?;
  let text = |name: &str| {
    given
      .get(name)
      .filter(|v| !v.is_empty())
      .map(|v| v.to_string())
  };
  node.username = text("user");
  node.password = text("password");
  node.db = db;
  node.tls = tls;
  Ok(node)
}

/// A key this library does not read. It is named only when it looks like a
/// key name: a password pasted without `password=` can end in '=' too.
fn unknown_key(key: &str) -> String {
  if let Some((name, option)) = LOCK_WIDE_KEYS
    .iter()
    .find(|(name, _)| name.eq_ignore_ascii_case(key))
  {
    return format!(
      "'{name}' applies to every node at once: set the lock's {option} option instead"
    );
  }
  let known = CONNECTION_KEYS.join(", ");
  if key.len() > 24 || !key.bytes().all(|b| b.is_ascii_alphabetic()) {
    return format!(
      "a part has an unknown key (not shown, as it may be a secret); known keys are {known}"
    );
  }
  match suggestion(key, CONNECTION_KEYS) {
    Some(name) => format!("unknown key '{key}'; did you mean '{name}'?"),
    None => format!("unknown key '{key}'; known keys are {known}"),
  }
}

/// A node address string, a connection string, or
/// `{ host, port?, username?, password?, db?, tls?, ssl? }`.
fn node(raw: &Raw) -> Result<NodeConfig, String> {
  let entries = match raw {
    Raw::String(spec) => return node_string(spec),
    Raw::TooLarge(Size::String(length)) => {
      return Err(format!("a node string of {length} characters is too long"))
    }
    Raw::Object(entries) => entries,
    other => {
      return Err(format!(
        "a node must be an address string or an object with a host, got {}",
        other.describe()
      ))
    }
  };
  let mut fields: HashMap<&str, &Raw> = HashMap::new();
  for (key, value) in entries {
    let Some(name) = NODE_KEYS.iter().find(|n| **n == key) else {
      let hint = suggestion(key, NODE_KEYS)
        .map(|name| format!("; did you mean '{name}'?"))
        .unwrap_or_default();
      return Err(format!("unknown node key '{}'{hint}", printable(key)));
    };
    if *value != Raw::Undefined {
      fields.insert(name, value);
    }
  }
  let text = |name: &str| -> Result<Option<String>, String> {
    match fields.get(name) {
      None => Ok(None),
      Some(Raw::String(s)) => Ok(Some(s.clone())),
      Some(Raw::TooLarge(Size::String(_))) => Err(format!("node key '{name}' is too long")),
      // The value of a password is never described, whatever its type.
      Some(_) if name == "password" => Err("node key 'password' must be a string".into()),
      Some(other) => Err(format!(
        "node key '{name}' must be a string, got {}",
        other.describe()
      )),
    }
  };
  let integer = |name: &str, min: u64, max: u64| -> Result<Option<u64>, String> {
    match fields.get(name) {
      None => Ok(None),
      Some(Raw::Number(n)) => config::check_integer(*n, min, max)
        .map(Some)
        .map_err(|e| format!("node key '{name}' {e}")),
      Some(other) => Err(format!(
        "node key '{name}' must be a number, got {}",
        other.describe()
      )),
    }
  };
  let flag = |name: &str| -> Result<Option<bool>, String> {
    match fields.get(name) {
      None => Ok(None),
      Some(Raw::Bool(b)) => Ok(Some(*b)),
      Some(other) => Err(format!(
        "node key '{name}' must be a boolean, got {}",
        other.describe()
      )),
    }
  };
  if let Some(value) = fields.get("credentials") {
    super::credentials::check_provider(value)
      .map_err(|problem| format!("node key 'credentials' {problem}"))?;
  }
  let host = text("host")?.ok_or("a node object needs a 'host'")?;
  let port = integer("port", 1, 65_535)?.unwrap_or(u64::from(DEFAULT_PORT));
  let mut node = NodeConfig::endpoint(host.trim(), port as u16)?;
  node.username = text("username")?.filter(|s| !s.is_empty());
  node.password = text("password")?.filter(|s| !s.is_empty());
  node.db = integer("db", 0, u64::from(u32::MAX))?.unwrap_or(0) as u32;
  node.tls = match (flag("tls")?, flag("ssl")?) {
    (Some(tls), Some(ssl)) if tls != ssl => {
      return Err("node keys 'tls' and 'ssl' disagree; 'ssl' is an alias of 'tls'".into())
    }
    (tls, ssl) => tls.or(ssl).unwrap_or(false),
  };
  Ok(node)
}

#[cfg(test)]
#[path = "node_options_tests.rs"]
mod tests;
