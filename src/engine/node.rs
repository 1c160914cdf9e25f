//! One Redis node's address and credentials, parsed from the forms the
//! contract accepts: `host`, `host:port`, `[v6]:port`, `redis://` and
//! `rediss://` URLs. A password never appears in a label, a message or a
//! debug print.

use std::fmt;

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};

pub const DEFAULT_PORT: u16 = 6379;

#[derive(Clone, PartialEq, Eq)]
pub struct NodeConfig {
  pub host: String,
  pub port: u16,
  pub username: Option<String>,
  pub password: Option<String>,
  pub db: u32,
  pub tls: bool,
}

impl fmt::Debug for NodeConfig {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.debug_struct("NodeConfig")
      .field("host", &self.host)
      .field("port", &self.port)
      .field("username", &self.username)
      .field("password", &self.password.as_ref().map(|_| "<redacted>"))
      .field("db", &self.db)
      .field("tls", &self.tls)
      .finish()
  }
}

impl NodeConfig {
  /// A node at `host:port` with no credentials, database 0, no TLS.
  pub fn endpoint(host: &str, port: u16) -> Result<Self, String> {
    let host = host
      .strip_prefix('[')
      .and_then(|h| h.strip_suffix(']'))
      .unwrap_or(host);
    check_host(host)?;
    if port == 0 {
      return Err("port 0 is not a port a node can listen on".into());
    }
    Ok(NodeConfig {
      host: host.to_string(),
      port,
      username: None,
      password: None,
      db: 0,
      tls: false,
    })
  }

  /// Parses `host`, `host:port`, `[v6]:port` or a `redis://`/`rediss://` URL.
  pub fn parse(spec: &str) -> Result<Self, String> {
    let spec = spec.trim();
    if spec.is_empty() {
      return Err("a node address is empty".into());
    }
    if let Some((scheme, rest)) = spec.split_once("://") {
      return match scheme.to_ascii_lowercase().as_str() {
        "redis" => parse_url(rest, false),
        "rediss" => parse_url(rest, true),
        other => Err(format!(
          "unsupported scheme '{}' (use redis:// or rediss://)",
          printable(other)
        )),
      };
    }
    let (host, port) = split_host_port(spec)?;
    Self::endpoint(host, port)
  }

  /// `host:port`, with brackets around an IPv6 address; safe to print.
  pub fn label(&self) -> String {
    if self.host.contains(':') {
      format!("[{}]:{}", self.host, self.port)
    } else {
      format!("{}:{}", self.host, self.port)
    }
  }

  /// Two entries that reach the same server are not independent nodes.
  pub fn same_endpoint(&self, other: &NodeConfig) -> bool {
    self.port == other.port && self.host.eq_ignore_ascii_case(&other.host)
  }

  pub fn connection_info(&self) -> redis::RedisResult<ConnectionInfo> {
    let addr = if self.tls {
      ConnectionAddr::TcpTls {
        host: self.host.clone(),
        port: self.port,
        insecure: false,
        tls_params: None,
      }
    } else {
      ConnectionAddr::Tcp(self.host.clone(), self.port)
    };
    let mut redis = RedisConnectionInfo::default()
      .set_db(i64::from(self.db))
      .set_skip_set_lib_name();
    if let Some(username) = &self.username {
      redis = redis.set_username(username);
    }
    if let Some(password) = &self.password {
      redis = redis.set_password(password);
    }
    Ok(addr.into_connection_info()?.set_redis_settings(redis))
  }

  /// Replaces this node's password, if any, wherever it occurs in `text`: a
  /// last guard for messages that come from elsewhere (a server, a socket).
  pub fn redact(&self, text: &str) -> String {
    match &self.password {
      Some(password) if !password.is_empty() => text.replace(password.as_str(), "<redacted>"),
      _ => text.to_string(),
    }
  }
}

