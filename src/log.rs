//! Event log: one line per event, to a callback or (with `LLMPOOL_LOG`) to
//! stderr, with secrets redacted.
//!
//! Cost when logging is off: one relaxed atomic load per event site, before
//! any formatting (see [`log!`]). Lines go through [`Logger::emit`], which
//! prefixes the call id, removes every registered secret (API keys) and
//! every URL password or bearer token it recognises, then hands the line to
//! the sink. Call sites never pass keys on purpose; redaction is the second
//! line of defence for what an error message or a server might echo.
//!
//! Code below the client (the connector chain, the resolver) has no client
//! at hand; it logs through the thread's [`Scope`], which a call sets for
//! its duration (ureq runs a synchronous call's I/O on the caller's thread).

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

/// Severity, as numbered in the C API (`llmpool_log_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        }
    }

    /// `error|warn|info|debug|trace` (any case) or `1`..`5`; `None` for
    /// anything else (including `off`).
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "error" | "1" => Level::Error,
            "warn" | "warning" | "2" => Level::Warn,
            "info" | "3" => Level::Info,
            "debug" | "4" => Level::Debug,
            "trace" | "5" => Level::Trace,
            _ => return None,
        })
    }
}

/// Where lines go: `(level, line)`; may be called on any thread.
pub type Sink = Arc<dyn Fn(Level, &str) + Send + Sync>;

/// One client's logger.
pub struct Logger {
    /// Most verbose level delivered; 0 = off.
    min: AtomicU8,
    sink: RwLock<Option<Sink>>,
    /// Exact strings never to show (API keys), longest first.
    secrets: RwLock<Vec<String>>,
    /// `log_bodies`: request and response bodies at TRACE.
    pub log_bodies: bool,
}

impl fmt::Debug for Logger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Logger")
            .field("min", &self.min.load(Ordering::Relaxed))
            .finish()
    }
}

impl Logger {
    /// A logger that writes to stderr at the level named by
    /// `LLMPOOL_LOG` (as looked up by `env`), or is off.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>, log_bodies: bool) -> Logger {
        let level = env("LLMPOOL_LOG").as_deref().and_then(Level::parse);
        let sink: Option<Sink> = level.map(|_| Arc::new(stderr_sink) as Sink);
        Logger {
            min: AtomicU8::new(level.map_or(0, |l| l as u8)),
            sink: RwLock::new(sink),
            secrets: RwLock::new(Vec::new()),
            log_bodies,
        }
    }

    /// Replaces the sink; `None` turns logging off (also the stderr
    /// fallback). `min` is clamped to 1..=5.
    pub fn set_sink(&self, min: i32, sink: Option<Sink>) {
        let mut s = crate::sync::write(&self.sink);
        let level = if sink.is_some() { min.clamp(1, 5) } else { 0 };
        *s = sink;
        self.min.store(level as u8, Ordering::Release);
    }

    /// Whether a line at `level` would be delivered: check before formatting.
    #[inline]
    pub fn enabled(&self, level: Level) -> bool {
        level as u8 <= self.min.load(Ordering::Relaxed)
    }

    /// Adds a string that must never appear in a line.
    pub fn add_secret(&self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        let mut s = crate::sync::write(&self.secrets);
        if !s.iter().any(|k| k == secret) {
            s.push(secret.to_string());
            s.sort_by_key(|k| std::cmp::Reverse(k.len()));
        }
    }

    /// Removes every secret from `text` (see [`redact`]).
    pub fn redact(&self, text: &str) -> String {
        let secrets = crate::sync::read(&self.secrets);
        redact(text, &secrets)
    }

    /// Formats, redacts and delivers one line. Callers check
    /// [`Logger::enabled`] first (the [`log!`] macro does).
    pub fn emit(&self, level: Level, call: Option<u64>, args: fmt::Arguments<'_>) {
        if !self.enabled(level) {
            return;
        }
        let line = match call {
            Some(id) => format!("call={id} {args}"),
            None => args.to_string(),
        };
        let line = self.redact(&line);
        // Cloned out so the callback may set another callback without deadlock.
        let sink = crate::sync::read(&self.sink).clone();
        if let Some(sink) = sink {
            let run = || sink(level, &line);
            match FOREIGN.get() {
                Some(on_thread_stack) => on_thread_stack(&run),
                None => run(),
            }
        }
    }
}

