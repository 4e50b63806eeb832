//! Per-call cancellation: a token shared by a call's handle and the library
//! thread running it.
//!
//! ureq is blocking, so cancelling a call means interrupting the socket it is
//! blocked on. The transport registers every socket the current attempt
//! touches with the token of the call running on that thread (a
//! thread-local set by the executor around the call); `cancel` shuts those
//! sockets down, so a blocked read or write returns at once, and wakes the
//! call if it is parked in a wait ([`CallToken::sleep`]). Blocking calls run
//! without a token and are not affected.

use std::cell::RefCell;
use std::future::Future;
use std::net::{Shutdown, TcpStream};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::timer;

/// The cancel state of one call.
#[derive(Debug, Default)]
pub struct CallToken {
    id: u64,
    /// An async call's (cancellable alone); else a blocking call's, which
    /// only `llmpool_client_cancel` cancels.
    is_async: bool,
    cancelled: AtomicBool,
    /// Sockets the current attempt uses; emptied between attempts so a
    /// connection handed back to the pool is never shut down by this call.
    sockets: Mutex<Vec<Weak<TcpStream>>>,
    /// The waker of the wait the call is parked in, if any.
    waker: Mutex<Option<Waker>>,
}

impl CallToken {
    /// The token of async call `id`.
    pub fn new(id: u64) -> CallToken {
        CallToken {
            id,
            is_async: true,
            ..CallToken::default()
        }
    }

    /// The token of a blocking call, for `llmpool_client_cancel`.
    pub fn blocking() -> CallToken {
        CallToken::default()
    }

    /// Whether this is an async call's token.
    pub fn is_async(&self) -> bool {
        self.is_async
    }

    /// The async call's id (unique within the process, never 0); 0 for a
    /// blocking call.
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Cancels the call: its sockets are shut down and its waits end. Safe
    /// to call any number of times, from any thread, also after the call ended.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        let sockets = crate::sync::lock(&self.sockets);
        for s in sockets.iter().filter_map(Weak::upgrade) {
            let _ = s.shutdown(Shutdown::Both);
        }
        drop(sockets);
        let waker = crate::sync::lock(&self.waker).take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Records a socket used by the current attempt. A call cancelled
    /// before the socket was registered has it shut down at once (the flag
    /// is read under the same lock `cancel` takes, so no cancel is missed).
    pub fn register(&self, s: &Arc<TcpStream>) {
        let mut sockets = crate::sync::lock(&self.sockets);
        if self.is_cancelled() {
            let _ = s.shutdown(Shutdown::Both);
        }
        sockets.push(Arc::downgrade(s));
    }

    /// Has a cancel wake `waker` (a fiber waiting for something a cancel
    /// should end at once, such as a connect) until [`CallToken::unwatch`].
    /// False when already cancelled (then nothing is stored).
    pub fn watch(&self, waker: Waker) -> bool {
        *crate::sync::lock(&self.waker) = Some(waker);
        // `cancel` sets the flag before taking the waker (as in `Sleep`).
        !self.is_cancelled()
    }

    /// Ends a [`CallToken::watch`].
    pub fn unwatch(&self) {
        *crate::sync::lock(&self.waker) = None;
    }

    /// Forgets the sockets of the attempt that just ended.
    pub fn clear_sockets(&self) {
        crate::sync::lock(&self.sockets).clear();
    }

    /// Waits `d` unless cancelled first: true when the time ran out,
    /// false on a cancel. The wait holds no thread: the task is parked
    /// until the timer thread or `cancel` wakes it.
    pub fn sleep(self: &Arc<Self>, d: Duration) -> Sleep {
        Sleep {
            token: self.clone(),
            deadline: Instant::now() + d,
            armed: false,
        }
    }
}

/// The future of [`CallToken::sleep`].
#[must_use = "a sleep does nothing unless awaited"]
pub struct Sleep {
    token: Arc<CallToken>,
    deadline: Instant,
    /// The timer holds our waker (registered once per sleep).
    armed: bool,
}