fn split_host_port(spec: &str) -> Result<(&str, u16), String> {
  if let Some(rest) = spec.strip_prefix('[') {
    let (host, after) = rest
      .split_once(']')
      .ok_or_else(|| format!("'{}': an IPv6 address misses its ']'", printable(spec)))?;
    return match after {
      "" => Ok((host, DEFAULT_PORT)),
      _ => match after.strip_prefix(':') {
        Some(port) => Ok((host, parse_port(port, spec)?)),
        None => Err(format!("'{}': expected ':port' after ']'", printable(spec))),
      },
    };
  }
  match spec.matches(':').count() {
    0 => Ok((spec, DEFAULT_PORT)),
    1 => {
      let (host, port) = spec.split_once(':').unwrap_or((spec, ""));
      Ok((host, parse_port(port, spec)?))
    }
    _ => Err(format!(
      "'{}': write an IPv6 address in brackets, as [::1]:6379",
      printable(spec)
    )),
  }
}

fn parse_port(port: &str, spec: &str) -> Result<u16, String> {
  match port.parse::<u32>() {
    Ok(p) if (1..=65535).contains(&p) && port.bytes().all(|b| b.is_ascii_digit()) => Ok(p as u16),
    _ => Err(format!(
      "'{}': the port must be a number from 1 to 65535",
      printable(spec)
    )),
  }
}

fn parse_url(rest: &str, tls: bool) -> Result<NodeConfig, String> {
  let (authority, path) = match rest.find(['/', '?', '#']) {
    Some(i) => (&rest[..i], &rest[i..]),
    None => (rest, ""),
  };
  let (userinfo, hostport) = match authority.rfind('@') {
    Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
    None => (None, authority),
  };
  let scheme = if tls { "rediss" } else { "redis" };
  let shown = format!("{scheme}://{}", printable(hostport));
  if hostport.is_empty() {
    return Err(format!("'{shown}': the URL has no host"));
  }
  let (host, port) = split_host_port(hostport).map_err(|e| e.replace(hostport, &shown))?;
  let mut node = NodeConfig::endpoint(host, port).map_err(|e| format!("'{shown}': {e}"))?;
  node.tls = tls;
  if let Some(userinfo) = userinfo {
    let (user, password) = match userinfo.split_once(':') {
      Some((user, password)) => (user, Some(password)),
      None => (userinfo, None),
    };
    let user = percent_decode(user).map_err(|e| format!("'{shown}': the user name {e}"))?;
    if !user.is_empty() {
      node.username = Some(user);
    }
    if let Some(password) = password {
      let password =
        percent_decode(password).map_err(|e| format!("'{shown}': the password {e}"))?;
      if !password.is_empty() {
        node.password = Some(password);
      }
    }
  }
  let path = path.split(['?', '#']).next().unwrap_or("");
  let db = path.trim_start_matches('/');
  if !db.is_empty() {
    node.db = db
      .parse::<u32>()
      .ok()
      .filter(|_| db.bytes().all(|b| b.is_ascii_digit()))
      .ok_or_else(|| {
        format!(
          "'{shown}': the database after '/' must be a number, got '{}'",
          printable(db)
        )
      })?;
  }
  Ok(node)
}

fn percent_decode(text: &str) -> Result<String, String> {
  let bytes = text.as_bytes();
  let mut out = Vec::with_capacity(bytes.len());
  let mut i = 0;
  while i < bytes.len() {
    if bytes[i] == b'%' {
      let hex = text
        .get(i + 1..i + 3)
        .ok_or("has a '%' without two hex digits")?;
      out.push(u8::from_str_radix(hex, 16).map_err(|_| "has a '%' without two hex digits")?);
      i += 3;
    } else {
      out.push(bytes[i]);
      i += 1;
    }
  }
  String::from_utf8(out).map_err(|_| "is not valid UTF-8 once decoded".to_string())
}

