//! Fibers: each async call runs on a small stack of its own, so a call
//! waiting for the network holds no library thread.
//!
//! ureq is blocking code. Rather than a thread per call in flight, an async
//! call's future is polled on a stackful coroutine (`corosensei`): when its
//! socket would block, the transport arms the reactor with the call's waker
//! and [`wait`] suspends the coroutine, deep inside ureq, back to the pool
//! thread that resumed it. The pool thread goes on with other calls; the
//! reactor's wake puts the call back in the ready queue and any pool thread
//! resumes it where it stopped. A wait of the future itself (a backoff, a
//! rate-limit slot) suspends the same way, from the top of the coroutine.
//!
//! Three things make that safe:
//! - **Per-call thread-locals travel with the fiber.** A suspended call may
//!   be resumed on another thread, and other calls run on this one
//!   meanwhile, so the log scope and the transport's attempt record are
//!   taken off the thread at every suspend and put back at every resume
//!   ([`carry`]).
//! - **Foreign code runs on the thread's stack.** The caller's callbacks
//!   (C, Python, Go, JS trampolines) may need far more stack than a fiber
//!   has, and some runtimes check which stack they are on, so
//!   [`on_thread_stack`] runs them on the pool thread's own stack.
//! - **A stack overflow faults.** Each fiber stack has a guard page below
//!   it: running off the end is a SIGSEGV at the guard page, never a write
//!   into other memory.
//!
//! Blocking calls never run on a fiber: [`current`] is `None` on their
//! thread (also inside a callback, see [`on_thread_stack`]), and the
//! transport blocks as before.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::sync::{Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult, Yielder};

use super::pool::BoxFuture;
use super::timer;

/// Reserved per fiber (address space; only the pages a call touches are
/// memory). ureq, rustls and serde_json stay well inside it; callbacks run
/// on the thread's stack instead.
pub const STACK_SIZE: usize = 256 * 1024;

/// Freed stacks kept for the next fibers (each an mmap and an mprotect to
/// make): enough for the calls a burst starts at once.
const SPARE_STACKS: usize = 64;

type Co = Coroutine<Waker, (), (), DefaultStack>;

/// One async call's coroutine: its future, polled on its own stack.
pub struct Fiber {
    co: Option<Co>,
    ctx: Box<Ctx>,
}

// SAFETY: a suspended fiber holds, on its stack, only the frames of the
// call's own future (which is `Send`), ureq, rustls and this crate's
// transport, which hold no thread-bound values across a suspend: no `Rc`
// and no reference into a thread-local; the thread-locals it uses are
// carried to the resuming thread (see `carry`). The one lock guard held
// across a socket wait is the stream's own per-call state lock, which no
// other thread takes meanwhile; std's Mutex on Linux (the only system with
// this reactor, epoll) is a futex with no owner thread, so releasing it on
// another thread is sound. Callbacks, the only
// code that is not ours, run on the thread's stack and return before the
// fiber can suspend.
unsafe impl Send for Fiber {}

/// What the code on a fiber reaches through [`current`].
struct Ctx {
    yielder: Cell<*const Yielder<Waker, ()>>,
    waker: RefCell<Option<Waker>>,
    /// The earliest wake the timer holds for this fiber, so a stream's
    /// read after read does not queue one timer entry each.
    armed: Cell<Option<Instant>>,
    /// The lowest usable address of the fiber's stack.
    limit: usize,
    /// Suspends so far (see [`trim`]).
    suspends: Cell<u32>,
    /// Where the last trim cut the stack (see [`trim`]).
    trimmed_at: Cell<usize>,
}

thread_local! {
    /// The fiber running on this thread, or null.
    static CURRENT: Cell<*const Ctx> = const { Cell::new(std::ptr::null()) };
}

impl Fiber {
    /// A fiber that will poll `fut`; `Err(fut)` when no stack can be had
    /// (the caller then polls it on the thread, blocking for its I/O).
    pub fn new(fut: BoxFuture) -> Result<Fiber, BoxFuture> {
        static LOG: std::sync::Once = std::sync::Once::new();
        LOG.call_once(|| crate::log::set_callback_runner(|f| on_thread_stack(f)));
        let stack = match take_stack() {
            Some(s) => s,
            None => return Err(fut),
        };
        let ctx = Box::new(Ctx {
            yielder: Cell::new(std::ptr::null()),
            waker: RefCell::new(None),
            armed: Cell::new(None),
            limit: corosensei::stack::Stack::limit(&stack).get(),
            suspends: Cell::new(0),
            trimmed_at: Cell::new(0),
        });
        let ctx_addr = &*ctx as *const Ctx as usize;
        let co = Coroutine::with_stack(stack, move |y: &Yielder<Waker, ()>, waker: Waker| {
            // SAFETY: the Ctx is boxed (its address is stable) and owned by
            // the Fiber, which outlives its coroutine (dropped first).
            let ctx = unsafe { &*(ctx_addr as *const Ctx) };
            ctx.yielder.set(y);
            *ctx.waker.borrow_mut() = Some(waker);
            let mut fut = fut;
            loop {
                let w = ctx.waker.borrow().clone().expect("set at every resume");
                let mut cx = Context::from_waker(&w);
                if let Poll::Ready(()) = fut.as_mut().poll(&mut cx) {
                    return;
                }
                suspend(ctx);
            }
        });
        Ok(Fiber { co: Some(co), ctx })
    }

