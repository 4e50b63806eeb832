//! The worker pool behind async calls.
//!
//! A call is a future. ureq is blocking, so a call doing network I/O holds
//! one library thread for that time; a call that waits (backoff,
//! Retry-After, a rate-limit slot) returns `Pending` and is parked: it
//! holds no thread until the timer or a cancel wakes it, and then any pool
//! thread resumes it. Threads are created on demand (never on the submitting
//! thread when one is already being started: each new thread starts the
//! next while work is queued), retire after `idle` without work, run on
//! small stacks and never exceed `max_threads`; work beyond the cap waits in
//! a FIFO. Calls waiting for a `max_concurrency` slot hold no thread: they
//! sit in a separate queue until the gate opens (a slot is released) or
//! their queue timeout passes (the same timer thread that wakes parked
//! calls expires them).

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use super::fiber::Fiber;
use super::timer;
use super::token::{with_call, CallToken};

/// How a task starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Run the call.
    Run,
    /// Cancelled before it started: complete it as cancelled.
    Cancelled,
    /// Waited longer than the queue timeout for a `max_concurrency` slot.
    Expired,
}

/// A call's work, polled on pool threads until it completes.
pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One submitted call: told how it starts, it gives the future to run to
/// completion (exactly once, on pool threads).
pub type Task = Box<dyn FnOnce(Start) -> BoxFuture + Send>;

/// A task that does all its work in its first poll (tests, simple jobs).
pub fn task(f: impl FnOnce(Start) + Send + 'static) -> Task {
    Box::new(move |s| Box::pin(async move { f(s) }))
}

/// A limit on calls running at once (`max_concurrency`), shared with
/// blocking calls. `release` must call [`Executor::gate_opened`] (through a
/// weak handle) so waiting calls move on.
pub trait Gate: Send + Sync {
    fn try_acquire(&self) -> bool;
    fn release(&self);
}

/// Sizing of the pool.
#[derive(Debug, Clone)]
pub struct Config {
    /// Threads started for ready work (about one per core): a call waiting
    /// for the network or a timer holds none.
    pub threads: usize,
    /// The most threads ever: beyond `threads`, one more starts when every
    /// thread has been stuck for [`STALL`] (callbacks that block) while
    /// calls wait to run.
    pub max_threads: usize,
    pub stack_size: usize,
    /// A thread without work for this long exits.
    pub idle: Duration,
    /// How long a call may wait for the gate.
    pub queue_timeout: Duration,
}

/// Stack of a pool thread: ureq, rustls and serde_json need far less; the
/// user's callbacks (Python, Go, JS trampolines) also run here.
pub const STACK_SIZE: usize = 512 * 1024;

/// A pool of library threads running submitted calls.
pub struct Executor {
    sh: Arc<Shared>,
}

/// A submitted call, for cancelling it.
#[derive(Clone)]
pub struct CallHandle {
    token: Arc<CallToken>,
    exec: Weak<Shared>,
}

struct Shared {
    cfg: Config,
    gate: Option<Arc<dyn Gate>>,
    st: Mutex<State>,
    /// Work for an idle thread.
    work: Condvar,
    /// `in_flight` reached 0.
    drained: Condvar,
}

/// Work for a pool thread: a call to start, or a parked one to resume.
enum Entry {
    New {
        token: Arc<CallToken>,
        task: Task,
        start: Start,
        /// Holds a gate slot to release after the task.
        permitted: bool,
    },
    Resume(Arc<Running>),
}

/// A started call's future and the state its waker needs.
struct Running {
    token: Arc<CallToken>,
    /// Holds a gate slot to release when the future completes.
    permitted: bool,
    /// Runs with that slot (tells the call not to wait for one itself).
    runs_permitted: bool,
    body: Mutex<Option<Body>>,
    state: AtomicU8,
    exec: Weak<Shared>,
}

/// What a started call runs: its future on a fiber of its own (network
/// waits suspend it, holding no thread), or, when no fiber stack could be
/// had, polled on the thread (its network I/O then blocks the thread).
enum Body {
    Fiber(Fiber),
    Plain(BoxFuture),
}

