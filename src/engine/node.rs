//! One Redis node's address and credentials, parsed from the forms the
//! contract accepts: `host`, `host:port`, `[v6]:port`, `redis://` and
//! `rediss://` URLs (read by the redis crate). A password never appears in a
//! label, a message or a debug print: a string that does not parse is
//! described by what was expected, never repeated, since any part of it may
//! be a password.

use std::fmt;

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};

use super::credentials::CredentialSource;
use super::shape::plain;

pub const DEFAULT_PORT: u16 = 6379;

/// A node's address and credentials as callers read them (see `shape`).
macro_rules! node_shapes {
  ($expand:ident) => {
    $expand! {
      in crate::engine::node;

      #[doc = "A node of the quorum as a lock resolves it from its options and"]
      #[doc = "the environment."]
      #[derive(Clone, PartialEq, Eq)]
      pub struct NodeConfig {
        #[doc = "Host name or IP address (an IPv6 address without brackets)."]
        pub host: String,
        #[doc = "Port."]
        pub port: u16,
        #[doc = "ACL user name, if any."]
        pub username: Option<String>,
        #[doc = "Password, if any: keep it out of logs."]
        pub password: Option<String>,
        #[doc = "Database number."]
        pub db: u32,
        #[doc = "Whether the node is reached over TLS."]
        pub tls: bool,
        #[doc = "`host:port` (an IPv6 address in brackets), safe to print; set"]
        #[doc = "with the host and port, which never change after."]
        pub label: String,
        #[doc(hidden)]
        #[doc = "Where the user name and password of each connection come from, when"]
        #[doc = "they change: they then replace `username` (if it gives one) and"]
        #[doc = "`password`. Hidden from callers: a function does not cross."]
        pub credentials: Option<CredentialSource>,
      }
    }
  };
}

pub(crate) use node_shapes;
node_shapes!(plain);

impl fmt::Debug for NodeConfig {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.debug_struct("NodeConfig")
      .field("host", &self.host)
      .field("port", &self.port)
      .field("username", &self.username)
      .field("password", &self.password.as_ref().map(|_| "<redacted>"))
      .field("db", &self.db)
      .field("tls", &self.tls)
      .field("label", &self.label)
      .field("credentials", &self.credentials)
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
      return Err(at(host, "port 0 is not a port a node can listen on"));
    }
    Ok(NodeConfig {
      host: host.to_string(),
      port,
      username: None,
      password: None,
      db: 0,
      tls: false,
      label: label(host, port),
      credentials: None,
    })
  }

  /// Parses `host`, `host:port`, `[v6]:port` or a `redis://`/`rediss://` URL.
  /// A message about a string that does not parse never repeats it: it may
  /// hold a password, whole or in part. It says what was expected, and names
  /// the host when one stands where a host belongs.
  pub fn parse(spec: &str) -> Result<Self, String> {
    let spec = spec.trim();
    if spec.is_empty() {
      return Err("a node address is empty".into());
    }
    if spec.chars().any(char::is_control) {
      return Err("a node address holds a control character (a line break, a tab, ...)".into());
    }
    if let Some((scheme, _)) = spec.split_once("://") {
      return match scheme.to_ascii_lowercase().as_str() {
        "redis" => parse_url(spec, false),
        "rediss" => parse_url(spec, true),
        _ => {
          Err("unsupported scheme: a node URL starts with redis:// (or rediss:// for TLS)".into())
        }
      };
    }
    Self::parse_endpoint(spec, DEFAULT_PORT)
  }

  /// Parses `host`, `host:port` or `[v6]:port`, with `default_port` when the
  /// port is left out. Messages never repeat the text.
  pub fn parse_endpoint(spec: &str, default_port: u16) -> Result<Self, String> {
    if let Some(scheme) = mistyped_scheme(spec) {
      return Err(format!(
        "a node URL starts with {scheme}:// (a colon and two slashes)"
      ));
    }
    if spec.contains('@') {
      return Err(about(
        host_after_credentials(spec),
        "a user name or password goes in a URL: redis://user:password@host:port \
         (rediss:// for TLS), with '/', '?', '#', '@', ':' and '%' in them percent-encoded",
      ));
    }
    let (host, port) = split_host_port(spec)?;
    Self::endpoint(host, port.unwrap_or(default_port))
  }

  /// `host:port`, with brackets around an IPv6 address; safe to print.
  pub fn label(&self) -> &str {
    &self.label
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

  /// Replaces this node's password, if any, and the passwords its
  /// credentials provider handed out last, wherever they occur in `text`: a
  /// last guard for messages that come from elsewhere (a server, a socket).
  pub fn redact(&self, text: &str) -> String {
    let text = match &self.password {
      Some(password) if !password.is_empty() => text.replace(password.as_str(), "<redacted>"),
      _ => text.to_string(),
    };
    match &self.credentials {
      Some(source) => source.redact(&text),
      None => text,
    }
  }
}

