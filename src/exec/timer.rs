//! One process-wide timer thread that wakes parked async calls when their
//! wait (backoff, Retry-After, a rate-limit slot) is over.
//!
//! A waiting call holds no thread: its future sits in the executor with
//! only its waker here, in a heap ordered by deadline. The thread starts on
//! the first wait and exits after [`IDLE`] without any.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::task::Waker;
use std::time::{Duration, Instant};

/// How long the timer thread lingers without waits before it exits.
const IDLE: Duration = Duration::from_secs(10);

struct Due {
    at: Instant,
    seq: u64,
    waker: Waker,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    /// Reversed, so the max-heap pops the earliest deadline first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

#[derive(Default)]
struct Timers {
    heap: BinaryHeap<Due>,
    seq: u64,
    running: bool,
}

static TIMERS: Mutex<Timers> = Mutex::new(Timers {
    heap: BinaryHeap::new(),
    seq: 0,
    running: false,
});
static TICK: Condvar = Condvar::new();

fn lock() -> MutexGuard<'static, Timers> {
    crate::sync::lock(&TIMERS)
}

/// Wakes `waker` at `at` (at once when `at` has passed). A waker woken
/// after its task finished is harmless: the executor ignores it.
pub fn wake_at(at: Instant, waker: Waker) {
    let mut t = lock();
    let earliest = t.heap.peek().map(|d| d.at);
    t.seq += 1;
    let seq = t.seq;
    t.heap.push(Due { at, seq, waker });
    if !t.running {
        let spawned = std::thread::Builder::new()
            .name("llmpool-timer".into())
            .stack_size(64 * 1024)
            .spawn(run)
            .is_ok();
        if !spawned {
            // No thread: wake now; the sleeper sees its deadline has not
            // passed and registers again, so the wait degrades to polling
            // instead of hanging forever.
            let due = t.heap.pop().expect("just pushed");
            drop(t);
            std::thread::sleep(Duration::from_millis(1));
            due.waker.wake();
            return;
        }
        t.running = true;
    } else if earliest.is_none_or(|e| at < e) {
        TICK.notify_one();
    }
}

/// How many wakes are pending (for tests and metrics).
pub fn pending() -> usize {
    lock().heap.len()
}

fn run() {
    let mut t = lock();
    loop {
        let now = Instant::now();
        let mut due = Vec::new();
        while t.heap.peek().is_some_and(|d| d.at <= now) {
            due.push(t.heap.pop().expect("peeked").waker);
        }
        if !due.is_empty() {
            // Wakers take the executor's lock: never under ours.
            drop(t);
            due.into_iter().for_each(Waker::wake);
            t = lock();
            continue;
        }
        let wait = match t.heap.peek() {
            Some(d) => d.at - now,
            None => IDLE,
        };
        let (g, timed_out) = crate::sync::wait_timeout(&TICK, t, wait);
        t = g;
        if timed_out && t.heap.is_empty() {
            t.running = false;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::Wake;

    /// Records its tag in a shared log when woken.
    struct Tagged(u32, Arc<Mutex<Vec<u32>>>);
    impl Wake for Tagged {
        fn wake(self: Arc<Self>) {
            self.1.lock().unwrap().push(self.0);
        }
    }

    fn woken_within(log: &Mutex<Vec<u32>>, n: usize, limit: Duration) -> Vec<u32> {
        let until = Instant::now() + limit;
        loop {
            let v = log.lock().unwrap().clone();
            if v.len() >= n || Instant::now() > until {
                return v;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn wakes_in_deadline_order_and_not_before() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let t0 = Instant::now();
        for (tag, ms) in [(1u32, 90u64), (2, 30), (3, 60)] {
            let w = Waker::from(Arc::new(Tagged(tag, log.clone())));
            wake_at(t0 + Duration::from_millis(ms), w);
        }
        std::thread::sleep(Duration::from_millis(10));
        assert!(log.lock().unwrap().is_empty(), "woken before its deadline");
        let order = woken_within(&log, 3, Duration::from_secs(5));
        assert_eq!(order, vec![2, 3, 1]);
        assert!(t0.elapsed() >= Duration::from_millis(90));
    }

    #[test]
    fn a_past_deadline_wakes_at_once() {
        let log = Arc::new(Mutex::new(Vec::new()));
        wake_at(
            Instant::now(),
            Waker::from(Arc::new(Tagged(9, log.clone()))),
        );
        assert_eq!(woken_within(&log, 1, Duration::from_secs(5)), vec![9]);
    }
}
