//! The subscription connection of one node, for release notifications,
//! through the redis crate in one of two protocols.
//!
//! With credentials that stay as they are: RESP2 publish/subscribe (the
//! crate's `PubSub`), which every Redis version speaks. With a credentials
//! provider: RESP3 (the crate's `MultiplexedConnection` with a push sender),
//! because RESP2 refuses `AUTH` on a subscribed connection and RESP3 does
//! not. The crate then authenticates the connection again in place whenever
//! the provider's credentials change (its `StreamingCredentialsProvider`
//! support), so the subscription outlives every token without a gap in
//! which a release could go unnoticed. Providers hand out ACL users, which
//! take Redis 6 or later, and Redis 6 speaks RESP3.

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures_util::{Stream, StreamExt};
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{
  AsyncConnectionConfig, BasicAuth, ProtocolVersion, PushInfo, PushKind, RedisConnectionInfo,
  RedisResult, StreamingCredentialsProvider, Value,
};
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

use super::socket::Stream as Socket;
use crate::engine::credentials::Issued;

/// An open subscription connection.
pub enum Subscriber {
  Fixed {
    sink: PubSubSink,
    messages: PubSubStream,
  },
  Renewed {
    connection: MultiplexedConnection,
    pushes: mpsc::UnboundedReceiver<PushInfo>,
    /// The task that reads and writes the connection's socket.
    driver: AbortHandle,
  },
}

impl Subscriber {
  /// A RESP2 subscription connection over `socket`, authenticated with the
  /// node's own credentials.
  pub(super) async fn fixed(
    socket: Socket,
    settings: &RedisConnectionInfo,
  ) -> Result<Self, String> {
    let pubsub = match socket {
      Socket::Plain(socket) => redis::aio::PubSub::new(settings, socket).await,
      Socket::Tls(stream) => redis::aio::PubSub::new(settings, *stream).await,
    }
    .map_err(|error| error.to_string())?;
    let (sink, messages) = pubsub.split();
    Ok(Subscriber::Fixed { sink, messages })
  }

  /// A RESP3 subscription connection over `socket` to the node of
  /// `settings` (its own credentials), authenticated with `issued`, and
  /// again with each newer version `updates` brings.
  pub(super) async fn renewed(
    socket: Socket,
    settings: &RedisConnectionInfo,
    issued: &Issued,
    updates: watch::Receiver<Option<Arc<Issued>>>,
  ) -> Result<Self, String> {
    let node_user = settings.username().map(str::to_string);
    let renewals = Renewals {
      first: Mutex::new(Some(basic_auth(issued, node_user.as_deref()))),
      updates,
      version: issued.version,
      node_user,
    };
    let (sender, pushes) = mpsc::unbounded_channel();
    let config = AsyncConnectionConfig::new()
      .set_push_sender(sender)
      .set_credentials_provider(renewals);
    let settings = settings.clone().set_protocol(ProtocolVersion::RESP3);
    let opened = match socket {
      Socket::Plain(socket) => MultiplexedConnection::new_with_config(&settings, socket, config)
        .await
        .map(|(connection, driver)| (connection, tokio::spawn(driver))),
      Socket::Tls(stream) => MultiplexedConnection::new_with_config(&settings, *stream, config)
        .await
        .map(|(connection, driver)| (connection, tokio::spawn(driver))),
    };
    let (connection, driver) = opened.map_err(|error| match error.kind() {
      redis::ErrorKind::AuthenticationFailed => {
        format!("authentication with the credentials provider's user and password failed: {error}")
      }
      _ => error.to_string(),
    })?;
    Ok(Subscriber::Renewed {
      connection,
      pushes,
      driver: driver.abort_handle(),
    })
  }

  pub async fn subscribe(&mut self, channels: &[String]) -> RedisResult<()> {
    match self {
      Subscriber::Fixed { sink, .. } => sink.subscribe(channels).await,
      Subscriber::Renewed { connection, .. } => connection.subscribe(channels).await,
    }
  }

  pub async fn unsubscribe(&mut self, channels: &[String]) -> RedisResult<()> {
    match self {
      Subscriber::Fixed { sink, .. } => sink.unsubscribe(channels).await,
      Subscriber::Renewed { connection, .. } => connection.unsubscribe(channels).await,
    }
  }

  /// Whether the node still answers on this connection (`PING`, which a
  /// subscribed RESP2 connection allows too).
  pub async fn ping(&mut self) -> RedisResult<()> {
    match self {
      Subscriber::Fixed { sink, .. } => sink.ping::<Value>().await.map(drop),
      Subscriber::Renewed { connection, .. } => redis::cmd("PING")
        .query_async::<Value>(connection)
        .await
        .map(drop),
    }
  }

  /// The channel of the next message; `None` once the connection is lost.
  pub async fn next_message(&mut self) -> Option<String> {
    match self {
      Subscriber::Fixed { messages, .. } => messages
        .next()
        .await
        .map(|message| message.get_channel_name().to_string()),
      Subscriber::Renewed { pushes, .. } => loop {
        let push = pushes.recv().await?;
        match (push.kind, push.data.first()) {
          (PushKind::Message, Some(Value::BulkString(channel))) => {
            return Some(String::from_utf8_lossy(channel).into_owned())
          }
          (PushKind::Disconnection, _) => return None,
          // Confirmations of (un)subscribing, which their calls await.
          _ => {}
        }
      },
    }
  }
}

impl Drop for Subscriber {
  fn drop(&mut self) {
    if let Subscriber::Renewed { driver, .. } = self {
      driver.abort();
    }
  }
}

/// The credentials of one RESP3 subscription connection, as the redis crate
/// asks for them: its first subscription gets those the connection opens
/// with, every later one each newer version, to authenticate again with.
struct Renewals {
  first: Mutex<Option<BasicAuth>>,
  updates: watch::Receiver<Option<Arc<Issued>>>,
  version: u64,
  node_user: Option<String>,
}

impl StreamingCredentialsProvider for Renewals {
  fn subscribe(&self) -> Pin<Box<dyn Stream<Item = RedisResult<BasicAuth>> + Send + 'static>> {
    let first = self.first.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(first) = first {
      return futures_util::stream::once(async move { Ok(first) }).boxed();
    }
    let state = (self.updates.clone(), self.version, self.node_user.clone());
    futures_util::stream::unfold(state, |(mut updates, seen, node_user)| async move {
      loop {
        // Newer credentials may have come while the connection opened.
        let latest = updates.borrow_and_update().clone();
        if let Some(issued) = latest.filter(|issued| issued.version > seen) {
          let auth = basic_auth(&issued, node_user.as_deref());
          return Some((Ok(auth), (updates, issued.version, node_user)));
        }
        updates.changed().await.ok()?;
      }
    })
    .boxed()
  }
}

/// The user and password of `issued` as the crate takes them: a user name
/// always, the node's own or `default` when the provider gives none.
fn basic_auth(issued: &Issued, node_user: Option<&str>) -> BasicAuth {
  let credentials = &issued.credentials;
  let username = credentials
    .username
    .as_deref()
    .or(node_user)
    .unwrap_or("default");
  BasicAuth::new(username.to_string(), credentials.password.clone())
}
