//! Credentials that change while the lock runs (tokens that expire, as
//! Microsoft Entra ID hands them out): a provider the lock asks for a user
//! name and password whenever a connection needs them.
//!
//! One `CredentialSource` per provider, shared by every connection that uses
//! it: the command and subscription connections of one node, or of every
//! node for a provider of the whole lock. It coalesces calls (whoever asks
//! while a call is under way gets that call's answer), bounds each call, and
//! numbers what each call returned. Credentials with an expiry are fetched
//! again ahead of it, while connections still use them, and published: each
//! live connection then authenticates again in place, so that a connection
//! never outlives its token and nothing it carries (a held lease, a waiter's
//! subscription) is dropped. The provider's own words and the secrets it
//! handed out never reach a message.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::AbortHandle;
// Tokio's clock, which tests can pause, is the system's monotonic clock.
use tokio::time::Instant;

use super::connection::next_backoff;

/// Credentials are fetched again this long before they expire at the latest...
const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);
/// ...or once this share of their lifetime, from the call that fetched
/// them, has passed, if that comes first.
const RENEW_AT_SHARE: f64 = 0.75;
/// ...but never sooner than this after that call, so that credentials that
/// expired already (a clock off, expiresAt in seconds) cost one call a
/// second, not a busy loop.
const MIN_RENEWAL: Duration = Duration::from_secs(1);
/// How many of the passwords handed out last are taken out of messages: a
/// connection may still use the one before the latest.
const REMEMBERED_SECRETS: usize = 2;

/// What a provider hands out for a connection.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
  /// The ACL user; the node's own user name, if any, when absent.
  pub username: Option<String>,
  pub password: String,
  /// When the password stops working.
  pub expires_at: Option<SystemTime>,
}

impl fmt::Debug for Credentials {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.debug_struct("Credentials")
      .field("username", &self.username)
      .field("password", &"<redacted>")
      .field("expires_at", &self.expires_at)
      .finish()
  }
}

/// One call of a provider, under way.
pub type Fetching = Pin<Box<dyn Future<Output = Result<Credentials, String>> + Send>>;

/// A source of credentials: the binding's bridge to a JavaScript function,
/// or a test's stand-in. A call that fails says why in words that hold no
/// secret; the engine bounds how long it waits for one.
pub trait CredentialsProvider: Send + Sync {
  fn fetch(&self) -> Fetching;
}

/// Credentials as one call returned them.
#[derive(Debug)]
pub struct Issued {
  pub credentials: Credentials,
  /// The number of the call, counted from 1: later calls, larger numbers.
  pub version: u64,
}

/// What a call settles to, for everyone who waits for it.
type Settled = Option<Result<Arc<Issued>, Arc<str>>>;

/// A provider with its calls coalesced and bounded, and the credentials it
/// handed out last; cheap to clone.
#[derive(Clone)]
pub struct CredentialSource {
  inner: Arc<Source>,
}

struct Source {
  provider: Box<dyn CredentialsProvider>,
  /// The bound of one call: the connect timeout, which the call is part of.
  timeout: Duration,
  /// The latest credentials, for the connections that use them: each holds
  /// a receiver while it is open, and authenticates again on a change.
  latest: watch::Sender<Option<Arc<Issued>>>,
  state: Mutex<State>,
}

#[derive(Default)]
struct State {
  /// The call under way, if any; whoever asks meanwhile waits for it.
  calling: Option<watch::Receiver<Settled>>,
  calls: u64,
  secrets: VecDeque<String>,
  /// The timer that fetches the latest credentials again ahead of expiry.
  renewal: Option<AbortHandle>,
}

impl fmt::Debug for CredentialSource {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str("CredentialSource")
  }
}

/// Two nodes share a source when they share its provider.
impl PartialEq for CredentialSource {
  fn eq(&self, other: &Self) -> bool {
    Arc::ptr_eq(&self.inner, &other.inner)
  }
}

impl Eq for CredentialSource {}

