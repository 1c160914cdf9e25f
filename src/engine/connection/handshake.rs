//! The first exchange on a new connection, in one round trip: `AUTH` and
//! `SELECT` as the redis crate does them, `SCRIPT LOAD` of every script (so
//! that every script call afterwards is one round trip, and a node that lost
//! its scripts is a node to reconnect to), then what the node tells about
//! itself. Nothing else is written before it is done, so the commands
//! queued meanwhile follow it in order.

use bytes::BytesMut;
use redis::{RedisConnectionInfo, RedisError, Value, ValueCodec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::Decoder;

use super::learn::{learn, Learnt};
use super::socket::{describe, AsyncStream};
use crate::engine::scripts::SCRIPTS;

/// How much the read buffer grows by when it runs out of room.
pub(super) const READ_CHUNK: usize = 16 * 1024;

/// Authenticates, selects the database, loads the scripts and learns about
/// the node. `buffer` keeps whatever arrived after the last reply of it.
/// `from_provider` tells that the user and password came from a
/// credentials provider, for the message of a refusal.
pub(super) async fn handshake(
  stream: &mut (dyn AsyncStream + Send),
  settings: &RedisConnectionInfo,
  from_provider: bool,
  codec: &mut ValueCodec,
  buffer: &mut BytesMut,
) -> Result<Learnt, String> {
  let mut with_username = settings.username().is_some();
  loop {
    let (packed, count) = setup(settings, with_username);
    stream
      .write_all(&packed)
      .await
      .map_err(|error| describe(&error))?;
    stream.flush().await.map_err(|error| describe(&error))?;
    let mut replies = read_replies(stream, codec, buffer, count)
      .await?
      .into_iter();
    if settings.password().is_some() {
      match replies.next() {
        Some(Value::Okay) => {}
        // A server older than ACLs (Redis 5) knows only `AUTH password`.
        Some(Value::ServerError(error))
          if with_username
            && error
              .details()
              .is_some_and(|detail| detail.contains("wrong number of arguments for 'auth'")) =>
        {
          with_username = false;
          continue;
        }
        Some(other) if from_provider => {
          return Err(format!(
            "authentication with the credentials provider's user and password failed: {}",
            error_text(other)
          ))
        }
        Some(other) => return Err(format!("authentication failed: {}", error_text(other))),
        None => return Err("no reply to AUTH".into()),
      }
    }
    if settings.db() != 0 {
      if let Some(Value::ServerError(error)) = replies.next() {
        return Err(format!(
          "the node refused to switch to database {}: {}",
          settings.db(),
          RedisError::from(error)
        ));
      }
    }
    for _ in SCRIPTS {
      if let Some(Value::ServerError(error)) = replies.next() {
        return Err(format!(
          "loading the lock's scripts failed: {}",
          RedisError::from(error)
        ));
      }
    }
    let info = replies.next().unwrap_or(Value::Nil);
    let config = replies.next().unwrap_or(Value::Nil);
    return Ok(learn(&info, &config));
  }
}

/// The setup commands, encoded, and how many replies they bring.
fn setup(settings: &RedisConnectionInfo, with_username: bool) -> (Vec<u8>, usize) {
  let mut commands = Vec::new();
  if let Some(password) = settings.password() {
    let mut auth = redis::cmd("AUTH");
    if let Some(username) = settings.username().filter(|_| with_username) {
      auth.arg(username);
    }
    auth.arg(password);
    commands.push(auth);
  }
  if settings.db() != 0 {
    let mut select = redis::cmd("SELECT");
    select.arg(settings.db());
    commands.push(select);
  }
  for source in SCRIPTS {
    let mut load = redis::cmd("SCRIPT");
    load.arg("LOAD").arg(*source);
    commands.push(load);
  }
  let mut info = redis::cmd("INFO");
  info.arg("server");
  commands.push(info);
  let mut config = redis::cmd("CONFIG");
  config.arg("GET").arg("append*");
  commands.push(config);
  let mut packed = Vec::new();
  for command in &commands {
    command.write_packed_command(&mut packed);
  }
  (packed, commands.len())
}

async fn read_replies(
  stream: &mut (dyn AsyncStream + Send),
  codec: &mut ValueCodec,
  buffer: &mut BytesMut,
  count: usize,
) -> Result<Vec<Value>, String> {
  let mut replies = Vec::with_capacity(count);
  while replies.len() < count {
    if let Some(value) = codec.decode(buffer).map_err(|error| error.to_string())? {
      replies.push(value);
      continue;
    }
    buffer.reserve(READ_CHUNK);
    let read = stream
      .read_buf(buffer)
      .await
      .map_err(|error| describe(&error))?;
    if read == 0 {
      return Err("the node closed the connection".into());
    }
  }
  Ok(replies)
}

fn error_text(value: Value) -> String {
  match value {
    Value::ServerError(error) => RedisError::from(error).to_string(),
    other => format!("unexpected reply {other:?}"),
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn commands(packed: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(packed)
      .split("\r\n")
      .filter(|line| ["AUTH", "SELECT", "SCRIPT", "INFO", "CONFIG"].contains(line))
      .map(str::to_string)
      .collect()
  }

  #[test]
  fn authenticates_and_selects_only_when_asked_then_loads_and_learns() {
    let plain = RedisConnectionInfo::default();
    let (packed, count) = setup(&plain, false);
    assert_eq!(count, SCRIPTS.len() + 2);
    assert_eq!(
      commands(&packed).first().map(String::as_str),
      Some("SCRIPT")
    );

    let full = RedisConnectionInfo::default()
      .set_username("locker")
      .set_password("pw")
      .set_db(3);
    let (packed, count) = setup(&full, true);
    assert_eq!(count, SCRIPTS.len() + 4);
    assert_eq!(&commands(&packed)[..2], ["AUTH", "SELECT"]);
    let text = String::from_utf8_lossy(&packed).into_owned();
    assert!(
      text.starts_with("*3\r\n$4\r\nAUTH\r\n$6\r\nlocker\r\n$2\r\npw\r\n"),
      "{text}"
    );
    let (packed, _) = setup(&full, false);
    assert!(String::from_utf8_lossy(&packed).starts_with("*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n"));
  }
}