/// How the caller's log callback is run: set by the executor so that on an
/// async call's fiber it runs on the thread's own stack (see
/// `exec::fiber::on_thread_stack`; this layer is below the executor).
static FOREIGN: std::sync::OnceLock<fn(&(dyn Fn() + Sync))> = std::sync::OnceLock::new();

/// Sets how log callbacks run (once; later calls are ignored).
pub fn set_callback_runner(run: fn(&(dyn Fn() + Sync))) {
    let _ = FOREIGN.set(run);
}

fn stderr_sink(level: Level, line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "llmpool {:<5} {line}", level.name());
}

const REDACTED: &str = "[REDACTED]";

/// `text` without: any of `secrets`; the password of a URL
/// (`scheme://user:password@host` keeps the user); the token after
/// `Bearer `; the value of an `authorization`/`api_key`/`password` field.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if !s.is_empty() && out.contains(s.as_str()) {
            out = out.replace(s.as_str(), REDACTED);
        }
    }
    out = redact_url_passwords(&out);
    for marker in ["Bearer ", "bearer ", "Basic ", "basic "] {
        out = redact_after(&out, marker);
    }
    for field in [
        "\"api_key\":\"",
        "\"api_key\": \"",
        "\"password\":\"",
        "\"password\": \"",
        "authorization: ",
        "Authorization: ",
    ] {
        out = redact_after(&out, field);
    }
    out
}

/// Replaces the token following each `marker` (up to whitespace, a quote
/// or a comma) with `[REDACTED]`.
fn redact_after(text: &str, marker: &str) -> String {
    if !text.contains(marker) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(marker) {
        let start = i + marker.len();
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '"' || c == ',' || c == '\'')
            .unwrap_or(tail.len());
        if end > 0 && !tail[..end].starts_with(REDACTED) {
            out.push_str(REDACTED);
        } else {
            out.push_str(&tail[..end]);
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// `scheme://user:password@host` -> `scheme://user:[REDACTED]@host`.
fn redact_url_passwords(text: &str) -> String {
    if !text.contains("://") {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let start = i + 3;
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let auth_end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '?' || c == '#')
            .unwrap_or(tail.len());
        let authority = &tail[..auth_end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..colon + 1]);
                out.push_str(REDACTED);
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[auth_end..];
    }
    out.push_str(rest);
    out
}

/// Logs through `logger` when `level` is enabled; the arguments are not
/// even formatted otherwise.
macro_rules! log {
    ($logger:expr, $level:expr, $call:expr, $($arg:tt)+) => {{
        let l: &$crate::log::Logger = &$logger;
        if l.enabled($level) {
            l.emit($level, $call, format_args!($($arg)+));
        }
    }};
}
pub(crate) use log;

static NEXT_CALL: AtomicU64 = AtomicU64::new(1);

/// A fresh call id, unique in the process.
pub fn next_call_id() -> u64 {
    NEXT_CALL.fetch_add(1, Ordering::Relaxed)
}

thread_local! {
    static SCOPE: RefCell<Option<(Arc<Logger>, u64)>> = const { RefCell::new(None) };
}

/// Makes `logger` and `call` this thread's logging context until dropped
/// (then the previous one is back: a stream callback may start a call).
pub struct Scope(Option<(Arc<Logger>, u64)>);

impl Scope {
    pub fn enter(logger: &Arc<Logger>, call: u64) -> Scope {
        Scope(SCOPE.with(|s| s.borrow_mut().replace((logger.clone(), call))))
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let prev = self.0.take();
        SCOPE.with(|s| *s.borrow_mut() = prev);
    }
}

/// The logging context of a call whose fiber is suspended (see
/// `exec::fiber`): taken off the thread with [`take_scope`], put back on
/// the resuming thread with [`put_scope`].
pub struct Carried(Option<(Arc<Logger>, u64)>);

/// Takes this thread's logging context, leaving none.
pub fn take_scope() -> Option<Carried> {
    SCOPE
        .try_with(|s| s.borrow_mut().take())
        .ok()
        .flatten()
        .map(|v| Carried(Some(v)))
}

/// Makes `c` this thread's logging context again (none for `None`).
pub fn put_scope(c: Option<Carried>) {
    let _ = SCOPE.try_with(|s| *s.borrow_mut() = c.and_then(|c| c.0));
}

/// A future that runs `fut` with `logger` and `call` as its thread's
/// logging context during each poll: an async call may be resumed on
/// another thread after a wait, so a [`Scope`] cannot be held across it.
pub struct Scoped<F> {
    logger: Arc<Logger>,
    call: u64,
    fut: Pin<Box<F>>,
}

