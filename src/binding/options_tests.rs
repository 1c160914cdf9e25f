//! The options parser against every spelling, default and mistake.

use super::*;
use crate::binding::raw::build::{obj, s};
use crate::engine::node::NodeConfig;

fn no_env(_: &str) -> Option<String> {
  None
}

fn nodes(specs: &[&str]) -> Raw {
  Raw::Array(specs.iter().map(|spec| s(spec)).collect())
}

#[test]
fn defaults_fill_what_is_not_given() {
  let config = lock_config(&Raw::Undefined, &no_env).unwrap();
  let labels: Vec<&str> = config.nodes.iter().map(NodeConfig::label).collect();
  assert_eq!(
    labels,
    ["localhost:6379", "localhost:6380", "localhost:6381"]
  );
  assert_eq!(config.lock_ttl_ms, 30_000);
  assert_eq!(config.retry.retries, Retries::Limited(3));
  assert_eq!(config.retry.delay, Duration::from_millis(200));
  assert_eq!(config.retry.jitter, Duration::from_millis(100));
  assert_eq!(config.key_prefix, "redlock:");
  assert_eq!(config.command_timeout, Duration::from_millis(500));
}

#[test]
fn both_spellings_are_read_but_not_together() {
  let snake = lock_config(&obj(&[("lock_ttl_ms", Raw::Number(5000.0))]), &no_env).unwrap();
  let camel = lock_config(&obj(&[("lockTtlMs", Raw::Number(5000.0))]), &no_env).unwrap();
  assert_eq!((snake.lock_ttl_ms, camel.lock_ttl_ms), (5000, 5000));
  let both = obj(&[
    ("lock_ttl_ms", Raw::Number(1.0)),
    ("lockTtlMs", Raw::Number(2.0)),
  ]);
  let error = lock_config(&both, &no_env).unwrap_err();
  assert!(error.contains("given twice"), "{error}");
}

#[test]
fn unknown_keys_are_named_with_a_suggestion() {
  for (key, meant) in [
    ("lock_ttl", "lock_ttl_ms"),
    ("LOCK_TTL_MS", "lock_ttl_ms"),
    ("retryCont", "retry_count"),
    ("redis_node", "redis_nodes"),
    ("keyprefix", "key_prefix"),
  ] {
    let error = lock_config(&obj(&[(key, Raw::Number(1.0))]), &no_env).unwrap_err();
    assert!(error.contains(&format!("'{key}'")), "{error}");
    assert!(
      error.contains(&format!("did you mean '{meant}'")),
      "{key}: {error}"
    );
  }
  let error = lock_config(&obj(&[("colour", Raw::Number(1.0))]), &no_env).unwrap_err();
  assert!(error.contains("known keys are"), "{error}");
  let error = lock_config(&obj(&[("fencing", Raw::Bool(true))]), &no_env).unwrap_err();
  assert!(error.contains("it is an option of acquire()"), "{error}");
}

#[test]
fn wrong_types_and_ranges_name_the_key() {
  for (key, value) in [
    ("lock_ttl_ms", s("30000")),
    ("lock_ttl_ms", Raw::Number(0.0)),
    ("lock_ttl_ms", Raw::Number(-1.0)),
    ("lock_ttl_ms", Raw::Number(f64::NAN)),
    ("lock_ttl_ms", Raw::Number(f64::INFINITY)),
    ("lock_ttl_ms", Raw::Number(1e20)),
    ("lock_ttl_ms", Raw::Number(1.5)),
    ("lock_ttl_ms", Raw::Null),
    ("retry_count", Raw::Number(-2.0)),
    ("retry_count", Raw::Number(0.5)),
    ("retry_delay_ms", Raw::Number(-1.0)),
    ("retry_jitter_ms", Raw::Bool(true)),
    ("drift_factor", Raw::Number(2.0)),
    ("key_prefix", Raw::Number(1.0)),
    ("connect_timeout_ms", Raw::Number(0.0)),
    ("command_timeout_ms", Raw::Number(1e9)),
    ("redis_nodes", s("localhost:6379")),
    ("redis_nodes", Raw::Array(vec![])),
    ("redis_nodes", nodes(&["a:1", "a:1"])),
    ("redis_nodes", nodes(&["a:0"])),
    ("redis_nodes", nodes(&["a:65536"])),
    ("redis_nodes", nodes(&["what is this"])),
    ("redis_nodes", Raw::Array(vec![Raw::Number(6379.0)])),
    (
      "redis_nodes",
      Raw::Array(vec![obj(&[("port", Raw::Number(1.0))])]),
    ),
    (
      "redis_nodes",
      Raw::Array(vec![obj(&[("host", s("a")), ("prot", Raw::Number(1.0))])]),
    ),
  ] {
    let error = lock_config(&obj(&[(key, value.clone())]), &no_env)
      .expect_err(&format!("{key} = {value:?} accepted"));
    assert!(error.contains(key), "{key} = {value:?}: {error}");
  }
}