impl CredentialSource {
  /// A source whose calls take at most `timeout` each.
  pub fn new(provider: Box<dyn CredentialsProvider>, timeout: Duration) -> Self {
    CredentialSource {
      inner: Arc::new(Source {
        provider,
        timeout,
        latest: watch::Sender::new(None),
        state: Mutex::default(),
      }),
    }
  }

  /// Credentials for a connection that opens now: from a new call, or from
  /// the call under way. Must be called within a Tokio runtime context; the
  /// call goes on if the caller stops waiting.
  pub fn fetch(&self) -> impl Future<Output = Result<Arc<Issued>, String>> + Send + 'static {
    let mut calling = self.inner.call();
    async move {
      let settled = calling.wait_for(Option::is_some).await.map(|s| s.clone());
      match settled {
        Ok(Some(Ok(issued))) => Ok(issued),
        Ok(Some(Err(error))) => Err(error.to_string()),
        _ => Err("credentials provider failed: its call was cut short".into()),
      }
    }
  }

  /// The latest credentials from now on, for a connection that uses them;
  /// it holds the receiver while it is open.
  pub fn updates(&self) -> watch::Receiver<Option<Arc<Issued>>> {
    self.inner.latest.subscribe()
  }

  /// `text` without the passwords handed out last.
  pub fn redact(&self, text: &str) -> String {
    self.inner.redact(text)
  }
}

impl Source {
  fn state(&self) -> MutexGuard<'_, State> {
    self.state.lock().unwrap_or_else(|e| e.into_inner())
  }

  fn redact(&self, text: &str) -> String {
    let state = self.state();
    state.secrets.iter().fold(text.to_string(), |text, secret| {
      text.replace(secret.as_str(), "<redacted>")
    })
  }

  /// The call under way, or a new one.
  fn call(self: &Arc<Self>) -> watch::Receiver<Settled> {
    let mut state = self.state();
    if let Some(calling) = &state.calling {
      return calling.clone();
    }
    let (settle, calling) = watch::channel(None);
    state.calling = Some(calling.clone());
    drop(state);
    let source = self.clone();
    tokio::spawn(async move {
      let settled = source.run_call().await;
      // Whoever asks from now on makes a new call.
      source.state().calling = None;
      settle.send_replace(Some(settled));
    });
    calling
  }

  async fn run_call(self: &Arc<Self>) -> Result<Arc<Issued>, Arc<str>> {
    let called = Instant::now();
    let credentials = match tokio::time::timeout(self.timeout, self.provider.fetch()).await {
      Ok(Ok(credentials)) => credentials,
      Ok(Err(reason)) => {
        let reason = self.redact(&reason);
        return Err(format!("credentials provider failed: {reason}").into());
      }
      Err(_) => return Err(no_answer(self.timeout).into()),
    };
    let renew_at = credentials
      .expires_at
      .map(|expires_at| renew_at(called, SystemTime::now(), expires_at));
    let issued = {
      let mut state = self.state();
      state.calls += 1;
      state
        .secrets
        .retain(|secret| *secret != credentials.password);
      state.secrets.push_front(credentials.password.clone());
      state.secrets.truncate(REMEMBERED_SECRETS);
      if let Some(renewal) = state.renewal.take() {
        renewal.abort();
      }
      if let Some(at) = renew_at {
        state.renewal = Some(tokio::spawn(renew(Arc::downgrade(self), at)).abort_handle());
      }
      Arc::new(Issued {
        credentials,
        version: state.calls,
      })
    };
    self.latest.send_replace(Some(issued.clone()));
    Ok(issued)
  }
}

impl Drop for Source {
  fn drop(&mut self) {
    if let Some(renewal) = self.state().renewal.take() {
      renewal.abort();
    }
  }
}

/// Why a connection has no credentials when the provider did not answer
/// within `timeout`.
pub fn no_answer(timeout: Duration) -> String {
  format!(
    "credentials provider failed: no answer within {} ms (connect_timeout_ms)",
    timeout.as_millis()
  )
}