/// `Running::state`: parked, waiting for a wake.
const PARKED: u8 = 0;
/// In the ready queue.
const QUEUED: u8 = 1;
/// Being polled.
const POLLING: u8 = 2;
/// Woken while being polled: poll again.
const WOKEN: u8 = 3;
/// Completed.
const DONE: u8 = 4;

impl Wake for Running {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let mut cur = self.state.load(Ordering::SeqCst);
        let next = loop {
            let next = match cur {
                PARKED => QUEUED,
                POLLING => WOKEN,
                _ => return,
            };
            match self
                .state
                .compare_exchange(cur, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => break next,
                Err(now) => cur = now,
            }
        };
        if next == QUEUED {
            if let Some(sh) = self.exec.upgrade() {
                let mut st = lock(&sh);
                st.parked -= 1;
                st.ready.push_back(Entry::Resume(self.clone()));
                dispatch(&sh, &mut st, false);
            }
        }
    }
}

struct Waiting {
    token: Arc<CallToken>,
    task: Task,
    deadline: Instant,
}

#[derive(Default)]
struct State {
    ready: VecDeque<Entry>,
    waiting: VecDeque<Waiting>,
    live: HashMap<u64, Arc<CallToken>>,
    /// Started calls parked in a wait, holding no thread.
    parked: usize,
    threads: usize,
    peak_threads: usize,
    idle: usize,
    /// Notifications sent to idle threads and not yet taken.
    wakes: usize,
    /// Threads spawned that have not yet taken their first task.
    starting: usize,
    /// Threads releasing a gate slot: each takes the next ready call itself.
    returning: usize,
    /// Entries taken from `ready` so far (a stalled pool takes none).
    taken: u64,
    /// A stall check is due (see [`STALL`]).
    stall_check: bool,
    in_flight: usize,
    closed: bool,
}

/// Counters for metrics and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub threads: usize,
    pub peak_threads: usize,
    pub in_flight: usize,
    pub waiting_for_thread: usize,
    pub waiting_for_slot: usize,
    /// Calls parked in a wait (backoff, Retry-After, rate limit).
    pub parked: usize,
}

thread_local! {
    /// The pool this thread belongs to (its `Shared` address), or 0.
    static WORKER_OF: Cell<usize> = const { Cell::new(0) };
}

fn lock(sh: &Shared) -> MutexGuard<'_, State> {
    crate::sync::lock(&sh.st)
}

/// Refused: the executor is closing (its client is being freed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl Executor {
    pub fn new(cfg: Config, gate: Option<Arc<dyn Gate>>) -> Executor {
        Executor {
            sh: Arc::new(Shared {
                cfg,
                gate,
                st: Mutex::new(State::default()),
                work: Condvar::new(),
                drained: Condvar::new(),
            }),
        }
    }

    /// A weak handle for the gate's release hook.
    pub fn weak(&self) -> WeakExecutor {
        WeakExecutor(Arc::downgrade(&self.sh))
    }

    /// Queues `task` for `token`. Never blocks on I/O or on the gate; the
    /// only error is a closing executor, and then `task` is dropped unrun.
    pub fn submit(&self, token: Arc<CallToken>, task: Task) -> Result<CallHandle, Closed> {
        let sh = &self.sh;
        let mut st = lock(sh);
        if st.closed {
            return Err(Closed);
        }
        st.live.insert(token.id(), token.clone());
        st.in_flight += 1;
        let handle = CallHandle {
            token: token.clone(),
            exec: Arc::downgrade(sh),
        };
        match &sh.gate {
            Some(g) if !(st.waiting.is_empty() && g.try_acquire()) => {
                let deadline = Instant::now() + sh.cfg.queue_timeout;
                st.waiting.push_back(Waiting {
                    token,
                    task,
                    deadline,
                });
                // Outside the lock: the timer may wake it at once.
                drop(st);
                expire_at(sh, deadline);
            }
            g => {
                st.ready.push_back(Entry::New {
                    token,
                    task,
                    start: Start::Run,
                    permitted: g.is_some(),
                });
                dispatch(sh, &mut st, true);
            }
        }
        Ok(handle)
    }

    /// Cancels every call submitted and not yet completed.
    pub fn cancel_all(&self) {
        cancel_all(&self.sh, lock(&self.sh));
    }

    /// Refuses new calls, cancels those in flight and, unless called from
    /// one of this pool's own threads (a `done` callback), waits until
    /// every task has returned. From a pool thread it returns at once: the
    /// other tasks still complete (cancelled) afterwards.
    pub fn close(&self) {
        let sh = &self.sh;
        let mut st = lock(sh);
        st.closed = true;
        sh.work.notify_all();
        cancel_all(sh, st);
        if WORKER_OF.with(Cell::get) == Arc::as_ptr(sh) as usize {
            return;
        }
        let mut st = lock(sh);
        while st.in_flight > 0 {
            st = crate::sync::wait(&sh.drained, st);
        }
    }

    pub fn stats(&self) -> Stats {
        let st = lock(&self.sh);
        Stats {
            threads: st.threads,
            peak_threads: st.peak_threads,
            in_flight: st.in_flight,
            waiting_for_thread: st.ready.len(),
            waiting_for_slot: st.waiting.len(),
            parked: st.parked,
        }
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        // Idle threads exit; running tasks finish normally.
        let mut st = lock(&self.sh);
        st.closed = true;
        self.sh.work.notify_all();
    }
}

