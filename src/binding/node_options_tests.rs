//! Connection strings, `REDIS_NODES` lists and node objects: every form,
//! every rejection, and no secret in any message.

use super::*;
use crate::binding::raw::build::{obj, s};
use crate::engine::node::secrets::{leaked, KEY};

const PORTAL: &str =
  "myrediscache.redis.cache.windows.net:6380,password=Zk9xQ2/Lm+Tq7WsYtUbVc3Nd8Ke5Rf1Hg6Jh0Pi4Ao=,ssl=True,abortConnect=False";

/// An environment with only `name` set.
fn only(name: &'static str, value: String) -> impl Fn(&str) -> Option<String> {
  move |asked: &str| (asked == name).then(|| value.clone())
}

type Fields<'a> = (&'a str, u16, Option<&'a str>, Option<&'a str>, u32, bool);

fn fields(node: &NodeConfig) -> Fields<'_> {
  (
    node.host.as_str(),
    node.port,
    node.username.as_deref(),
    node.password.as_deref(),
    node.db,
    node.tls,
  )
}

#[test]
fn connection_strings_of_every_form() {
  let cases: &[(&str, Fields)] = &[
    (
      PORTAL,
      (
        "myrediscache.redis.cache.windows.net",
        6380,
        None,
        Some(KEY),
        0,
        true,
      ),
    ),
    ("h,ssl=true", ("h", 6380, None, None, 0, true)),
    ("h,ssl=False", ("h", 6379, None, None, 0, false)),
    ("h:7000,SSL=TRUE", ("h", 7000, None, None, 0, true)),
    (
      "h:10000,ssl=True,abortConnect=False",
      ("h", 10000, None, None, 0, true),
    ),
    ("password=pw,h:1", ("h", 1, None, Some("pw"), 0, false)),
    (
      " h:1 , PASSWORD = pw , User = app , DefaultDatabase = 3 , abortconnect=TRUE ",
      ("h", 1, Some("app"), Some("pw"), 3, false),
    ),
    ("h:1,password=", ("h", 1, None, None, 0, false)),
    ("h:1,user=,password=x", ("h", 1, None, Some("x"), 0, false)),
    (
      "h:1,password=a=b==",
      ("h", 1, None, Some("a=b=="), 0, false),
    ),
    (
      "h:1,password=p@ss:w/rd?#%",
      ("h", 1, None, Some("p@ss:w/rd?#%"), 0, false),
    ),
    ("h:1,,password=x,", ("h", 1, None, Some("x"), 0, false)),
    (
      "h:1\n,\tpassword=x\r\n",
      ("h", 1, None, Some("x"), 0, false),
    ),
    (
      "[::1]:7000,password=x",
      ("::1", 7000, None, Some("x"), 0, false),
    ),
    ("[::1],ssl=True", ("::1", 6380, None, None, 0, true)),
    ("h:1,defaultDatabase=15", ("h", 1, None, None, 15, false)),
    ("h:1,", ("h", 1, None, None, 0, false)),
  ];
  for (spec, expected) in cases {
    let node = node_string(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
    assert_eq!(fields(&node), *expected, "{spec}");
  }
  // A URL keeps ',' and '=' in its password: it is read whole.
  let url = node_string("redis://:a,b=c@h:1").unwrap();
  assert_eq!(fields(&url), ("h", 1, None, Some("a,b=c"), 0, false));
}

#[test]
fn connection_string_rejections_have_their_reason() {
  for (spec, reason) in [
    (
      "h:1,pasword=x",
      "unknown key 'pasword'; did you mean 'password'?",
    ),
    ("h:1,abortconect=False", "did you mean 'abortConnect'?"),
    ("h:1,sll=True", "did you mean 'ssl'?"),
    (
      "h:1,allowAdmin=true",
      "unknown key 'allowAdmin'; known keys are password, user, ssl, abortConnect, defaultDatabase",
    ),
    ("h:1,abc1=x", "not shown"),
    (&format!("h:1,{}=x", "k".repeat(25)), "not shown"),
    (
      "h:1,connectTimeout=5000",
      "'connectTimeout' applies to every node at once: set the lock's connect_timeout_ms option",
    ),
    ("h:1,SYNCTIMEOUT=1", "command_timeout_ms"),
    ("h:1,asyncTimeout=1", "command_timeout_ms"),
    ("h:1,ssl=yes", "'ssl' must be True or False"),
    ("h:1,ssl=", "'ssl' must be True or False"),
    ("h:1,abortConnect=0", "'abortConnect' must be True or False"),
    (
      "h:1,defaultDatabase=-1",
      "'defaultDatabase' must be a database number",
    ),
    (
      "h:1,defaultDatabase=x",
      "'defaultDatabase' must be a database number",
    ),
    (
      "h:1,defaultDatabase=4294967296",
      "'defaultDatabase' must be a database number",
    ),
    ("h:1,password=a,PASSWORD=b", "'password' is given twice"),
    ("h:1,i:2", "second host:port"),
    ("h:1,i:2,password=x", "give each node its own entry"),
    ("password=a", "no host:port"),
    ("password=a,ssl=True", "no host:port"),
    ("h:1,ssl=True;i:2,ssl=True", "separate them with ','"),
    ("h:0,ssl=True", "port"),
    ("h:x,ssl=True", "port"),
    ("bad host,ssl=True", "not a host name"),
    ("::1,ssl=True", "brackets"),
    ("rediss://h:1,password=x", "not a URL"),
    ("rediss:/h:1,password=x", "rediss://"),
    ("u:p@h:1,ssl=True", "goes in a URL"),
    ("h:1,password=a\u{0}b", "control character"),
    ("h:1,pass\tword=x", "control character"),
  ] {
    let error = node_string(spec).expect_err(spec);
    assert!(error.contains(reason), "{spec}: {error}");
  }
  let error = node_string("cache.example.com:6380,password=x,sll=True").unwrap_err();
  assert!(error.starts_with("'cache.example.com:6380': "), "{error}");
  let error = node_string("bad host,password=x,sll=True").unwrap_err();
  assert!(!error.starts_with('\''), "{error}");
}

#[test]
fn redis_nodes_splits_at_each_address() {
  let three = [PORTAL, PORTAL, PORTAL].join(",");
  for (list, entries) in [
    ("a:1,b:2", vec!["a:1", "b:2"]),
    (" a:1 ,, b:2 ,", vec!["a:1", "b:2"]),
    (
      "a:1,password=x,ssl=True,b:2,c:3,user=u",
      vec!["a:1,password=x,ssl=True", "b:2", "c:3,user=u"],
    ),
    (three.as_str(), vec![PORTAL, PORTAL, PORTAL]),
    ("redis://:a,b=c@h:1,d:2", vec!["redis://:a,b=c@h:1", "d:2"]),
  ] {
    assert_eq!(split_node_list(list).unwrap(), entries, "{list}");
  }
  let error = split_node_list("password=x,a:1").unwrap_err();
  assert!(error.contains("starts with its host:port"), "{error}");

  let hosts = ["a.example.com", "b.example.com", "c.example.com"];
  let list = hosts
    .map(|host| format!("{host}:6380,password={KEY},ssl=True,abortConnect=False"))
    .join(",");
  let nodes = nodes_from_env(&only("REDIS_NODES", list)).unwrap();
  assert_eq!(
    nodes.iter().map(NodeConfig::label).collect::<Vec<_>>(),
    hosts.map(|h| format!("{h}:6380"))
  );
  assert!(nodes
    .iter()
    .all(|n| n.tls && n.password.as_deref() == Some(KEY)));
}

#[test]
fn redis_nodes_errors_name_the_entry_and_the_comma_rule() {
  let error = nodes_from_env(&only("REDIS_NODES", "a:1,redis://:x,y@h:2".into())).unwrap_err();
  assert!(
    error.starts_with("invalid environment variable REDIS_NODES: entry 1: "),
    "{error}"
  );
  assert!(error.contains("%2C"), "{error}");
  let error = nodes_from_env(&only("REDIS_NODES", "a:1,b:0".into())).unwrap_err();
  assert!(
    error.contains("entry 1") && !error.contains("%2C"),
    "{error}"
  );
}

#[test]
fn redis_instances_takes_objects_and_strings() {
  let json = format!(
    r#"["{PORTAL}", {{"host":"b.example.com","port":6380,"password":"k","ssl":true}}, "redis://c:3"]"#
  );
  let nodes = nodes_from_env(&only("REDIS_INSTANCES", json)).unwrap();
  assert_eq!(
    nodes
      .iter()
      .map(|n| (n.label.clone(), n.tls))
      .collect::<Vec<_>>(),
    [
      (
        "myrediscache.redis.cache.windows.net:6380".to_string(),
        true
      ),
      ("b.example.com:6380".to_string(), true),
      ("c:3".to_string(), false),
    ]
  );
  let many = format!("[{}]", vec!["\"h:1\""; 16].join(","));
  let error = nodes_from_env(&only("REDIS_INSTANCES", many)).unwrap_err();
  assert!(error.contains("at most 15 nodes"), "{error}");
}

#[test]
fn environment_values_are_bounded_before_they_are_parsed() {
  for name in ["REDIS_NODES", "REDIS_INSTANCES"] {
    let error = nodes_from_env(&only(name, "a".repeat(MAX_ENV_BYTES + 1))).unwrap_err();
    assert!(
      error.contains(name) && error.contains("at most 65536"),
      "{error}"
    );
  }
}

#[test]
fn node_lists_and_objects_too_large_or_of_the_wrong_type() {
  for (value, reason) in [
    (
      Raw::TooLarge(Size::Array(4_294_967_295)),
      "at most 15 nodes, got 4294967295",
    ),
    (Raw::Array(vec![s("h:1"); 16]), "at most 15 nodes, got 16"),
    (s(PORTAL), "must be an array"),
    (
      Raw::Array(vec![Raw::TooLarge(Size::String(100_000_000))]),
      "entry 0: a node string of 100000000 characters is too long",
    ),
    (
      Raw::Array(vec![obj(&[
        ("host", s("h")),
        ("password", Raw::TooLarge(Size::String(9))),
      ])]),
      "node key 'password' is too long",
    ),
    (
      Raw::Array(vec![obj(&[("host", Raw::TooLarge(Size::String(9)))])]),
      "node key 'host' is too long",
    ),
    (
      Raw::Array(vec![Raw::TooLarge(Size::Object(5000))]),
      "got an object of 5000 keys",
    ),
  ] {
    let error = nodes_from_option("redis_nodes", &value).expect_err(reason);
    assert!(error.contains(reason), "{reason}: {error}");
  }
}

#[test]
fn no_message_shows_a_secret() {
  let slashless = KEY.replace('/', "");
  let strings = [
    format!("h:6380,password={KEY},sll=True"),
    format!("h:6380,password={KEY},ssl=maybe"),
    format!("h:6380,password={KEY},ssl={KEY}"),
    format!("h:6380,password={KEY},abortConnect={KEY}"),
    format!("h:6380,password={KEY},defaultDatabase={KEY}"),
    format!("h:6380,password={KEY},password={KEY}"),
    format!("h:6380,password={KEY},syncTimeout={KEY}"),
    format!("h:6380,{KEY}"),
    format!("{slashless},h:6380"),
    format!("{slashless}x,h:6380,password=x"),
    format!("h:6380,{slashless}"),
    format!("h:6380,{slashless}=x"),
    format!("h:6380,x{slashless}=x"),
    format!("password={KEY}"),
    format!("password={KEY},{slashless}:1"),
    format!("{KEY},ssl=True"),
    format!("rediss://h:6380,password={KEY}"),
    format!("rediss://:{KEY}@h:6380,ssl=True"),
    format!("user:{KEY}@h:6380,ssl=True"),
    format!("h:{slashless},ssl=True"),
  ];
  let objects = [
    obj(&[("host", s(&format!("h:6380,password={KEY}")))]),
    obj(&[("host", s("h")), ("port", s(KEY))]),
    obj(&[("host", s("h")), ("db", s(KEY))]),
    obj(&[("host", s("h")), ("tls", s(KEY))]),
    obj(&[("host", s("h")), ("username", Raw::Array(vec![s(KEY)]))]),
    obj(&[("host", s("bad host")), ("password", s(KEY))]),
    obj(&[("host", s("h")), ("password", Raw::Array(vec![s(KEY)]))]),
    obj(&[("host", s("h")), ("password", obj(&[("k", s(KEY))]))]),
    obj(&[("host", s(KEY)), ("password", s(KEY))]),
    obj(&[("host", s("h")), ("password", s(KEY)), ("pasword", s(KEY))]),
  ];
  let mut messages: Vec<(String, String)> = Vec::new();
  for spec in &strings {
    let as_entry = nodes_from_option("redis_nodes", &Raw::Array(vec![s(spec)])).unwrap_err();
    let as_env = nodes_from_env(&only("REDIS_NODES", spec.clone())).unwrap_err();
    let as_json = serde_json::to_string(&[spec]).unwrap();
    let as_instance = nodes_from_env(&only("REDIS_INSTANCES", as_json)).unwrap_err();
    messages.extend([as_entry, as_env, as_instance].map(|m| (spec.clone(), m)));
  }
  messages.push((
    "a string for the list".into(),
    nodes_from_option("redis_nodes", &s(&strings[0])).unwrap_err(),
  ));
  for object in &objects {
    let error = nodes_from_option("redis_nodes", &Raw::Array(vec![object.clone()])).unwrap_err();
    messages.push((format!("{object:?}"), error));
  }
  for text in [
    format!(r#"[{{"host":"h","password":"{KEY}""#),
    format!(r#"{{"host":"h","password":"{KEY}"}}"#),
    format!(r#"[{{"host":"h","password":"{KEY}\x"}}]"#),
    format!(r#""{KEY}""#),
    format!(r#"[{{"host":"h","port":"{KEY}"}}]"#),
  ] {
    messages.push((
      text.clone(),
      nodes_from_env(&only("REDIS_INSTANCES", text)).unwrap_err(),
    ));
  }
  for (input, message) in &messages {
    for secret in [KEY, slashless.as_str()] {
      assert_eq!(leaked(message, secret), None, "{input}: {message}");
    }
  }
}
