//! Node lists from the `redis_nodes` option, `REDIS_NODES` or
//! `REDIS_INSTANCES`: address strings, or objects as in `REDIS_INSTANCES`.

use std::collections::HashMap;

use super::options::{invalid, EnvLookup};
use super::raw::{Raw, Size};
use super::spelling::suggestion;
use crate::engine::config;
use crate::engine::node::{printable, NodeConfig};

const NODE_KEYS: &[&str] = &["host", "port", "username", "password", "db", "tls", "ssl"];

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
    return list
      .split(',')
      .map(str::trim)
      .filter(|spec| !spec.is_empty())
      .enumerate()
      .map(|(i, spec)| {
        NodeConfig::parse(spec)
          .map_err(|e| format!("invalid environment variable REDIS_NODES: entry {i}: {e}"))
      })
      .collect();
  }
  if let Some(json) = env_text(env, "REDIS_INSTANCES")? {
    let problem = |e: String| format!("invalid environment variable REDIS_INSTANCES: {e}");
    let raw = Raw::from_json(&json).map_err(problem)?;
    let Raw::Array(items) = raw else {
      return Err(problem(
        "must be a JSON list of {host, port, password, ssl} objects".into(),
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

/// A node address string, or `{ host, port?, username?, password?, db?, tls?, ssl? }`.
fn node(raw: &Raw) -> Result<NodeConfig, String> {
  let entries = match raw {
    Raw::String(spec) => return NodeConfig::parse(spec),
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
      // The value of a password is never shown, whatever its type.
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
  let host = text("host")?.ok_or("a node object needs a 'host'")?;
  let port = integer("port", 1, 65_535)?.unwrap_or(u64::from(crate::engine::node::DEFAULT_PORT));
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