/// Fetches the credentials again at `at`, and after a failed call with the
/// reconnect backoff, while some connection still uses them; a successful
/// call sets the next renewal.
async fn renew(source: Weak<Source>, mut at: Instant) {
  let mut backoff = Duration::ZERO;
  loop {
    tokio::time::sleep_until(at).await;
    let Some(live) = source.upgrade() else { return };
    if live.latest.receiver_count() == 0 {
      // No connection is open: the next one fetches its own.
      return;
    }
    let fetching = CredentialSource { inner: live }.fetch();
    if fetching.await.is_ok() {
      return;
    }
    backoff = next_backoff(backoff);
    at = Instant::now() + backoff;
  }
}

/// When credentials fetched by a call made at `called` (`now` on the wall
/// clock, about then) and expiring at `expires_at` are fetched again: the
/// earlier of five minutes before they expire and three quarters of the
/// way from the call to their expiry, and at least a second after the call.
pub fn renew_at(called: Instant, now: SystemTime, expires_at: SystemTime) -> Instant {
  let lifetime = expires_at.duration_since(now).unwrap_or_default();
  let share = lifetime.mul_f64(RENEW_AT_SHARE);
  let wait = match lifetime.checked_sub(RENEW_BEFORE) {
    Some(before) => before.min(share),
    None => share,
  };
  called + wait.max(MIN_RENEWAL)
}

#[cfg(test)]
mod tests {
  use std::sync::atomic::{AtomicU64, Ordering};

  use super::*;

  const MINUTE: Duration = Duration::from_secs(60);

  #[test]
  fn renewal_is_ahead_of_expiry_by_five_minutes_or_a_quarter_of_the_lifetime() {
    let called = Instant::now();
    let now = SystemTime::now();
    let after = |lifetime: Duration| renew_at(called, now, now + lifetime) - called;
    // An hour's token (Entra ID): at 45 minutes, a quarter before expiry.
    assert_eq!(after(60 * MINUTE), 45 * MINUTE);
    // A day's token: at 18 hours.
    assert_eq!(after(24 * 60 * MINUTE), 18 * 60 * MINUTE);
    // Ten minutes: five minutes before expiry comes first.
    assert_eq!(after(10 * MINUTE), 5 * MINUTE);
    // Shorter than five minutes: at three quarters.
    assert_eq!(after(Duration::from_secs(4)), Duration::from_secs(3));
    // Expired, or about to: a second after the call, not at once.
    assert_eq!(after(Duration::ZERO), MIN_RENEWAL);
    assert_eq!(renew_at(called, now, now - MINUTE) - called, MIN_RENEWAL);
  }

  /// What one call of a `Scripted` provider does.
  #[derive(Clone)]
  enum Step {
    /// Answers `secret-<call>` after a while, valid for the lifetime given.
    Answer(Duration, Option<Duration>),
    Fail(&'static str),
  }

  /// A provider that counts its calls and does what `steps` says for each,
  /// the last step again once they run out.
  struct Scripted {
    calls: Arc<AtomicU64>,
    steps: Vec<Step>,
  }

  impl CredentialsProvider for Scripted {
    fn fetch(&self) -> Fetching {
      let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
      let step = self.steps[(call as usize - 1).min(self.steps.len() - 1)].clone();
      Box::pin(async move {
        match step {
          Step::Answer(delay, lifetime) => {
            tokio::time::sleep(delay).await;
            Ok(Credentials {
              username: Some("locker".into()),
              password: format!("secret-{call}"),
              expires_at: lifetime.map(|lifetime| SystemTime::now() + lifetime),
            })
          }
          Step::Fail(reason) => Err(reason.to_string()),
        }
      })
    }
  }

  fn scripted(steps: Vec<Step>, timeout: Duration) -> (CredentialSource, Arc<AtomicU64>) {
    let calls = Arc::new(AtomicU64::new(0));
    let provider = Scripted {
      calls: calls.clone(),
      steps,
    };
    (CredentialSource::new(Box::new(provider), timeout), calls)
  }