    /// Runs the fiber until it completes (true) or waits (false). A panic
    /// on the fiber is resumed here, on the thread.
    pub fn resume(&mut self, waker: &Waker) -> bool {
        let Some(co) = self.co.as_mut() else {
            return true;
        };
        let prev = CURRENT.with(|c| c.replace(&*self.ctx));
        struct Restore(*const Ctx);
        impl Drop for Restore {
            fn drop(&mut self) {
                CURRENT.with(|c| c.set(self.0));
            }
        }
        let _restore = Restore(prev);
        match co.resume(waker.clone()) {
            CoroutineResult::Yield(()) => false,
            CoroutineResult::Return(()) => {
                self.finish();
                true
            }
        }
    }

    fn finish(&mut self) {
        if let Some(co) = self.co.take() {
            if co.done() {
                give_stack(co.into_stack());
            }
            // Not done (dropped while suspended): its drop unwinds it.
        }
    }
}

impl Drop for Fiber {
    fn drop(&mut self) {
        // A fiber dropped while suspended (its client freed) is unwound by
        // corosensei, running the destructors on its stack, on this thread.
        let prev = CURRENT.with(|c| c.replace(&*self.ctx));
        drop(self.co.take());
        CURRENT.with(|c| c.set(prev));
    }
}

/// Suspends the fiber of `ctx` until it is resumed (on any thread), with
/// the per-call thread-locals carried across.
fn suspend(ctx: &Ctx) {
    trim(ctx);
    let carried = carry::take();
    let y = ctx.yielder.get();
    // SAFETY: set at the coroutine's start; the yielder lives on the
    // coroutine's stack as long as the coroutine runs, and we are on it.
    let waker = unsafe { &*y }.suspend(());
    *ctx.waker.borrow_mut() = Some(waker);
    carry::put(carried);
}

/// Gives back the pages of the fiber's stack below the frame that is
/// suspending, on its first four suspends, its 16th and then every 1024th.
///
/// The deepest code of a call (connect, TLS handshake, writing the request
/// and reading the answer's head through ureq) runs first and touches
/// about 48 KiB of stack; a stream then waits chunk after chunk from a
/// shallower frame for seconds or minutes. Without this, every stream in
/// flight would keep those pages. With it, a stream holds the pages its
/// read loop uses (after the first four and the 16th, at most one
/// `madvise` per 1024 waits: a stream's first body waits follow its
/// head's, so the deep pages go as soon as its body starts). The first
/// suspend counts too: calls started together all wait for their connect
/// or their answer's head at once, and without it each held the pages of
/// its way there meanwhile (the peak of 2,000 streams started at once: 40
/// KiB per stream, 32 with it).
///
/// A trim from the same depth as the last one is skipped: that is a
/// stream's read loop waiting again, and the pages under it are those its
/// every chunk uses (its parse and assembly), which would only fault back
/// in at the next chunk (each `madvise` costs the other cores a TLB
/// shootdown: 5% of the CPU at 5,000 streams).
fn trim(ctx: &Ctx) {
    let n = ctx.suspends.get().wrapping_add(1);
    ctx.suspends.set(n);
    // Each madvise costs the other cores a TLB shootdown: seldom.
    if !((1..=4).contains(&n) || n == 16 || n.is_multiple_of(1024)) {
        return;
    }
    const PAGE: usize = 4096;
    let here = &n as *const u32 as usize;
    // A page of margin under this frame for the suspend itself (its
    // frames and the registers the switch saves take well under 1 KiB).
    let top = (here & !(PAGE - 1)).saturating_sub(PAGE);
    let low = (ctx.limit + PAGE - 1) & !(PAGE - 1);
    if ctx.trimmed_at.replace(top) == top {
        return;
    }
    if top > low {
        // SAFETY: [low, top) lies inside this fiber's stack, below every
        // live frame of it (the stack grows down from `here`): no live data
        // is there. MADV_DONTNEED on private anonymous memory gives the
        // pages back; touched again, they come back zeroed.
        unsafe { libc::madvise(low as *mut libc::c_void, top - low, libc::MADV_DONTNEED) };
    }
}