/// A weak reference for the gate's release hook.
#[derive(Clone)]
pub struct WeakExecutor(Weak<Shared>);

impl WeakExecutor {
    /// A gate slot came free: start waiting calls while slots remain.
    pub fn gate_opened(&self) {
        if let Some(sh) = self.0.upgrade() {
            let mut st = lock(&sh);
            pump(&sh, &mut st);
        }
    }
}

impl std::fmt::Debug for CallHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallHandle")
            .field("id", &self.id())
            .finish()
    }
}

impl CallHandle {
    pub fn id(&self) -> u64 {
        self.token.id()
    }

    /// Cancels this call alone: a waiting call completes at once as
    /// cancelled, a running one has its sockets shut down and its waits
    /// woken. A no-op after completion.
    pub fn cancel(&self) {
        self.token.cancel();
        if let Some(sh) = self.exec.upgrade() {
            let mut st = lock(&sh);
            if let Some(i) = st.waiting.iter().position(|w| w.token.id() == self.id()) {
                let w = st.waiting.remove(i).expect("index from position");
                st.ready.push_back(Entry::New {
                    token: w.token,
                    task: w.task,
                    start: Start::Cancelled,
                    permitted: false,
                });
                dispatch(&sh, &mut st, true);
            }
        }
    }
}

/// Cancels every call not yet completed: those waiting for a slot
/// complete as cancelled, running and parked ones have their tokens
/// cancelled. Tokens are cancelled outside the lock, because a cancel wakes
/// a parked call and the wake takes the lock.
fn cancel_all(sh: &Arc<Shared>, mut st: MutexGuard<'_, State>) {
    let tokens: Vec<Arc<CallToken>> = st.live.values().cloned().collect();
    while let Some(w) = st.waiting.pop_front() {
        st.ready.push_back(Entry::New {
            token: w.token,
            task: w.task,
            start: Start::Cancelled,
            permitted: false,
        });
    }
    dispatch(sh, &mut st, true);
    drop(st);
    for t in tokens {
        t.cancel();
    }
}

/// Moves waiting calls to the ready queue while the gate lets them in.
fn pump(sh: &Arc<Shared>, st: &mut State) {
    let Some(g) = &sh.gate else { return };
    let mut moved = false;
    while let Some(w) = st.waiting.front() {
        let (start, permitted) = if w.token.is_cancelled() {
            (Start::Cancelled, false)
        } else if g.try_acquire() {
            (Start::Run, true)
        } else {
            break;
        };
        let w = st.waiting.pop_front().expect("front exists");
        st.ready.push_back(Entry::New {
            token: w.token,
            task: w.task,
            start,
            permitted,
        });
        moved = true;
    }
    if moved {
        dispatch(sh, st, true);
    }
}

