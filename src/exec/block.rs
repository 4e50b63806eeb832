//! Running the call futures: to completion on the calling thread (the
//! blocking API), and with panics caught (the executor).
//!
//! A call is one `async` code path for both APIs. Its only await points
//! are waits ([`super::CallToken::sleep`]); its network I/O is blocking
//! ureq inside `poll`. A blocking call runs its future on the caller's
//! thread with [`block_on_call`], which parks the thread while the call
//! waits (the timer thread or a cancel unparks it).

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

use super::token::{self, CallToken};

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `fut` to completion on this thread, outside any call's context
/// (no token: its waits cannot be cancelled).
pub fn block_on<F: Future>(fut: F) -> F::Output {
    token::without_call(|| run_here(fut, |poll| poll()))
}

/// Runs the call `fut` to completion on this thread as the call of `token`
/// (a blocking call's, also when made from an async call's callback): its
/// sockets, waits, connect and name lookup answer to that token's cancel.
pub fn block_on_call<F: Future>(token: &Arc<CallToken>, fut: F) -> F::Output {
    run_here(fut, |poll| token::with_call(token.clone(), false, poll))
}

/// Polls `fut` on this thread, each poll through `around`, parking the
/// thread while it is pending.
fn run_here<F: Future>(
    fut: F,
    around: impl Fn(&mut dyn FnMut() -> Poll<F::Output>) -> Poll<F::Output>,
) -> F::Output {
    let mut fut = pin!(fut);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    // Waits inside `fut` block this thread, also when it is a fiber's:
    // parking here suspends nothing else.
    super::fiber::outside(|| loop {
        if let Poll::Ready(v) = around(&mut || fut.as_mut().poll(&mut cx)) {
            return v;
        }
        std::thread::park();
    })
}

/// A future that turns a panic in `poll` into `Err(payload)`.
pub struct CatchPanic<F>(Pin<Box<F>>);

impl<F: Future> CatchPanic<F> {
    pub fn new(fut: F) -> Self {
        CatchPanic(Box::pin(fut))
    }
}

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = self.0.as_mut();
        match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(p) => Poll::Ready(Err(p)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pending once, waking itself from another thread.
    struct OnceLater(bool);
    impl Future for OnceLater {
        type Output = u8;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u8> {
            if self.0 {
                return Poll::Ready(7);
            }
            self.0 = true;
            let w = cx.waker().clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(10));
                w.wake();
            });
            Poll::Pending
        }
    }

    #[test]
    fn block_on_waits_for_a_wake() {
        assert_eq!(block_on(OnceLater(false)), 7);
        assert_eq!(block_on(async { 1 + 1 }), 2);
    }

    #[test]
    fn catch_panic_reports_the_payload() {
        let r = block_on(CatchPanic::new(async { panic!("boom") }));
        let p = r.unwrap_err();
        assert_eq!(p.downcast_ref::<&str>(), Some(&"boom"));
        assert_eq!(block_on(CatchPanic::new(async { 3 })).ok(), Some(3));
    }
}
