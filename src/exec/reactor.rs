//! The reactor: one process-wide thread in `epoll_wait` that wakes the
//! fibers whose sockets became ready.
//!
//! A socket is registered once, edge-triggered for reading and writing, the
//! first time an async call waits on it ([`Registration`]), and stays
//! registered for the connection's life (a pooled connection's next call
//! waits on the same registration). Every readiness edge bumps the
//! registration's generation and wakes the waker it holds, if any. A waiter
//! reads the generation, tries its I/O, stores its waker and suspends only
//! if no edge came in between (see [`Registration::wait`]): edge triggering
//! then loses no wake, and a wait costs no system call beyond the I/O.
//!
//! Epoll names registrations by a number, not a pointer, so an event that
//! arrives after its socket was dropped finds nothing and is ignored.

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Waker;
use std::time::{Duration, Instant};

use super::fiber;

/// One socket's place in the reactor.
#[derive(Default)]
struct Slot {
    /// Readiness edges seen so far.
    gen: AtomicU64,
    waker: Mutex<Option<Waker>>,
}

struct Reactor {
    epoll: RawFd,
    slots: Mutex<HashMap<u64, Arc<Slot>>>,
    next: AtomicU64,
}

static REACTOR: OnceLock<Option<Reactor>> = OnceLock::new();

fn reactor() -> Option<&'static Reactor> {
    REACTOR.get_or_init(start).as_ref()
}

fn start() -> Option<Reactor> {
    // SAFETY: plain system call; the result is checked.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epoll < 0 {
        return None;
    }
    std::thread::Builder::new()
        .name("llmpool-reactor".into())
        .stack_size(64 * 1024)
        .spawn(run)
        .ok()?;
    Some(Reactor {
        epoll,
        slots: Mutex::new(HashMap::new()),
        next: AtomicU64::new(1),
    })
}

fn run() {
    // The thread starts inside `start`, before the reactor is stored: wait
    // for it (get_or_init blocks until it is set).
    let Some(r) = REACTOR.wait().as_ref() else {
        return;
    };
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 512];
    loop {
        let asleep = Instant::now();
        // SAFETY: `events` is valid for `len` entries; epoll is ours.
        let n = unsafe { libc::epoll_wait(r.epoll, events.as_mut_ptr(), events.len() as i32, -1) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // Nothing sensible is left to do; waits fall back to their
            // deadlines (and blocking I/O after the next registration fails).
            return;
        }
        let mut ready = Vec::with_capacity(n as usize);
        {
            let slots = crate::sync::lock(&r.slots);
            for ev in &events[..n as usize] {
                if let Some(s) = slots.get(&{ ev.u64 }) {
                    ready.push(s.clone());
                }
            }
        }
        for s in ready {
            s.gen.fetch_add(1, Ordering::SeqCst);
            let w = crate::sync::lock(&s.waker).take();
            if let Some(w) = w {
                w.wake();
            }
        }
        if let Some(pause) = gather(n as usize, asleep.elapsed()) {
            std::thread::sleep(pause);
        }
    }
}

/// How long the reactor lets readiness events gather while they come
/// faster than it can sleep between them.
pub const GATHER: Duration = Duration::from_millis(2);

/// The pause before the next `epoll_wait`, given how many events the last
/// one returned and how long it slept. Under load (several sockets ready
/// within one `GATHER`) waking each fiber's thread and the program's
/// queue for every one or two events costs more than the events: a pause
/// lets one wake-up carry the events of a whole `GATHER` (2,000 Go
/// StreamDeltas: CPU 2.5-2.6 s instead of 3.8-4.1 s, net/http 2.6-2.7 s).
/// One socket at a time (a lone call, calls in sequence) never pauses, so its latency is
/// unchanged; under load an event waits at most `GATHER`.
fn gather(events: usize, slept: Duration) -> Option<Duration> {
    (events >= 2 && slept < GATHER).then(|| GATHER - slept)
}

/// A socket registered with the reactor; deregistered when dropped (before
/// the socket is closed).
pub struct Registration {
    id: u64,
    fd: RawFd,
    slot: Arc<Slot>,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("fd", &self.fd)
            .finish()
    }
}

/// How a [`Registration::wait`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// The socket may be ready (or the wait was woken for another reason):
    /// try the I/O again.
    Again,
    /// `deadline` passed.
    TimedOut,
}

impl Registration {
    /// Registers `fd` (which must stay open until this is dropped). `None`
    /// when there is no reactor or epoll refuses: the caller blocks instead.
    pub fn new(fd: RawFd) -> Option<Registration> {
        let r = reactor()?;
        let id = r.next.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot::default());
        crate::sync::lock(&r.slots).insert(id, slot.clone());
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: id,
        };
        // SAFETY: `fd` is an open socket (caller's contract); `ev` is valid.
        let rc = unsafe { libc::epoll_ctl(r.epoll, libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if rc < 0 {
            crate::sync::lock(&r.slots).remove(&id);
            return None;
        }
        Some(Registration { id, fd, slot })
    }

    /// The generation to pass to [`Registration::wait`]: read it before
    /// the I/O attempt that found the socket not ready.
    pub fn generation(&self) -> u64 {
        self.slot.gen.load(Ordering::SeqCst)
    }

    /// Suspends the current fiber until the socket has a readiness edge
    /// after generation `seen`, or until `deadline`. Must be called on a
    /// fiber (see [`fiber::on_fiber`]); off one it returns `Again` at once.
    pub fn wait(&self, seen: u64, deadline: Option<Instant>) -> Waited {
        let Some(w) = fiber::current() else {
            return Waited::Again;
        };
        *crate::sync::lock(&self.slot.waker) = Some(w);
        // An edge after the failed I/O and before the waker was stored
        // found no waker: it bumped the generation, so look again now.
        if self.slot.gen.load(Ordering::SeqCst) != seen {
            crate::sync::lock(&self.slot.waker).take();
            return Waited::Again;
        }
        fiber::wait(deadline);
        if self.slot.gen.load(Ordering::SeqCst) == seen
            && deadline.is_some_and(|d| Instant::now() >= d)
        {
            crate::sync::lock(&self.slot.waker).take();
            return Waited::TimedOut;
        }
        Waited::Again
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(r) = reactor() {
            // SAFETY: the fd is still open (contract of `new`); a NULL event
            // is allowed for EPOLL_CTL_DEL.
            unsafe { libc::epoll_ctl(r.epoll, libc::EPOLL_CTL_DEL, self.fd, std::ptr::null_mut()) };
            crate::sync::lock(&r.slots).remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathers_only_several_events_that_came_quickly() {
        // A lone socket's event never waits, however soon it came.
        assert_eq!(gather(1, Duration::ZERO), None);
        // Several events after a long sleep: the load is light.
        assert_eq!(gather(5, GATHER), None);
        // Several events soon after the last batch: wait out the rest.
        let quick = GATHER / 4;
        assert_eq!(gather(5, quick), Some(GATHER - quick));
    }
}