/// The expected shape of a node URL, for messages.
const URL_SHAPE: &str = "redis://[user[:password]@]host[:port][/db] (rediss:// for TLS)";

/// Tells to percent-encode what only a password can have put where it is.
const ENCODE: &str = "a user name or password with '/', '?' or '#' in it must be \
  percent-encoded ('/' as %2F, '?' as %3F, '#' as %23; '@' as %40, ':' as %3A and '%' as %25 too)";

fn label(host: &str, port: u16) -> String {
  if host.contains(':') {
    format!("[{host}]:{port}")
  } else {
    format!("{host}:{port}")
  }
}

/// `problem`, after the node's host when it is known.
fn about(host: Option<String>, problem: &str) -> String {
  match host {
    Some(host) => format!("'{host}': {problem}"),
    None => problem.to_string(),
  }
}

/// `problem`, after `host` when it is a well-formed host (and so not part of
/// a password that landed where the host should be).
fn at(host: &str, problem: &str) -> String {
  about(check_host(host).ok().map(|_| host.to_string()), problem)
}

/// `redis:/...` or `rediss:\...`: a URL whose `//` went wrong. `redis:6379`
/// is a host named redis, so only a slash after the colon counts.
fn mistyped_scheme(spec: &str) -> Option<&'static str> {
  let lower = spec.get(..8).unwrap_or(spec).to_ascii_lowercase();
  ["rediss", "redis"].into_iter().find(|scheme| {
    lower
      .strip_prefix(scheme)
      .and_then(|rest| rest.strip_prefix(':'))
      .is_some_and(|rest| rest.starts_with(['/', '\\']))
  })
}

/// The host after the last '@' of `text`, up to the path, when it is a
/// well-formed `host[:port]`: a password does not reach past its '@'.
fn host_after_credentials(text: &str) -> Option<String> {
  let (_, after) = text.rsplit_once('@')?;
  safe_label(after.split(['/', '?', '#']).next().unwrap_or(""))
}

/// `hostport` as a label when it is a well-formed `host[:port]`.
fn safe_label(hostport: &str) -> Option<String> {
  let (host, port) = split_host_port(hostport).ok()?;
  check_host(host).ok()?;
  Some(label(host, port.unwrap_or(DEFAULT_PORT)))
}

/// Splits `host`, `host:port` or `[v6]:port`; the port is `None` when left out.
fn split_host_port(spec: &str) -> Result<(&str, Option<u16>), String> {
  if let Some(rest) = spec.strip_prefix('[') {
    let (host, after) = rest
      .split_once(']')
      .ok_or("an IPv6 address in brackets misses its ']'")?;
    if !host.contains(':') {
      return Err("only an IPv6 address goes in brackets".into());
    }
    return match after {
      "" => Ok((host, None)),
      _ => match after.strip_prefix(':') {
        Some(port) => Ok((host, Some(parse_port(host, port)?))),
        None => Err(at(
          host,
          "expected ':port' after an IPv6 address in brackets",
        )),
      },
    };
  }
  match spec.split_once(':') {
    None => Ok((spec, None)),
    Some((_, port)) if port.contains(':') => Err(
      "an address with several ':' is an IPv6 address: write it in brackets, as [::1]:6379".into(),
    ),
    Some(("", _)) => Err("the address has no host before its ':'".into()),
    Some((host, port)) => Ok((host, Some(parse_port(host, port)?))),
  }
}

fn parse_port(host: &str, port: &str) -> Result<u16, String> {
  match port.parse::<u16>() {
    Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
    _ => Err(at(host, "the port must be a number from 1 to 65535")),
  }
}

