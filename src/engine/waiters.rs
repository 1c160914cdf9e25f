//! Release notifications for callers waiting on a held lock: one
//! subscription connection per node, shared by every waiter of every
//! resource. Release publishes on the key's own channel; each message wakes
//! one local waiter of that key, so a thousand waiters are not a thousand
//! attempts per release. A channel is unsubscribed when its last waiter
//! leaves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use redis::aio::PubSubSink;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::connection::NodeClient;

/// The waiters of one key.
struct Channel {
  waiters: usize,
  wake: Arc<Notify>,
}

/// One node's subscription connection, opened with the first waiter: the
/// sink that subscribes, and the task that reads its messages.
#[derive(Default)]
struct Subscriber {
  sink: tokio::sync::Mutex<Option<(PubSubSink, AbortHandle)>>,
}

pub struct Waiters {
  nodes: Vec<NodeClient>,
  subscribers: Vec<Arc<Subscriber>>,
  channels: Arc<Mutex<HashMap<String, Channel>>>,
}

/// A caller's place among the waiters of some keys; leaving drops it.
pub struct Waiting {
  waiters: Arc<WaitersShared>,
  keys: Vec<String>,
  wake: Vec<Arc<Notify>>,
}

struct WaitersShared {
  subscribers: Vec<Arc<Subscriber>>,
  channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl Waiters {
  pub fn new(nodes: &[NodeClient]) -> Self {
    Waiters {
      nodes: nodes.to_vec(),
      subscribers: nodes.iter().map(|_| Arc::default()).collect(),
      channels: Arc::default(),
    }
  }

  /// Joins the waiters of `keys`, subscribing on every node the first time.
  /// A node that cannot subscribe only means fewer wake-ups: the caller
  /// also wakes when the holder's TTL runs out.
  pub async fn join(&self, keys: &[String]) -> Waiting {
    let mut fresh = Vec::new();
    let mut wake = Vec::new();
    {
      let mut channels = self.lock_channels();
      for key in keys {
        let channel = channels.entry(key.clone()).or_insert_with(|| {
          fresh.push(key.clone());
          Channel {
            waiters: 0,
            wake: Arc::new(Notify::new()),
          }
        });
        channel.waiters += 1;
        wake.push(channel.wake.clone());
      }
    }
    if !fresh.is_empty() {
      let subscriptions = self
        .nodes
        .iter()
        .zip(&self.subscribers)
        .map(|(node, subscriber)| self.subscribe(node, subscriber, &fresh));
      futures_util::future::join_all(subscriptions).await;
    }
    Waiting {
      waiters: Arc::new(WaitersShared {
        subscribers: self.subscribers.clone(),
        channels: self.channels.clone(),
      }),
      keys: keys.to_vec(),
      wake,
    }
  }

  /// Closes every subscription connection; waits in progress end with the
  /// lock instance's close.
  pub async fn close(&self) {
    for subscriber in &self.subscribers {
      if let Some((_, reader)) = subscriber.sink.lock().await.take() {
        // The connection closes once both its halves are gone.
        reader.abort();
      }
    }
  }

  async fn subscribe(&self, node: &NodeClient, subscriber: &Subscriber, keys: &[String]) {
    let mut sink = subscriber.sink.lock().await;
    if sink.is_none() {
      let Ok(pubsub) = node.subscribe_connection().await else {
        return;
      };
      let (new_sink, mut stream) = pubsub.split();
      let channels = self.channels.clone();
      let reader = tokio::spawn(async move {
        while let Some(message) = stream.next().await {
          let wake = {
            let channels = channels.lock().unwrap_or_else(|e| e.into_inner());
            channels
              .get(message.get_channel_name())
              .map(|c| c.wake.clone())
          };
          if let Some(wake) = wake {
            wake.notify_one();
          }
        }
      });
      *sink = Some((new_sink, reader.abort_handle()));
    }
    if let Some((active, reader)) = sink.as_mut() {
      if active.subscribe(keys).await.is_err() {
        // The connection broke: the next waiter opens a new one.
        reader.abort();
        *sink = None;
      }
    }
  }

  fn lock_channels(&self) -> std::sync::MutexGuard<'_, HashMap<String, Channel>> {
    self.channels.lock().unwrap_or_else(|e| e.into_inner())
  }
}

impl Waiting {
  /// Resolves when a release of one of the keys was announced.
  pub async fn released(&self) {
    let wakes = self.wake.iter().map(|wake| Box::pin(wake.notified()));
    futures_util::future::select_all(wakes).await;
  }
}

impl Drop for Waiting {
  fn drop(&mut self) {
    let mut gone = Vec::new();
    {
      let mut channels = self
        .waiters
        .channels
        .lock()
        .unwrap_or_else(|e| e.into_inner());
      for key in &self.keys {
        if let Some(channel) = channels.get_mut(key) {
          channel.waiters -= 1;
          if channel.waiters == 0 {
            channels.remove(key);
            gone.push(key.clone());
          }
        }
      }
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
      return;
    };
    if gone.is_empty() {
      return;
    }
    let shared = self.waiters.clone();
    runtime.spawn(async move {
      for subscriber in &shared.subscribers {
        let mut sink = subscriber.sink.lock().await;
        // A key that found new waiters meanwhile stays subscribed.
        let still_gone: Vec<String> = {
          let channels = shared.channels.lock().unwrap_or_else(|e| e.into_inner());
          gone
            .iter()
            .filter(|key| !channels.contains_key(*key))
            .cloned()
            .collect()
        };
        if let (Some((active, reader)), false) = (sink.as_mut(), still_gone.is_empty()) {
          if active.unsubscribe(&still_gone).await.is_err() {
            reader.abort();
            *sink = None;
          }
        }
      }
    });
  }
}