#[test]
fn node_objects_as_in_redis_instances() {
  let node_object = obj(&[
    ("host", s("cache.example.com")),
    ("port", Raw::Number(6380.0)),
    ("password", s("hunter2")),
    ("ssl", Raw::Bool(true)),
  ]);
  let config = lock_config(
    &obj(&[("redis_nodes", Raw::Array(vec![node_object]))]),
    &no_env,
  )
  .unwrap();
  let node = &config.nodes[0];
  assert_eq!(
    (node.host.as_str(), node.port, node.tls),
    ("cache.example.com", 6380, true)
  );
  assert_eq!(node.password.as_deref(), Some("hunter2"));
  let wrong = obj(&[("host", s("h")), ("password", Raw::Number(1234.0))]);
  let error = lock_config(&obj(&[("redis_nodes", Raw::Array(vec![wrong]))]), &no_env).unwrap_err();
  assert!(
    error.contains("password") && !error.contains("1234"),
    "{error}"
  );
}

#[test]
fn environment_defaults_apply_when_options_are_silent() {
  let env = |name: &str| match name {
    "REDIS_NODES" => Some("r1:7001, r2:7002,r3:7003".to_string()),
    "REDIS_LOCK_TTL_MS" => Some("15000".to_string()),
    "REDIS_RETRY_COUNT" => Some("-1".to_string()),
    "REDIS_RETRY_DELAY_MS" => Some("50".to_string()),
    _ => None,
  };
  let config = lock_config(&Raw::Undefined, &env).unwrap();
  assert_eq!(config.nodes.len(), 3);
  assert_eq!(config.nodes[1].label(), "r2:7002");
  assert_eq!(config.lock_ttl_ms, 15_000);
  assert_eq!(config.retry.retries, Retries::Unlimited);
  assert_eq!(config.retry.delay, Duration::from_millis(50));
  let explicit = lock_config(&obj(&[("lock_ttl_ms", Raw::Number(1000.0))]), &env).unwrap();
  assert_eq!(explicit.lock_ttl_ms, 1000);
}

#[test]
fn redis_instances_json_is_read_when_redis_nodes_is_unset() {
  let env = |name: &str| {
    match name {
    "REDIS_INSTANCES" => Some(
      r#"[{"host":"a.example.com","port":6380,"password":"k1","ssl":true},{"host":"b.example.com","port":6380,"password":"k2","ssl":true},{"host":"c.example.com","port":6380,"password":"k3","ssl":true}]"#
        .to_string(),
    ),
    _ => None,
  }
  };
  let config = lock_config(&Raw::Undefined, &env).unwrap();
  assert_eq!(config.nodes.len(), 3);
  assert!(config.nodes.iter().all(|n| n.tls && n.port == 6380));
  assert_eq!(config.nodes[2].password.as_deref(), Some("k3"));
  let broken = |name: &str| (name == "REDIS_INSTANCES").then(|| "[{host:".to_string());
  let error = lock_config(&Raw::Undefined, &broken).unwrap_err();
  assert!(
    error.contains("REDIS_INSTANCES") && error.contains("JSON"),
    "{error}"
  );
  let bad_ttl = |name: &str| (name == "REDIS_LOCK_TTL_MS").then(|| "30s".to_string());
  let error = lock_config(&Raw::Undefined, &bad_ttl).unwrap_err();
  assert!(error.contains("REDIS_LOCK_TTL_MS"), "{error}");
}

#[test]
fn resources_and_ttl_arguments() {
  assert_eq!(resources(&s("a")).unwrap(), ["a"]);
  assert_eq!(resources(&nodes(&["a", "b"])).unwrap(), ["a", "b"]);
  for bad in [
    s(""),
    Raw::Number(1.0),
    Raw::Null,
    Raw::Undefined,
    Raw::Array(vec![]),
    nodes(&["a", "a"]),
    nodes(&["a", ""]),
  ] {
    let error = resources(&bad).expect_err(&format!("{bad:?}"));
    assert!(error.contains("resource"), "{error}");
  }
  assert_eq!(ttl_argument(&Raw::Undefined, 7), Ok(7));
  assert_eq!(ttl_argument(&Raw::Number(100.0), 7), Ok(100));
  assert!(ttl_argument(&Raw::Number(0.0), 7)
    .unwrap_err()
    .contains("ttlMs"));
  assert!(ttl_argument(&obj(&[]), 7)
    .unwrap_err()
    .contains("third argument"));
}

