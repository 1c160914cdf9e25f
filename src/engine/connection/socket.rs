//! The byte stream to one node: plain TCP, or TLS through `tokio-rustls`
//! with the system's roots (as the redis crate loads them, so
//! `SSL_CERT_FILE` works), split into the half the reader task owns and the
//! half the writers use.
//!
//! A plain socket is written with non-blocking `try_write` calls, so any
//! thread can hand it bytes without waiting; TLS must encrypt on one side,
//! so its writes go through the writer task. Every socket has TCP
//! keepalive on, so a peer that is gone without a word (a host down, a NAT
//! or load balancer that forgot the connection) is noticed while the
//! connection is idle, a subscription's above all.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::engine::node::NodeConfig;

/// How long a connection is idle before the kernel probes its peer, and
/// the time between probes: a peer that is gone is noticed within about a
/// minute on Linux (nine probes).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);

/// An open stream to a node.
pub(super) enum Stream {
  Plain(TcpStream),
  Tls(Box<TlsStream<TcpStream>>),
}

/// Connects to the node, with TLS when it asks for it.
pub(super) async fn open(
  node: &NodeConfig,
  tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Stream, String> {
  let socket = TcpStream::connect((node.host.as_str(), node.port))
    .await
    .map_err(|error| describe(&error))?;
  // Commands are small and each waits for its reply: never hold one back.
  socket.set_nodelay(true).map_err(|error| describe(&error))?;
  let keepalive = socket2::TcpKeepalive::new()
    .with_time(KEEPALIVE_IDLE)
    .with_interval(KEEPALIVE_INTERVAL);
  socket2::SockRef::from(&socket)
    .set_tcp_keepalive(&keepalive)
    .map_err(|error| describe(&error))?;
  let Some(config) = tls else {
    return Ok(Stream::Plain(socket));
  };
  let name = rustls::pki_types::ServerName::try_from(node.host.clone())
    .map_err(|error| format!("'{}' is not a TLS server name: {error}", node.host))?;
  let stream = TlsConnector::from(config)
    .connect(name, socket)
    .await
    .map_err(|error| format!("TLS handshake failed: {}", describe(&error)))?;
  Ok(Stream::Tls(Box::new(stream)))
}

/// The client configuration for TLS, loaded once for the process on a
/// blocking thread: reading the system's store takes a while, and must not
/// hold up the I/O thread. A failed load is tried again by the next
/// connection.
pub(super) async fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
  static LOADED: tokio::sync::OnceCell<Arc<rustls::ClientConfig>> =
    tokio::sync::OnceCell::const_new();
  let loaded = LOADED
    .get_or_try_init(|| async {
      tokio::task::spawn_blocking(load_tls_config)
        .await
        .map_err(|error| format!("the trusted roots could not be loaded: {error}"))?
    })
    .await?;
  Ok(loaded.clone())
}

/// The system's roots, as the redis crate loads them (`SSL_CERT_FILE` and
/// `SSL_CERT_DIR` name a private CA). Any root that fails to load fails the
/// connection, as it does there.
fn load_tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
  let loaded = rustls_native_certs::load_native_certs();
  if let Some(error) = loaded.errors.first() {
    return Err(format!("the trusted roots could not be loaded: {error}"));
  }
  let mut roots = rustls::RootCertStore::empty();
  for certificate in loaded.certs {
    roots
      .add(certificate)
      .map_err(|error| format!("a trusted root is not usable: {error}"))?;
  }
  let config = rustls::ClientConfig::builder()
    .with_root_certificates(roots)
    .with_no_client_auth();
  Ok(Arc::new(config))
}

/// Where the reader task reads replies from.
pub(super) enum ReadSide {
  Plain(Arc<TcpStream>),
  Tls(ReadHalf<TlsStream<TcpStream>>),
}

/// Where the writer task writes commands to.
pub(super) enum WriteSide {
  Plain(Arc<TcpStream>),
  Tls(WriteHalf<TlsStream<TcpStream>>),
}

impl Stream {
  /// The stream as one kind, for the handshake before it is split.
  pub fn as_dyn(&mut self) -> &mut (dyn AsyncStream + Send) {
    match self {
      Stream::Plain(socket) => socket,
      Stream::Tls(stream) => &mut **stream,
    }
  }

  /// The two halves, and for plain TCP the socket any thread may write to.
  pub fn split(self) -> (ReadSide, WriteSide, Option<Arc<TcpStream>>) {
    match self {
      Stream::Plain(socket) => {
        let socket = Arc::new(socket);
        (
          ReadSide::Plain(socket.clone()),
          WriteSide::Plain(socket.clone()),
          Some(socket),
        )
      }
      Stream::Tls(stream) => {
        let (read, write) = tokio::io::split(*stream);
        (ReadSide::Tls(read), WriteSide::Tls(write), None)
      }
    }
  }
}

impl ReadSide {
  /// Reads what has arrived into `buffer`; 0 when the node closed the stream.
  pub async fn read(&mut self, buffer: &mut BytesMut) -> io::Result<usize> {
    match self {
      ReadSide::Plain(socket) => loop {
        socket.readable().await?;
        match socket.try_read_buf(buffer) {
          Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
          read => return read,
        }
      },
      ReadSide::Tls(half) => half.read_buf(buffer).await,
    }
  }
}

impl WriteSide {
  pub async fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
    match self {
      WriteSide::Plain(socket) => {
        while !bytes.is_empty() {
          socket.writable().await?;
          match socket.try_write(bytes) {
            Ok(written) => bytes = &bytes[written..],
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
          }
        }
        Ok(())
      }
      WriteSide::Tls(half) => {
        half.write_all(bytes).await?;
        half.flush().await
      }
    }
  }
}

/// Writes `bytes` now, as far as the socket takes them without waiting:
/// how many it took.
pub(super) fn write_now(socket: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
  let mut written = 0;
  while written < bytes.len() {
    match socket.try_write(&bytes[written..]) {
      Ok(n) => written += n,
      Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
      Err(error) => return Err(error),
    }
  }
  Ok(written)
}

/// A byte stream the handshake can write to and read from.
pub(super) trait AsyncStream: AsyncRead + AsyncWrite + Unpin {}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncStream for T {}

/// An I/O error as a node error: a refusal says so first.
pub(super) fn describe(error: &io::Error) -> String {
  match error.kind() {
    io::ErrorKind::ConnectionRefused => format!("connection refused ({error})"),
    io::ErrorKind::ConnectionReset => format!("connection reset by the node ({error})"),
    io::ErrorKind::BrokenPipe => format!("connection broken ({error})"),
    _ => error.to_string(),
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[tokio::test]
  async fn the_trusted_roots_are_loaded_once_for_the_process() {
    let first = tls_config().await.expect("the system's roots load");
    let second = tls_config().await.expect("the system's roots load");
    assert!(Arc::ptr_eq(&first, &second));
  }
}
