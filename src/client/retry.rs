//! Retries on one endpoint: each attempt's outcome becomes a [`Step`]
//! (give the result back, send again at once, or back off and send again).
//! A refreshed key after a 401 and the free reconnect after a pooled
//! connection turned out dead are retry decisions like any other.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::exchange::{http_error, Attempt, BodyError, Done, Tally};
use super::{BodyReader, Call, Client};
use crate::error::{Code, Error};
use crate::exec::token;
use crate::headers::Headers;
use crate::log::{in_scope, Level};
use crate::policy::retry::{jitter, Decision};
use crate::sync::read;

/// How many times a call silently reconnects after finding a pooled
/// connection dead before any response byte arrived.
const MAX_FREE_RECONNECTS: u32 = 2;

/// What to do after one attempt.
enum Step {
    /// Give this endpoint's result back.
    Return(Done),
    /// Send again at once (counted as a retry when `retry`).
    Again { retry: bool },
    /// Send again after `wait`; `cancelled` is the result if a cancel
    /// ends the wait.
    Backoff { wait: Duration, cancelled: Done },
}

/// What one endpoint's attempts have used up so far.
#[derive(Default)]
struct Budget {
    retries: u32,
    refreshed_key: bool,
}

impl Client {
    /// One endpoint: attempts until one gives a result to return.
    pub(crate) async fn attempts_on(
        &self,
        ep: usize,
        call: &Call,
        on_body: &mut BodyReader<'_>,
        t: &mut Tally,
    ) -> Done {
        let tok = token::current();
        let mut used = Budget::default();
        loop {
            if tok.as_ref().is_some_and(|t| t.is_cancelled()) {
                return Done::failed(cancelled_error());
            }
            let outcome = self.exchange(ep, call, on_body, t);
            let cancelled = tok.as_ref().is_some_and(|t| t.is_cancelled());
            let step = match outcome {
                Attempt::Answer {
                    status,
                    headers,
                    body,
                    body_err,
                } => {
                    let answer = (status, headers, body, body_err);
                    self.after_answer(ep, call, answer, cancelled, t.attempts, &mut used)
                }
                Attempt::Failed(e, raw) => self.after_failure(e, raw, cancelled, t, &used),
            };
            match step {
                Step::Return(done) => return done,
                Step::Again { retry } => {
                    if retry {
                        t.retries += 1;
                        self.inner.metrics.retried();
                    }
                }
                Step::Backoff { wait, cancelled } => {
                    if !sleep_unless_cancelled(wait).await {
                        return cancelled;
                    }
                    used.retries += 1;
                    t.retries += 1;
                    self.inner.metrics.retried();
                }
            }
        }
    }

    fn after_answer(
        &self,
        ep: usize,
        call: &Call,
        (status, headers, body, body_err): (u16, Headers, Vec<u8>, Option<BodyError>),
        cancelled: bool,
        attempts: u32,
        used: &mut Budget,
    ) -> Step {
        let inner = &*self.inner;
        if let Some(BodyError { error, resend }) = body_err {
            if cancelled {
                let e = cancelled_error();
                return Step::Return(Done::answer(Some(e), status, headers, body));
            }
            // A stream that failed before its first delta delivered nothing:
            // sending it again duplicates nothing.
            let resend = resend && call.facts.stream;
            if resend && used.retries < inner.retry.policy.max_retries {
                let why = format!("{} (before the first delta)", error.message);
                let cancelled = Done::answer(Some(cancelled_error()), status, headers, body);
                return self.backoff(used, &why, cancelled);
            }
            let mut done = Done::answer(Some(error), status, headers, body);
            done.resend = resend;
            return Step::Return(done);
        }
        if cancelled {
            return Step::Return(Done::answer(Some(cancelled_error()), status, headers, body));
        }
        let own_key = inner.endpoints.get(ep).api_key.is_some();
        if status == 401 && !used.refreshed_key && !own_key {
            used.refreshed_key = true;
            if self.refresh_key() {
                // The documented "refresh and retry once": at once, no backoff.
                in_scope(Level::Warn, || {
                    format!(
                        "retry: HTTP 401 with a refreshed key, at once (attempt {})",
                        attempts + 1
                    )
                });
                return Step::Again { retry: true };
            }
        }
        let h = |name: &str| headers.get(name).map(str::to_string);
        let decision =
            inner
                .retry
                .policy
                .decide(used.retries, status, &h, &body, SystemTime::now(), jitter());
        match decision {
            Decision::Retry(wait) => {
                in_scope(Level::Warn, || {
                    format!(
                        "retry {}/{}: HTTP {status}, waiting {} ms",
                        used.retries + 1,
                        inner.retry.policy.max_retries,
                        wait.as_millis()
                    )
                });
                Step::Backoff {
                    wait,
                    cancelled: Done::answer(Some(cancelled_error()), status, headers, body),
                }
            }
            Decision::Stop(why) => {
                let err = (!(200..300).contains(&status))
                    .then(|| http_error(status, &call.path, &body, &why));
                Step::Return(Done::answer(err, status, headers, body))
            }
        }
    }