impl Future for Sleep {
    type Output = bool;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let tok = &self.token;
        if tok.is_cancelled() {
            return Poll::Ready(false);
        }
        if Instant::now() >= self.deadline {
            return Poll::Ready(true);
        }
        *crate::sync::lock(&tok.waker) = Some(cx.waker().clone());
        // `cancel` sets the flag before taking the waker: checking again
        // after storing it means no cancel is missed.
        if tok.is_cancelled() {
            return Poll::Ready(false);
        }
        if !self.armed {
            self.armed = true;
            timer::wake_at(self.deadline, cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        // A later cancel must not wake a task for a wait that is over.
        let mut w = crate::sync::lock(&self.token.waker);
        *w = None;
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Current>> = const { RefCell::new(None) };
}

/// What the executor tells the code running a call on this thread.
#[derive(Clone)]
struct Current {
    token: Arc<CallToken>,
    /// The executor already holds a `max_concurrency` slot for this call.
    permitted: bool,
}

/// Runs `f` as the call of `token` on this thread.
pub fn with_call<R>(token: Arc<CallToken>, permitted: bool, f: impl FnOnce() -> R) -> R {
    in_context(Some(Current { token, permitted }), f)
}

/// Runs `f` outside any async call: a blocking call made from inside an
/// async call's callback is an ordinary blocking call (no token, no slot).
pub fn without_call<R>(f: impl FnOnce() -> R) -> R {
    in_context(None, f)
}

/// Runs `f` with `ctx` as this thread's call, then restores the previous one
/// (also on a panic).
fn in_context<R>(ctx: Option<Current>, f: impl FnOnce() -> R) -> R {
    struct Reset(Option<Current>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let prev = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = prev);
        }
    }
    let prev = CURRENT.with(|c| std::mem::replace(&mut *c.borrow_mut(), ctx));
    let _reset = Reset(prev);
    f()
}

/// The token of the call running on this thread.
pub fn current() -> Option<Arc<CallToken>> {
    CURRENT.with(|c| c.borrow().as_ref().map(|c| c.token.clone()))
}

/// Whether the executor already holds this call's `max_concurrency` slot.
pub fn current_permitted() -> bool {
    CURRENT.with(|c| c.borrow().as_ref().is_some_and(|c| c.permitted))
}

/// Registers `s` with the current call, if any.
pub fn register_socket(s: &Arc<TcpStream>) {
    CURRENT.with(|c| {
        if let Some(c) = c.borrow().as_ref() {
            c.token.register(s);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    #[test]
    fn cancel_interrupts_a_blocked_read_and_a_sleep() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let s = Arc::new(TcpStream::connect(l.local_addr().unwrap()).unwrap());
        let _peer = l.accept().unwrap();
        let tok = Arc::new(CallToken::new(7));
        tok.register(&s);
        let t2 = tok.clone();
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            t2.cancel();
        });
        let started = Instant::now();
        let mut buf = [0u8; 8];
        let n = (&*s).read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0);
        assert!(started.elapsed() < Duration::from_secs(2));
        canceller.join().unwrap();
        assert!(!crate::exec::block_on(tok.sleep(Duration::from_secs(5))));
        assert_eq!(tok.id(), 7);
    }

    #[test]
    fn registering_after_cancel_shuts_the_socket_down() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let s = Arc::new(TcpStream::connect(l.local_addr().unwrap()).unwrap());
        let _peer = l.accept().unwrap();
        let tok = CallToken::new(1);
        tok.cancel();
        tok.register(&s);
        let mut buf = [0u8; 8];
        assert_eq!((&*s).read(&mut buf).unwrap_or(0), 0);
    }

    #[test]
    fn current_is_set_only_inside_with_call() {
        assert!(current().is_none());
        let tok = Arc::new(CallToken::new(3));
        with_call(tok, true, || {
            assert_eq!(current().unwrap().id(), 3);
            assert!(current_permitted());
        });
        assert!(current().is_none());
        assert!(!current_permitted());
    }

    #[test]
    fn uncancelled_sleep_runs_its_time() {
        let tok = Arc::new(CallToken::new(2));
        let t = Instant::now();
        assert!(crate::exec::block_on(tok.sleep(Duration::from_millis(20))));
        assert!(t.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn cancel_wakes_a_parked_sleep() {
        let tok = Arc::new(CallToken::new(4));
        let t2 = tok.clone();
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            t2.cancel();
        });
        let t = Instant::now();
        assert!(!crate::exec::block_on(tok.sleep(Duration::from_secs(30))));
        assert!(t.elapsed() < Duration::from_secs(5));
        canceller.join().unwrap();
    }
}