  const TIMEOUT: Duration = Duration::from_secs(5);

  #[tokio::test(start_paused = true)]
  async fn one_call_serves_everyone_who_asks_while_it_is_under_way() {
    let step = Step::Answer(Duration::from_millis(50), None);
    let (source, calls) = scripted(vec![step], TIMEOUT);
    let waits: Vec<_> = (0..6).map(|_| source.fetch()).collect();
    for issued in futures_util::future::join_all(waits).await {
      let issued = issued.unwrap();
      assert_eq!(issued.version, 1);
      assert_eq!(issued.credentials.password, "secret-1");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // A connection that opens later asks again.
    let later = source.fetch().await.unwrap();
    assert_eq!((later.version, calls.load(Ordering::SeqCst)), (2, 2));
    assert_eq!(
      source.updates().borrow().as_ref().map(|i| i.version),
      Some(2)
    );
  }

  #[tokio::test(start_paused = true)]
  async fn a_call_that_hangs_costs_the_timeout_and_the_next_one_calls_again() {
    let (source, calls) = scripted(
      vec![Step::Answer(Duration::from_secs(3600), None)],
      Duration::from_millis(200),
    );
    let start = Instant::now();
    let error = source.fetch().await.unwrap_err();
    assert_eq!(
      error,
      "credentials provider failed: no answer within 200 ms (connect_timeout_ms)"
    );
    assert_eq!(start.elapsed(), Duration::from_millis(200));
    let _ = source.fetch().await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
  }

  #[tokio::test(start_paused = true)]
  async fn a_failure_is_told_without_the_passwords_handed_out_last() {
    let (source, _) = scripted(
      vec![
        Step::Answer(Duration::ZERO, None),
        Step::Answer(Duration::ZERO, None),
        Step::Answer(Duration::ZERO, None),
        Step::Fail("token secret-3 revoked, secret-2 too, secret-1 long ago"),
      ],
      TIMEOUT,
    );
    for _ in 0..3 {
      source.fetch().await.unwrap();
    }
    assert_eq!(
      source.fetch().await.unwrap_err(),
      "credentials provider failed: token <redacted> revoked, <redacted> too, secret-1 long ago"
    );
    assert_eq!(source.redact("WRONGPASS secret-3"), "WRONGPASS <redacted>");
  }

  #[tokio::test(start_paused = true)]
  async fn credentials_in_use_are_fetched_again_ahead_of_expiry_and_published() {
    let step = Step::Answer(Duration::ZERO, Some(Duration::from_secs(4)));
    let (source, calls) = scripted(vec![step], TIMEOUT);
    let first = source.fetch().await.unwrap();
    let start = Instant::now();
    let mut updates = source.updates();
    updates.borrow_and_update();
    updates.changed().await.unwrap();
    let renewed = updates.borrow_and_update().clone().unwrap();
    assert_eq!(renewed.version, first.version + 1);
    assert_eq!(renewed.credentials.password, "secret-2");
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    // Nobody uses them any more: no more calls.
    drop(updates);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
  }

  #[tokio::test(start_paused = true)]
  async fn a_failed_renewal_is_tried_again_with_backoff() {
    let lasting = Step::Answer(Duration::ZERO, Some(Duration::from_secs(8)));
    let (source, calls) = scripted(
      vec![
        lasting.clone(),
        Step::Fail("the identity endpoint is down"),
        lasting,
      ],
      TIMEOUT,
    );
    source.fetch().await.unwrap();
    let start = Instant::now();
    let mut updates = source.updates();
    updates.borrow_and_update();
    updates.changed().await.unwrap();
    let renewed = updates.borrow_and_update().clone().unwrap();
    assert_eq!(renewed.credentials.password, "secret-3");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let took = start.elapsed();
    assert!(
      took > Duration::from_secs(6) && took <= Duration::from_secs(9),
      "{took:?}"
    );
  }
}