    fn after_failure(
        &self,
        mut e: Error,
        raw: Option<ureq::Error>,
        cancelled: bool,
        t: &mut Tally,
        used: &Budget,
    ) -> Step {
        let inner = &*self.inner;
        if cancelled {
            return Step::Return(Done::failed(cancelled_error()));
        }
        let io = t.io;
        if e.code == Code::Io && io.opened == 0 && !io.pooled {
            // Failed before any connection existed: name resolution
            // or the connect itself (ureq reports lookups as I/O).
            e = Error::new(Code::Connect, format!("could not connect: {}", e.message));
        }
        let dead_pooled =
            t.reused && io.bytes_in == 0 && matches!(e.code, Code::Io | Code::Protocol);
        if dead_pooled && t.free_reconnects < MAX_FREE_RECONNECTS {
            // The server closed this idle connection before we noticed.
            // Nothing was answered, so repeating is safe and free.
            t.free_reconnects += 1;
            inner.metrics.free_reconnect();
            in_scope(Level::Info, || {
                format!(
                    "reconnect: the pooled connection had been closed by the server while idle ({}); sending again on a new one",
                    e.message
                )
            });
            return Step::Again { retry: false };
        }
        // Nothing reached the server when the connection could not be
        // made, so a connect failure is safe to retry for any method.
        // A proxy refusing CONNECT (bad credentials, forbidden port) will
        // refuse again: not retried.
        let retryable = (matches!(e.code, Code::Connect)
            && !matches!(raw, Some(ureq::Error::ConnectProxyFailed(_))))
            || matches!(raw, Some(ureq::Error::Timeout(ureq::Timeout::Connect)));
        if retryable && used.retries < inner.retry.policy.max_retries {
            return self.backoff(used, &e.message, Done::failed(cancelled_error()));
        }
        Step::Return(Done::failed(e))
    }

    /// Backs off before the next attempt (logged with `why`); `cancelled`
    /// is the result if a cancel ends the wait.
    fn backoff(&self, used: &Budget, why: &str, cancelled: Done) -> Step {
        let policy = &self.inner.retry.policy;
        let wait = policy.backoff(used.retries, jitter());
        in_scope(Level::Warn, || {
            format!(
                "retry {}/{}: {why}, waiting {} ms",
                used.retries + 1,
                policy.max_retries,
                wait.as_millis()
            )
        });
        Step::Backoff { wait, cancelled }
    }

    /// Asks the key provider for a fresh key; true when it gave a new one.
    fn refresh_key(&self) -> bool {
        let provider = read(&self.inner.retry.key_provider).clone();
        let Some(provider) = provider else {
            return false;
        };
        // The caller's code: on the thread's stack, not a fiber's.
        match crate::exec::fiber::on_thread_stack(|| provider()) {
            // A key that cannot be sent counts as no new key.
            Some(k) if !k.is_empty() && self.set_api_key(Some(&k)).is_ok() => {
                self.inner.metrics.key_refreshed();
                in_scope(Level::Info, || {
                    "key refresh: HTTP 401, the key provider gave a new key".to_string()
                });
                true
            }
            _ => false,
        }
    }
}

/// Waits `wait` unless the call's token is cancelled first (by
/// `llmpool_call_cancel` or `cancel_all`); false when cancelled. An
/// async call parks, holding no thread; a blocking call's thread
/// sleeps in `block_on_call`.
pub(crate) async fn sleep_unless_cancelled(wait: Duration) -> bool {
    // Every call runs with a token; a fresh one (never cancelled) keeps
    // a future polled some other way correct.
    let tok = token::current().unwrap_or_else(|| Arc::new(token::CallToken::blocking()));
    tok.sleep(wait).await
}

pub(crate) fn cancelled_error() -> Error {
    let by = match token::current() {
        Some(t) if t.is_async() => "llmpool_call_cancel or llmpool_client_cancel",
        _ => "llmpool_client_cancel",
    };
    Error::new(Code::Cancelled, format!("call cancelled by {by}"))
}