#[test]
fn acquire_options_override_the_retry_policy() {
  let defaults = lock_config(&Raw::Undefined, &no_env).unwrap().retry;
  let options = acquire_options(
    &obj(&[
      ("retryCount", Raw::Number(0.0)),
      ("retry_delay_ms", Raw::Number(5.0)),
      ("auto_extend", Raw::Bool(true)),
    ]),
    defaults,
  )
  .unwrap();
  assert_eq!(options.retry.retries, Retries::Limited(0));
  assert_eq!(options.retry.delay, Duration::from_millis(5));
  assert_eq!(options.retry.jitter, defaults.jitter);
  assert!(options.auto_extend);
  assert!(
    !acquire_options(&Raw::Undefined, defaults)
      .unwrap()
      .auto_extend
  );
  assert!(acquire_options(&obj(&[("autoExtend", Raw::Number(1.0))]), defaults).is_err());
  assert!(acquire_options(&obj(&[("lock_ttl_ms", Raw::Number(1.0))]), defaults).is_err());
  assert!(acquire_options(&s("x"), defaults).is_err());
  let error = acquire_options(&obj(&[("maxTtlMs", Raw::Number(1.0))]), defaults).unwrap_err();
  assert!(
    error.contains("option of the DistributedLock constructor"),
    "{error}"
  );
}