/// The fiber running on this thread, if any: its waker, to be woken when
/// what it waits for is ready.
pub fn current() -> Option<Waker> {
    let p = CURRENT.with(Cell::get);
    if p.is_null() {
        return None;
    }
    // SAFETY: CURRENT points at a live fiber's Ctx while that fiber runs
    // on this thread (set and reset around `resume`).
    unsafe { &*p }.waker.borrow().clone()
}

/// Whether the code running on this thread is an async call on a fiber.
pub fn on_fiber() -> bool {
    !CURRENT.with(Cell::get).is_null()
}

/// Suspends the current fiber until its waker is woken or `deadline`
/// passes; `false` (and no wait) when not on a fiber. Whoever should wake
/// it must hold its waker (from [`current`]) before this is called. A wake
/// may also come for another reason (a timer armed for an earlier wait):
/// callers look again at what they wait for and wait again.
pub fn wait(deadline: Option<Instant>) -> bool {
    let p = CURRENT.with(Cell::get);
    if p.is_null() {
        return false;
    }
    // SAFETY: as in `current`.
    let ctx = unsafe { &*p };
    if let Some(d) = deadline {
        let now = Instant::now();
        if ctx.armed.get().is_some_and(|a| a <= now) {
            ctx.armed.set(None);
        }
        if ctx.armed.get().is_none_or(|a| a > d) {
            if let Some(w) = ctx.waker.borrow().clone() {
                timer::wake_at(d, w);
            }
            ctx.armed.set(Some(d));
        }
    }
    suspend(ctx);
    true
}

/// Runs `f` on this thread's own stack and outside the fiber (so a
/// blocking call made by `f` blocks, as it does on any thread). Callbacks
/// into the caller's code go through here. A panic in `f` propagates.
pub fn on_thread_stack<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let p = CURRENT.with(Cell::get);
    if p.is_null() {
        return f();
    }
    // SAFETY: as in `current`.
    let ctx = unsafe { &*p };
    let y = ctx.yielder.get();
    let run = move || {
        let prev = CURRENT.with(|c| c.replace(std::ptr::null()));
        struct Restore(*const Ctx);
        impl Drop for Restore {
            fn drop(&mut self) {
                CURRENT.with(|c| c.set(self.0));
            }
        }
        let _restore = Restore(prev);
        f()
    };
    // SAFETY: the yielder is live while its coroutine runs (we are on it).
    unsafe { &*y }.on_parent_stack(run)
}

/// Runs `f` as if no fiber ran on this thread (for `block_on`: a future
/// run to completion on the thread never suspends the fiber around it).
pub fn outside<R>(f: impl FnOnce() -> R) -> R {
    let prev = CURRENT.with(|c| c.replace(std::ptr::null()));
    struct Restore(*const Ctx);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(prev);
    f()
}

static SPARES: Mutex<Vec<DefaultStack>> = Mutex::new(Vec::new());

fn take_stack() -> Option<DefaultStack> {
    if let Some(s) = crate::sync::lock(&SPARES).pop() {
        return Some(s);
    }
    DefaultStack::new(STACK_SIZE).ok()
}

fn give_stack(s: DefaultStack) {
    let mut spares = crate::sync::lock(&SPARES);
    if spares.len() < SPARE_STACKS {
        spares.push(s);
    }
}

/// Thread-locals that belong to the call running on the thread, taken off
/// the thread when its fiber suspends and put back when it resumes.
pub mod carry {
    use super::*;

    /// A layer's per-call thread-locals: `take` leaves the thread as if no
    /// call ran on it and returns what it took; `put` puts it back.
    pub struct Hook {
        pub take: fn() -> Box<dyn Any>,
        pub put: fn(Box<dyn Any>),
    }

    /// The transport's attempt record (a layer above this one, so it
    /// registers itself).
    static TRANSPORT: OnceLock<Hook> = OnceLock::new();

    /// Registers the transport's hook (once; later calls are ignored).
    pub fn register(h: Hook) {
        let _ = TRANSPORT.set(h);
    }

    pub(super) struct Carried {
        log: Option<crate::log::Carried>,
        transport: Option<Box<dyn Any>>,
    }

    pub(super) fn take() -> Carried {
        Carried {
            log: crate::log::take_scope(),
            transport: TRANSPORT.get().map(|h| (h.take)()),
        }
    }

    pub(super) fn put(c: Carried) {
        crate::log::put_scope(c.log);
        if let (Some(h), Some(v)) = (TRANSPORT.get(), c.transport) {
            (h.put)(v);
        }
    }
}

#[cfg(test)]
mod tests;
