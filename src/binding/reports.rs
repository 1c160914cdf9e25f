//! The JavaScript shapes of `inspect()` and `health()`: the engine's reports
//! with camelCase fields. Metadata stays JSON text here; `index.js` parses it.

use napi_derive::napi;

use crate::engine::lock as engine;

#[napi(object, use_nullable = true)]
pub struct NodeLock {
  pub node: String,
  pub error: Option<String>,
  pub held: bool,
  pub ttl_ms: Option<i64>,
  pub holder: Option<String>,
  pub mine: bool,
  pub metadata: Option<String>,
  pub quarantine_ms: f64,
}

#[napi(object, use_nullable = true)]
pub struct LockInfo {
  pub resource: String,
  pub locked: bool,
  pub holder: Option<String>,
  pub mine: bool,
  pub metadata: Option<String>,
  pub ttl_ms: Option<i64>,
  pub quorum: u32,
  pub nodes: Vec<NodeLock>,
}

#[napi(object, use_nullable = true)]
pub struct NodeHealth {
  pub node: String,
  pub answers: bool,
  pub latency_ms: Option<f64>,
  pub run_id: Option<String>,
  pub uptime_ms: Option<f64>,
  pub durable: Option<bool>,
  pub quarantine_ms: f64,
  pub error: Option<String>,
  pub last_error: Option<String>,
}

#[napi(object, use_nullable = true)]
pub struct HealthReport {
  pub quorum_reachable: bool,
  pub quorum: u32,
  pub counted: u32,
  pub nodes: Vec<NodeHealth>,
}

impl From<engine::LockInfo> for LockInfo {
  fn from(info: engine::LockInfo) -> Self {
    LockInfo {
      resource: info.resource,
      locked: info.locked,
      holder: info.holder,
      mine: info.mine,
      metadata: info.metadata,
      ttl_ms: info.ttl_ms,
      quorum: info.quorum as u32,
      nodes: info
        .nodes
        .into_iter()
        .map(|node| NodeLock {
          node: node.node,
          error: node.error,
          held: node.held,
          ttl_ms: node.ttl_ms,
          holder: node.holder,
          mine: node.mine,
          metadata: node.metadata,
          quarantine_ms: node.quarantine_ms as f64,
        })
        .collect(),
    }
  }
}

impl From<engine::HealthReport> for HealthReport {
  fn from(report: engine::HealthReport) -> Self {
    HealthReport {
      quorum_reachable: report.quorum_reachable,
      quorum: report.quorum as u32,
      counted: report.counted as u32,
      nodes: report
        .nodes
        .into_iter()
        .map(|node| NodeHealth {
          node: node.node,
          answers: node.answers,
          latency_ms: node.latency_ms,
          run_id: node.run_id,
          uptime_ms: node.uptime_ms.map(|ms| ms as f64),
          durable: node.durable,
          quarantine_ms: node.quarantine_ms as f64,
          error: node.error,
          last_error: node.last_error,
        })
        .collect(),
    }
  }
}
