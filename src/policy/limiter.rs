//! `max_concurrency`: a counting semaphore with a bounded wait.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Lets at most `max` holders in; others wait up to a timeout.
#[derive(Debug)]
pub struct Limiter {
    max: usize,
    used: Mutex<usize>,
    freed: Condvar,
}

/// Returned by [`Limiter::acquire`]; frees its slot on drop.
pub struct Permit<'a>(&'a Limiter);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut used = self.0.used.lock().unwrap_or_else(|p| p.into_inner());
        *used -= 1;
        self.0.freed.notify_one();
    }
}

impl Limiter {
    pub fn new(max: usize) -> Limiter {
        Limiter {
            max: max.max(1),
            used: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// A slot, or `None` when none came free within `timeout`.
    pub fn acquire(&self, timeout: Duration) -> Option<Permit<'_>> {
        let deadline = Instant::now() + timeout;
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        while *used >= self.max {
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            used = self
                .freed
                .wait_timeout(used, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *used += 1;
        Some(Permit(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn never_more_than_max_inside() {
        let l = Arc::new(Limiter::new(3));
        let inside = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..12)
            .map(|_| {
                let (l, inside, peak) = (l.clone(), inside.clone(), peak.clone());
                std::thread::spawn(move || {
                    let _p = l.acquire(Duration::from_secs(10)).unwrap();
                    let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                    inside.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(peak.load(Ordering::SeqCst) <= 3);
    }

    #[test]
    fn times_out_when_full() {
        let l = Limiter::new(1);
        let _held = l.acquire(Duration::ZERO).unwrap();
        assert!(l.acquire(Duration::from_millis(20)).is_none());
    }
}
