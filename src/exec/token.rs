//! Per-call cancellation: a token shared by a call's handle and the library
//! thread running it.
//!
//! ureq is blocking, so cancelling a call means interrupting the socket it is
//! blocked on. The transport registers every socket the current attempt
//! touches with the token of the call running on that thread (a
//! thread-local set by the executor around the call); `cancel` shuts those
//! sockets down, so a blocked read or write returns at once, and wakes any
//! wait the call is in. Blocking calls run without a token and are not
//! affected.

use std::cell::RefCell;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

/// The cancel state of one call.
#[derive(Debug, Default)]
pub struct CallToken {
    id: u64,
    cancelled: AtomicBool,
    /// Sockets the current attempt uses; emptied between attempts so a
    /// connection handed back to the pool is never shut down by this call.
    sockets: Mutex<Vec<Weak<TcpStream>>>,
    wake: Condvar,
}

impl CallToken {
    pub fn new(id: u64) -> CallToken {
        CallToken {
            id,
            ..CallToken::default()
        }
    }

    /// The call's id (unique within the process, never 0).
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
        let sockets = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        for s in sockets.iter().filter_map(Weak::upgrade) {
            let _ = s.shutdown(Shutdown::Both);
        }
        self.wake.notify_all();
    }

    /// Records a socket used by the current attempt. A call cancelled
    /// before the socket was registered has it shut down at once (the flag
    /// is read under the same lock `cancel` takes, so no cancel is missed).
    pub fn register(&self, s: &Arc<TcpStream>) {
        let mut sockets = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        if self.is_cancelled() {
            let _ = s.shutdown(Shutdown::Both);
        }
        sockets.push(Arc::downgrade(s));
    }

    /// Forgets the sockets of the attempt that just ended.
    pub fn clear_sockets(&self) {
        self.sockets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Sleeps `d` unless cancelled first; false when cancelled.
    pub fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut g = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if self.is_cancelled() {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            g = self
                .wake
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
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
    struct Reset(Option<Current>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let prev = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = prev);
        }
    }
    let prev = CURRENT.with(|c| c.borrow_mut().replace(Current { token, permitted }));
    let _reset = Reset(prev);
    f()
}

/// The token of the call running on this thread, if it is an async call.
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
        assert!(!tok.sleep(Duration::from_secs(5)));
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
        let tok = CallToken::new(2);
        let t = Instant::now();
        assert!(tok.sleep(Duration::from_millis(20)));
        assert!(t.elapsed() >= Duration::from_millis(20));
    }
}