/// A `redis://` or `rediss://` URL, parsed by the redis crate once the
/// mistakes it would misread are ruled out.
fn parse_url(spec: &str, tls: bool) -> Result<NodeConfig, String> {
  let rest = &spec[spec.find("://").map_or(0, |i| i + 3)..];
  let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
  // An '@' after the end of the authority means a password holds a '/', '?'
  // or '#': read as a URL, part of it would become the host or the path.
  if tail.contains('@') {
    return Err(about(host_after_credentials(rest), ENCODE));
  }
  let (userinfo, hostport) = match authority.rsplit_once('@') {
    Some((userinfo, hostport)) => (userinfo, hostport),
    None => ("", authority),
  };
  let shown = safe_label(hostport);
  if hostport.is_empty() {
    return Err(format!("the URL has no host: expected {URL_SHAPE}"));
  }
  let (host, _) = split_host_port(hostport)?;
  check_host(host)?;
  if has_stray_percent(userinfo) {
    return Err(about(
      shown,
      "the user name or password has a '%' without two hex digits after it: write a '%' as %25",
    ));
  }
  if tail.contains(['?', '#']) {
    return Err(about(
      shown,
      &format!("a node URL has no query ('?') or fragment ('#'); {ENCODE}"),
    ));
  }
  let db = match tail.trim_matches('/') {
    "" => 0,
    db => db
      .parse::<u32>()
      .ok()
      .filter(|_| db.bytes().all(|b| b.is_ascii_digit()))
      .ok_or_else(|| about(shown.clone(), "the database after '/' must be a number"))?,
  };
  // The crate's reasons are not shown: nothing promises they leave the URL out.
  let info = spec.into_connection_info().map_err(|_| {
    about(
      shown.clone(),
      &format!("not a valid node URL: expected {URL_SHAPE}"),
    )
  })?;
  let (host, port) = match info.addr() {
    ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => (host, *port),
    _ => return Err(format!("not a TCP address: expected {URL_SHAPE}")),
  };
  let mut node = NodeConfig::endpoint(host, port)?;
  let settings = info.redis_settings();
  node.username = settings
    .username()
    .filter(|u| !u.is_empty())
    .map(str::to_string);
  node.password = settings
    .password()
    .filter(|p| !p.is_empty())
    .map(str::to_string);
  node.db = db;
  node.tls = tls;
  Ok(node)
}

/// Whether a '%' is not followed by two hex digits: the crate would keep it
/// as it is, and a password meant literally would differ once decoded.
fn has_stray_percent(text: &str) -> bool {
  let bytes = text.as_bytes();
  bytes.iter().enumerate().any(|(i, b)| {
    *b == b'%'
      && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
        && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
  })
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
    Err(
      "the host is not a host name or IP address (letters, digits, '-', '.' and '_'; \
       an IPv6 address in brackets)"
        .into(),
    )
  }
}

/// What the parsing tests share: a secret as users paste them, and a check
/// that a text shows no part of it.
#[cfg(test)]
pub(crate) mod secrets {
  /// A base64 key with '/', '+' and '=', as Azure hands them out.
  pub const KEY: &str = "Zk9xQ2/Lm+Tq7WsYtUbVc3Nd8Ke5Rf1Hg6Jh0Pi4Ao=";

  /// Some run of four characters of `secret` that `text` shows, if any.
  pub fn leaked<'s>(text: &str, secret: &'s str) -> Option<&'s str> {
    let chars: Vec<(usize, char)> = secret.char_indices().collect();
    let width = chars.len().min(4);
    (0..=chars.len() - width).find_map(|i| {
      let start = chars[i].0;
      let end = chars.get(i + width).map_or(secret.len(), |c| c.0);
      let piece = &secret[start..end];
      text.contains(piece).then_some(piece)
    })
  }
}

#[cfg(test)]
mod tests {
  use super::secrets::{leaked, KEY};
  use super::*;

  fn node(spec: &str) -> NodeConfig {
    NodeConfig::parse(spec).unwrap_or_else(|e| panic!("{spec}: {e}"))
  }