impl<F: Future> Scoped<F> {
    pub fn new(logger: &Arc<Logger>, call: u64, fut: F) -> Self {
        Scoped {
            logger: logger.clone(),
            call,
            fut: Box::pin(fut),
        }
    }

    /// [`Scoped::new`] for the future `make` returns, made and boxed in a
    /// frame of its own: made in the caller's frame, a large future is a
    /// temporary there, and that frame stays on an async call's fiber
    /// stack while the call waits (as in `exec::boxed`).
    #[inline(never)]
    pub fn made(logger: &Arc<Logger>, call: u64, make: impl FnOnce() -> F) -> Self {
        Scoped {
            logger: logger.clone(),
            call,
            fut: Box::pin(make()),
        }
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let _scope = Scope::enter(&this.logger, this.call);
        this.fut.as_mut().poll(cx)
    }
}

/// This thread's logger and call id, when a call is running here.
pub fn current() -> Option<(Arc<Logger>, u64)> {
    SCOPE.with(|s| s.borrow().clone())
}

/// Logs in this thread's context (no-op outside a call or when the level
/// is off); `f` builds the message only when it will be delivered.
pub fn in_scope(level: Level, f: impl FnOnce() -> String) {
    SCOPE.with(|s| {
        if let Some((l, call)) = &*s.borrow() {
            if l.enabled(level) {
                l.emit(level, Some(*call), format_args!("{}", f()));
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn capture(l: &Logger, min: i32) -> Arc<Mutex<Vec<(Level, String)>>> {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        l.set_sink(
            min,
            Some(Arc::new(move |lv, s: &str| {
                sink.lock().unwrap().push((lv, s.to_string()))
            })),
        );
        lines
    }

    #[test]
    fn level_filter_skips_formatting() {
        let l = Logger::from_env(&|_| None, false);
        assert!(!l.enabled(Level::Error));
        let lines = capture(&l, Level::Info as i32);
        struct Boom;
        impl fmt::Display for Boom {
            fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
                panic!("formatted although DEBUG is off")
            }
        }
        log!(l, Level::Debug, None, "{}", Boom);
        log!(l, Level::Warn, Some(7), "retry {}", 1);
        assert_eq!(
            *lines.lock().unwrap(),
            vec![(Level::Warn, "call=7 retry 1".to_string())]
        );
        l.set_sink(5, None);
        assert!(!l.enabled(Level::Error));
    }

    #[test]
    fn env_picks_the_level() {
        let l = Logger::from_env(&|k| (k == "LLMPOOL_LOG").then(|| "Debug".into()), false);
        assert!(l.enabled(Level::Debug) && !l.enabled(Level::Trace));
        let l = Logger::from_env(&|_| Some("nonsense".into()), false);
        assert!(!l.enabled(Level::Error));
    }

    #[test]
    fn secrets_and_credentials_are_redacted() {
        let l = Logger::from_env(&|_| None, false);
        l.add_secret("sk-MARKER-123");
        let lines = capture(&l, 5);
        log!(
            l,
            Level::Info,
            None,
            "key sk-MARKER-123 proxy http://bob:hunter2@proxy:3128/x redis://:pw@127.0.0.1:6379 Bearer abc.def, {{\"api_key\":\"zzz\"}}"
        );
        let got = &lines.lock().unwrap()[0].1;
        for secret in ["sk-MARKER-123", "hunter2", ":pw@", "abc.def", "zzz"] {
            assert!(!got.contains(secret), "{secret} in {got}");
        }
        assert!(got.contains("http://bob:[REDACTED]@proxy:3128/x"), "{got}");
        assert!(got.contains("redis://:[REDACTED]@127.0.0.1:6379"), "{got}");
    }

    #[test]
    fn urls_without_passwords_stay() {
        let s = "GET http://127.0.0.1:8080/v1/models and https://user@host/x";
        assert_eq!(redact(s, &[]), s);
    }

    #[test]
    fn scope_nests() {
        let a = Arc::new(Logger::from_env(&|_| None, false));
        let lines = capture(&a, 5);
        {
            let _s = Scope::enter(&a, 1);
            {
                let _t = Scope::enter(&a, 2);
                in_scope(Level::Info, || "inner".into());
            }
            in_scope(Level::Info, || "outer".into());
        }
        in_scope(Level::Info, || "nobody hears".into());
        let got: Vec<String> = lines.lock().unwrap().iter().map(|x| x.1.clone()).collect();
        assert_eq!(got, vec!["call=2 inner", "call=1 outer"]);
    }
}