#[test]
fn metadata_is_an_object_of_strings_kept_as_json() {
  let defaults = lock_config(&Raw::Undefined, &no_env).unwrap().retry;
  let options = acquire_options(
    &obj(&[
      ("fencing", Raw::Bool(true)),
      (
        "metadata",
        obj(&[("instance", s("us-east-1")), ("region", s("us \"east\""))]),
      ),
    ]),
    defaults,
  )
  .unwrap();
  assert!(options.fencing);
  assert_eq!(
    options.metadata.as_deref(),
    Some(r#"{"instance":"us-east-1","region":"us \"east\""}"#)
  );
  let error = acquire_options(
    &obj(&[("metadata", obj(&[("pid", Raw::Number(1.0))]))]),
    defaults,
  )
  .unwrap_err();
  assert!(
    error.contains("'metadata.pid': must be a string"),
    "{error}"
  );
  let error = acquire_options(&obj(&[("metadata", s("x"))]), defaults).unwrap_err();
  assert!(error.contains("must be an object of strings"), "{error}");
  let big = obj(&[("blob", s(&"x".repeat(9000)))]);
  let error = acquire_options(&obj(&[("metadata", big)]), defaults).unwrap_err();
  assert!(error.contains("at most 8192"), "{error}");
  let error = acquire_options(&obj(&[("fencing", s("yes"))]), defaults).unwrap_err();
  assert!(error.contains("'fencing': must be a boolean"), "{error}");
}

#[test]
fn quarantine_options_are_read() {
  let config = lock_config(
    &obj(&[
      ("restartQuarantine", Raw::Bool(false)),
      ("max_ttl_ms", Raw::Number(60_000.0)),
    ]),
    &no_env,
  )
  .unwrap();
  assert!(!config.restart_quarantine);
  assert_eq!(config.max_ttl_ms, Some(60_000));
  let config = lock_config(&Raw::Undefined, &no_env).unwrap();
  assert!(config.restart_quarantine);
  assert_eq!(config.max_ttl_ms, None);
  assert!(lock_config(&obj(&[("max_ttl_ms", Raw::Number(0.0))]), &no_env).is_err());
}

#[test]
fn camel_case_of_every_option() {
  assert_eq!(camel_case("redis_nodes"), "redisNodes");
  assert_eq!(camel_case("lock_ttl_ms"), "lockTtlMs");
  assert_eq!(camel_case("retry_jitter_ms"), "retryJitterMs");
}

#[test]
fn resources_are_bounded_in_count_and_bytes() {
  let names = |count: usize| Raw::Array((0..count).map(|i| s(&format!("r{i}"))).collect());
  assert_eq!(
    resources(&names(MAX_RESOURCES)).unwrap().len(),
    MAX_RESOURCES
  );
  let longest = "é".repeat(MAX_RESOURCE_BYTES / 2);
  assert_eq!(
    resources(&s(&longest)).unwrap(),
    std::slice::from_ref(&longest)
  );
  for (raw, reason) in [
    (
      names(MAX_RESOURCES + 1),
      "at most 64 resources per lock, got a list of 65",
    ),
    (
      Raw::TooLarge(Size::Array(4_294_967_295)),
      "at most 64 resources per lock, got a list of 4294967295",
    ),
    (
      s(&format!("{longest}x")),
      "resource: a resource name is at most 1048576 bytes, got 1048577",
    ),
    (
      Raw::TooLarge(Size::String(100_000_000)),
      "resource: a resource name is at most 1048576 bytes, got 100000000 characters",
    ),
    (
      Raw::Array(vec![s("a"), Raw::TooLarge(Size::String(2_000_000))]),
      "resource [1]: a resource name is at most",
    ),
    (
      Raw::Array(vec![s(&"a".repeat(600_000)), s(&"b".repeat(600_000))]),
      "take at most 1048576 bytes together, got 1200000 up to [1]",
    ),
    (
      Raw::TooLarge(Size::Object(5000)),
      "got an object of 5000 keys",
    ),
  ] {
    let error = resources(&raw).expect_err(reason);
    assert!(error.contains(reason), "{reason}: {error}");
  }
  let mut listed: Vec<Raw> = (0..64).map(|i| s(&format!("r{i}"))).collect();
  listed[63] = s("r5");
  let error = resources(&Raw::Array(listed)).unwrap_err();
  assert!(
    error.contains("'r5' is listed twice (entries 5 and 63)"),
    "{error}"
  );
}

#[test]
fn key_prefix_metadata_and_options_are_bounded() {
  let prefix = |raw: Raw| lock_config(&obj(&[("key_prefix", raw)]), &no_env);
  assert!(prefix(s(&"p".repeat(MAX_KEY_PREFIX_BYTES))).is_ok());
  let error = prefix(s(&"p".repeat(MAX_KEY_PREFIX_BYTES + 1))).unwrap_err();
  assert!(
    error.contains("'key_prefix': at most 256 bytes, got 257"),
    "{error}"
  );
  let error = prefix(Raw::TooLarge(Size::String(100_000_000))).unwrap_err();
  assert!(error.contains("got 100000000 characters"), "{error}");

  let defaults = lock_config(&Raw::Undefined, &no_env).unwrap().retry;
  for (metadata, reason) in [
    (
      Raw::TooLarge(Size::Object(5000)),
      "at most 8192 bytes as JSON are stored with a lock, got an object of 5000 keys",
    ),
    (
      obj(&[("blob", Raw::TooLarge(Size::String(100_000_000)))]),
      "got a string of 100000000 characters in 'blob'",
    ),
    (obj(&[("blob", s(&"x".repeat(9000)))]), "got 9011 bytes"),
    (
      Raw::TooLarge(Size::Array(4_294_967_295)),
      "must be an object of strings",
    ),
  ] {
    let error = acquire_options(&obj(&[("metadata", metadata)]), defaults).unwrap_err();
    assert!(
      error.contains("'metadata'") && error.contains(reason),
      "{reason}: {error}"
    );
  }
  let error = lock_config(&Raw::TooLarge(Size::Object(5000)), &no_env).unwrap_err();
  assert!(error.contains("options: an object of 5000 keys"), "{error}");
}

#[test]
fn a_value_is_shown_only_when_it_cannot_be_a_secret() {
  for (raw, shown) in [
    (s("30000"), "string '30000'"),
    (s(" 1.5 "), "string ' 1.5 '"),
    (s("true"), "string 'true'"),
    (s("hunter2"), "a string"),
    (s("Zk9xQ2/Lm+Tq7WsYtUbVc3Nd8Ke5Rf1Hg6Jh0Pi4Ao="), "a string"),
    (s(&"1".repeat(25)), "a string"),
    (Raw::Number(42.0), "number 42"),
    (Raw::Array(vec![s("x")]), "a list of 1"),
    (Raw::TooLarge(Size::String(7)), "a string of 7 characters"),
    (
      Raw::TooLarge(Size::Key(7)),
      "an object with a key of 7 characters",
    ),
  ] {
    assert_eq!(raw.describe(), shown);
  }
}