  #[test]
  fn every_accepted_form() {
    type Expected<'a> = (&'a str, u16, Option<&'a str>, Option<&'a str>, u32, bool);
    let cases: &[(&str, Expected)] = &[
      ("localhost", ("localhost", 6379, None, None, 0, false)),
      ("localhost:6380", ("localhost", 6380, None, None, 0, false)),
      (" 10.0.0.1:7000 ", ("10.0.0.1", 7000, None, None, 0, false)),
      ("redis", ("redis", 6379, None, None, 0, false)),
      ("redis:6379", ("redis", 6379, None, None, 0, false)),
      ("[::1]", ("::1", 6379, None, None, 0, false)),
      ("[::1]:6380", ("::1", 6380, None, None, 0, false)),
      (
        "my_host-1.example.com:1",
        ("my_host-1.example.com", 1, None, None, 0, false),
      ),
      ("redis://h", ("h", 6379, None, None, 0, false)),
      ("REDIS://h:1/", ("h", 1, None, None, 0, false)),
      ("redis://h:1//2/", ("h", 1, None, None, 2, false)),
      ("rediss://h:6380", ("h", 6380, None, None, 0, true)),
      ("redis://[::1]:7001", ("::1", 7001, None, None, 0, false)),
      (
        "redis://user:s%40cret@cache.example.com:6390/2",
        (
          "cache.example.com",
          6390,
          Some("user"),
          Some("s@cret"),
          2,
          false,
        ),
      ),
      (
        "rediss://:key@cache.example.com",
        ("cache.example.com", 6379, None, Some("key"), 0, true),
      ),
      ("redis://user@h", ("h", 6379, Some("user"), None, 0, false)),
      ("redis://user:@h", ("h", 6379, Some("user"), None, 0, false)),
      ("redis://:@h", ("h", 6379, None, None, 0, false)),
      // '@' and ':' need no encoding in a password: the last '@' ends it.
      (
        "redis://:p@ss:w@rd@h:1",
        ("h", 1, None, Some("p@ss:w@rd"), 0, false),
      ),
      (
        "redis://:a+b=c%2Fd%3Fe%23f%25g@h",
        ("h", 6379, None, Some("a+b=c/d?e#f%g"), 0, false),
      ),
      (
        "redis://%75s%3Aer:pw@h",
        ("h", 6379, Some("us:er"), Some("pw"), 0, false),
      ),
      (
        "redis://:%C3%A9t%C3%A9@h",
        ("h", 6379, None, Some("été"), 0, false),
      ),
      ("redis://:ét€@h", ("h", 6379, None, Some("ét€"), 0, false)),
    ];
    for (spec, (host, port, username, password, db, tls)) in cases {
      let n = node(spec);
      assert_eq!(
        (
          n.host.as_str(),
          n.port,
          n.username.as_deref(),
          n.password.as_deref(),
          n.db,
          n.tls
        ),
        (*host, *port, *username, *password, *db, *tls),
        "{spec}"
      );
    }
    assert_eq!(node("[::1]:6380").label(), "[::1]:6380");
    assert_eq!(node("redis://u:p@h:1/3").label(), "h:1");
    assert_eq!(NodeConfig::parse_endpoint("h", 6380).unwrap().port, 6380);
    assert_eq!(
      NodeConfig::parse_endpoint("[::1]", 6380).unwrap().port,
      6380
    );
  }

  #[test]
  fn every_rejection_has_its_reason() {
    for (spec, reason) in [
      ("", "empty"),
      ("   ", "empty"),
      ("host:0", "port"),
      ("host:65536", "port"),
      ("host:-1", "port"),
      ("host:+1", "port"),
      ("host:abc", "port"),
      ("host:", "port"),
      (":6379", "no host"),
      ("redis://:pw", "no host"),
      ("::1", "brackets"),
      ("a:b:c", "brackets"),
      ("[::1", "]"),
      ("[::1]x", "':port'"),
      ("[::1]:0", "port"),
      ("[host]:1", "IPv6"),
      ("[::g]:1", "not a host name"),
      ("not a node", "not a host name"),
      ("a/b:1", "not a host name"),
      ("h\n:1", "control character"),
      ("h\u{0}", "control character"),
      (&"a".repeat(254), "253"),
      ("http://host:1", "unsupported scheme"),
      ("unix:///tmp/redis.sock", "unsupported scheme"),
      ("redis:/h", "starts with redis:// (a colon and two slashes)"),
      (
        "rediss:/:pw@h:1",
        "starts with rediss:// (a colon and two slashes)",
      ),
      ("REDIS:\\\\h", "starts with redis:// (a colon"),
      ("u:pw@h:1", "goes in a URL"),
      ("@h", "goes in a URL"),
      ("redis://", "no host"),
      ("redis://:pw@", "no host"),
      ("redis://:pw@/2", "no host"),
      ("redis://h:0", "port"),
      ("redis://h:99999", "port"),
      ("redis://h:x", "port"),
      ("redis://bad host:1", "not a host name"),
      ("redis://h%41:1", "not a host name"),
      ("redis://h:1/x", "database"),
      ("redis://h:1/-1", "database"),
      ("redis://h:1/4294967296", "database"),
      ("redis://h:1/2/3", "database"),
      ("redis://h:1?protocol=resp3", "query"),
      ("rediss://h:1/#insecure", "fragment"),
      ("redis://u:%zz@h:1", "%25"),
      ("redis://u:100%@h:1", "%25"),
      ("redis://:a/b@h", "percent-encoded"),
      ("redis://:a?b@h", "percent-encoded"),
      ("redis://:a#b@h", "percent-encoded"),
      ("redis://h/0#@x", "percent-encoded"),
      ("redis://:%FF@h", "not a valid node URL"),
      ("redis://0.0.0.0:1", "not a valid node URL"),
    ] {
      let error = NodeConfig::parse(spec).expect_err(spec);
      assert!(error.contains(reason), "{spec:?}: {error}");
    }
  }

  #[test]
  fn messages_name_the_host_only_where_a_host_belongs() {
    for (spec, host) in [
      (
        "u:pw@cache.example.com:6380",
        Some("'cache.example.com:6380'"),
      ),
      (
        "redis://:a/b@cache.example.com",
        Some("'cache.example.com:6379'"),
      ),
      (
        "redis://u:p@cache.example.com:1/x",
        Some("'cache.example.com:1'"),
      ),
      ("cache.example.com:abc", Some("'cache.example.com'")),
      ("redis://:pw@bad host", None),
      ("u:pw@bad host", None),
      ("pw@", None),
    ] {
      let error = NodeConfig::parse(spec).unwrap_err();
      match host {
        Some(host) => assert!(error.starts_with(host), "{spec}: {error}"),
        None => assert!(!error.starts_with('\''), "{spec}: {error}"),
      }
    }
  }

  #[test]
  fn a_secret_in_a_string_that_does_not_parse_never_shows() {
    let slashless = KEY.replace('/', "");
    let nasty = "p/a+s=s#w?o@r:d%x";
    let cases: Vec<(String, &str)> = vec![
      (format!("user:{KEY}@cache.example.com:6380"), KEY),
      (format!("rediss:/:{KEY}@cache.example.com:6380"), KEY),
      (
        format!("redis://:ab#{slashless}@cache.example.com"),
        &slashless,
      ),
      (format!("redis://:{KEY}@cache.example.com:6380"), KEY),
      (format!("rediss://:{nasty}@cache.example.com:6380"), nasty),
      (format!("redis://:{nasty}"), nasty),
      (format!("redis://:{slashless}"), &slashless),
      (format!("redis://{slashless}"), &slashless),
      (format!("redis://u:{slashless}@h:99999"), &slashless),
      (format!("redis://u:{slashless}@h:1/x"), &slashless),
      (format!("redis://u:{slashless}@h:1?x"), &slashless),
      (format!("redis://u:%zz{slashless}@h"), &slashless),
      (format!("redis://u:{slashless}@bad host:1"), &slashless),
      (format!("redis://u:{slashless}@"), &slashless),
      (format!("redis://u:{slashless}@0.0.0.0"), &slashless),
      (format!("ftp://u:{KEY}@h"), KEY),
      (format!("{KEY}://h"), KEY),
      (format!("cache.example.com:{slashless}"), &slashless),
      (format!("{slashless}:6379"), &slashless),
      (KEY.to_string(), KEY),
      (format!("[{KEY}]:6379"), KEY),
      (format!("[::1]{slashless}"), &slashless),
      (format!(":{slashless}"), &slashless),
      (format!("{KEY}@"), KEY),
      (format!("h:6380,password={KEY}"), KEY),
      (format!("h\n{KEY}"), KEY),
      (format!("{slashless}:{slashless}:{slashless}"), &slashless),
      (format!("redis://:{}", "é".repeat(3)), "ééé"),
    ];
    for (spec, secret) in &cases {
      let error = NodeConfig::parse(spec).expect_err(spec);
      assert_eq!(leaked(&error, secret), None, "{spec}: {error}");
    }
  }

  #[test]
  fn a_parsed_password_shows_in_no_label_or_debug_print() {
    let n = node(&format!("redis://u:{}@h:1", KEY.replace('/', "%2F")));
    assert_eq!(n.password.as_deref(), Some(KEY));
    assert_eq!(leaked(&format!("{n:?}"), KEY), None);
    assert_eq!(leaked(n.label(), KEY), None);
    assert_eq!(
      n.redact(&format!("WRONGPASS {KEY}")),
      "WRONGPASS <redacted>"
    );
  }

  #[test]
  fn same_endpoint_ignores_case_credentials_and_database() {
    assert!(node("Host:1").same_endpoint(&node("redis://u:p@host:1/3")));
    assert!(!node("host:1").same_endpoint(&node("host:2")));
  }
}