/// Finds threads for the ready queue: wakes idle ones, or starts one
/// unless another is already starting (`from_submit`) — that one starts
/// more when it takes its task, which keeps thread creation off the
/// submitting thread during a burst.
fn dispatch(sh: &Arc<Shared>, st: &mut State, from_submit: bool) {
    let mut want = st
        .ready
        .len()
        .saturating_sub(st.wakes + st.starting + st.returning);
    while want > 0 && st.idle > 0 {
        st.idle -= 1;
        st.wakes += 1;
        sh.work.notify_one();
        want -= 1;
    }
    // A thread taking its first task starts up to two more, so a burst of
    // N calls has its threads after about log2(N) thread start-ups rather
    // than N in a row.
    let spawns = if from_submit {
        usize::from(st.starting == 0)
    } else {
        2
    };
    for _ in 0..spawns.min(want) {
        if st.threads >= sh.cfg.threads.min(sh.cfg.max_threads) || !spawn(sh, st) {
            break;
        }
        st.starting += 1;
    }
    if want > 0 && st.threads < sh.cfg.max_threads {
        check_stall(sh, st);
    }
}

/// How long ready calls may wait while no thread takes any (all of them
/// inside callbacks that block) before one more thread starts.
pub const STALL: Duration = Duration::from_millis(20);

/// Has the timer look in [`STALL`] whether the pool took any ready call.
fn check_stall(sh: &Arc<Shared>, st: &mut State) {
    if st.stall_check {
        return;
    }
    st.stall_check = true;
    let w = StallCheck {
        exec: Arc::downgrade(sh),
        taken: st.taken,
    };
    timer::wake_at(Instant::now() + STALL, Waker::from(Arc::new(w)));
}

/// The timer's wake for a stall check.
struct StallCheck {
    exec: Weak<Shared>,
    taken: u64,
}

impl Wake for StallCheck {
    fn wake(self: Arc<Self>) {
        let Some(sh) = self.exec.upgrade() else {
            return;
        };
        let mut st = lock(&sh);
        st.stall_check = false;
        if st.ready.is_empty() || st.closed {
            return;
        }
        if st.taken == self.taken && st.threads < sh.cfg.max_threads && spawn(&sh, &mut st) {
            st.starting += 1;
        }
        if st.threads < sh.cfg.max_threads {
            check_stall(&sh, &mut st);
        }
    }
}

fn spawn(sh: &Arc<Shared>, st: &mut State) -> bool {
    let weak = Arc::downgrade(sh);
    let ok = std::thread::Builder::new()
        .name("llmpool-call".into())
        .stack_size(sh.cfg.stack_size)
        .spawn(move || worker(weak))
        .is_ok();
    if ok {
        st.threads += 1;
        st.peak_threads = st.peak_threads.max(st.threads);
    }
    ok
}

fn worker(weak: Weak<Shared>) {
    let Some(sh) = weak.upgrade() else { return };
    WORKER_OF.with(|w| w.set(Arc::as_ptr(&sh) as usize));
    let mut first = true;
    let mut st = lock(&sh);
    loop {
        if let Some(e) = st.ready.pop_front() {
            st.taken += 1;
            if first {
                first = false;
                st.starting -= 1;
            }
            if !st.ready.is_empty() {
                dispatch(&sh, &mut st, false);
            }
            drop(st);
            let Some((id, permitted)) = run(&sh, e) else {
                // Parked: it holds no thread now.
                st = lock(&sh);
                continue;
            };
            if let (true, Some(g)) = (permitted, &sh.gate) {
                // The freed slot may start a waiting call: this thread is
                // about to be free, so no other thread is woken for it.
                lock(&sh).returning += 1;
                g.release();
                st = lock(&sh);
                st.returning -= 1;
            } else {
                st = lock(&sh);
            }
            st.live.remove(&id);
            st.in_flight -= 1;
            if st.in_flight == 0 {
                sh.drained.notify_all();
            }
            continue;
        }
        if first {
            // Started for work another thread took first.
            first = false;
            st.starting -= 1;
        }
        if st.closed {
            break;
        }
        st.idle += 1;
        st = crate::sync::wait_timeout(&sh.work, st, sh.cfg.idle).0;
        if st.wakes > 0 {
            st.wakes -= 1;
        } else {
            // Timed out (or woke spuriously) without being claimed.
            st.idle -= 1;
            if st.ready.is_empty() {
                break;
            }
        }
    }
    st.threads -= 1;
}