fn check_host(host: &str) -> Result<(), String> {
  if host.is_empty() {
    return Err("the host is empty".into());
  }
  if host.len() > 253 {
    return Err("the host is longer than 253 characters".into());
  }
  let ok = if host.contains(':') {
    host
      .bytes()
      .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
  } else {
    host
      .bytes()
      .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
  };
  if ok {
    Ok(())
  } else {
    Err(format!(
      "'{}' is not a host name or IP address",
      printable(host)
    ))
  }
}

/// Shows at most 64 characters of caller input, with control characters
/// escaped, so a message stays one readable line.
pub fn printable(text: &str) -> String {
  let mut out: String = text.chars().take(64).flat_map(char::escape_debug).collect();
  if text.chars().count() > 64 {
    out.push('…');
  }
  out
}

#[cfg(test)]
mod tests {
  use super::*;

  fn node(spec: &str) -> NodeConfig {
    NodeConfig::parse(spec).unwrap_or_else(|e| panic!("{spec}: {e}"))
  }

  #[test]
  fn host_and_port_forms() {
    let n = node("localhost:6380");
    assert_eq!((n.host.as_str(), n.port, n.tls), ("localhost", 6380, false));
    assert_eq!(node("redis1.example.com").port, 6379);
    let v6 = node("[::1]:6380");
    assert_eq!((v6.host.as_str(), v6.port), ("::1", 6380));
    assert_eq!(v6.label(), "[::1]:6380");
    assert_eq!(node("[::1]").port, 6379);
    assert_eq!(node(" 10.0.0.1:7000 ").label(), "10.0.0.1:7000");
  }

  #[test]
  fn url_forms_with_credentials_database_and_tls() {
    let n = node("redis://user:s%40cret@cache.example.com:6390/2");
    assert_eq!(n.host, "cache.example.com");
    assert_eq!(n.port, 6390);
    assert_eq!(n.username.as_deref(), Some("user"));
    assert_eq!(n.password.as_deref(), Some("s@cret"));
    assert_eq!(n.db, 2);
    assert!(!n.tls);
    let t = node("rediss://:key@cache.example.com");
    assert!(t.tls);
    assert_eq!(t.port, 6379);
    assert_eq!(t.username, None);
    assert_eq!(t.password.as_deref(), Some("key"));
    let v6 = node("redis://[::1]:7001");
    assert_eq!((v6.host.as_str(), v6.port), ("::1", 7001));
    assert_eq!(node("REDIS://h:1/").db, 0);
  }

  #[test]
  fn garbage_is_rejected_with_a_reason() {
    for (spec, reason) in [
      ("", "empty"),
      ("host:0", "port"),
      ("host:65536", "port"),
      ("host:-1", "port"),
      ("host:abc", "port"),
      ("host:", "port"),
      ("::1", "brackets"),
      ("[::1", "]"),
      ("[::1]x", "':port'"),
      ("not a node", "not a host name"),
      ("http://host:1", "unsupported scheme"),
      ("redis://", "no host"),
      ("redis://h:1/x", "database"),
      ("redis://u:%zz@h:1", "password"),
      ("a/b:1", "not a host name"),
    ] {
      let error = NodeConfig::parse(spec).expect_err(spec);
      assert!(error.contains(reason), "{spec}: {error}");
    }
  }

  #[test]
  fn a_password_never_shows() {
    for spec in [
      "redis://u:hunter2@h:99999",
      "redis://u:hunter2@bad host:1",
      "redis://u:hunter2@h:1/db",
    ] {
      let error = NodeConfig::parse(spec).unwrap_err();
      assert!(!error.contains("hunter2"), "{error}");
    }
    let n = node("redis://u:hunter2@h:1");
    assert!(!format!("{n:?}").contains("hunter2"));
    assert!(!n.label().contains("hunter2"));
    assert_eq!(n.redact("WRONGPASS hunter2"), "WRONGPASS <redacted>");
  }

  #[test]
  fn same_endpoint_ignores_case_credentials_and_database() {
    assert!(node("Host:1").same_endpoint(&node("redis://u:p@host:1/3")));
    assert!(!node("host:1").same_endpoint(&node("host:2")));
  }
}