/// Polls one call until it completes or parks. Returns its id and
/// whether it held a gate slot when it completed, `None` when it parked.
fn run(sh: &Arc<Shared>, e: Entry) -> Option<(u64, bool)> {
    let cell = match e {
        Entry::New {
            token,
            task,
            start,
            permitted,
        } => {
            let start = if start == Start::Run && token.is_cancelled() {
                Start::Cancelled
            } else {
                start
            };
            // A panic in `task` itself must not take the thread's
            // bookkeeping with it (the futures catch their own).
            let fut = catch_unwind(AssertUnwindSafe(|| task(start))).ok();
            let body = fut.map(|f| match Fiber::new(f) {
                Ok(fiber) => Body::Fiber(fiber),
                Err(f) => Body::Plain(f),
            });
            Arc::new(Running {
                token,
                permitted,
                runs_permitted: permitted && start == Start::Run,
                body: Mutex::new(body),
                state: AtomicU8::new(POLLING),
                exec: Arc::downgrade(sh),
            })
        }
        Entry::Resume(cell) => {
            cell.state.store(POLLING, Ordering::SeqCst);
            cell
        }
    };
    let waker = Waker::from(cell.clone());
    let mut cx = Context::from_waker(&waker);
    let id = cell.token.id();
    loop {
        let mut slot = crate::sync::lock(&cell.body);
        let ready = match slot.as_mut() {
            None => true,
            Some(Body::Fiber(fiber)) => {
                let resumed = catch_unwind(AssertUnwindSafe(|| {
                    with_call(cell.token.clone(), cell.runs_permitted, || {
                        fiber.resume(&waker)
                    })
                }));
                !matches!(resumed, Ok(false))
            }
            Some(Body::Plain(fut)) => {
                let polled = catch_unwind(AssertUnwindSafe(|| {
                    with_call(cell.token.clone(), cell.runs_permitted, || {
                        fut.as_mut().poll(&mut cx)
                    })
                }));
                !matches!(polled, Ok(Poll::Pending))
            }
        };
        if ready {
            *slot = None;
            cell.state.store(DONE, Ordering::SeqCst);
            return Some((id, cell.permitted));
        }
        drop(slot);
        // Counted under the lock its waker takes, so a wake that comes
        // right after the state change never finds the count at zero.
        let mut st = lock(sh);
        match cell
            .state
            .compare_exchange(POLLING, PARKED, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => {
                st.parked += 1;
                return None;
            }
            // Woken while polling: poll again at once.
            Err(_) => cell.state.store(POLLING, Ordering::SeqCst),
        }
    }
}

/// Has the timer expire the calls waiting for a gate slot at `at`.
fn expire_at(sh: &Arc<Shared>, at: Instant) {
    let w = ExpireWaiting {
        exec: Arc::downgrade(sh),
        at,
    };
    timer::wake_at(at, Waker::from(Arc::new(w)));
}

/// The timer's wake for a queue deadline.
struct ExpireWaiting {
    exec: Weak<Shared>,
    at: Instant,
}

impl Wake for ExpireWaiting {
    fn wake(self: Arc<Self>) {
        let Some(sh) = self.exec.upgrade() else {
            return;
        };
        if Instant::now() < self.at {
            // Early (the timer could not start its thread): wait again.
            let at = self.at;
            timer::wake_at(at, Waker::from(self));
            return;
        }
        let mut st = lock(&sh);
        expire_waiting(&sh, &mut st);
    }
}

/// Completes as expired the calls that waited for a gate slot past their
/// queue timeout.
fn expire_waiting(sh: &Arc<Shared>, st: &mut State) {
    let now = Instant::now();
    let mut expired = false;
    // Deadlines are submit time + one timeout: the front is the earliest.
    while st.waiting.front().is_some_and(|w| w.deadline <= now) {
        let w = st.waiting.pop_front().expect("front exists");
        st.ready.push_back(Entry::New {
            token: w.token,
            task: w.task,
            start: Start::Expired,
            permitted: false,
        });
        expired = true;
    }
    if expired {
        dispatch(sh, st, false);
    }
}

#[cfg(test)]
mod tests;
