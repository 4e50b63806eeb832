//! `max_concurrency`: a counting semaphore with a bounded wait.

use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Lets at most `max` holders in; others wait up to a timeout.
pub struct Limiter {
    max: usize,
    used: Mutex<usize>,
    freed: Condvar,
    /// Told when a slot comes free, after the lock is released (the async
    /// executor starts calls waiting for a slot without holding a thread).
    on_release: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").field("max", &self.max).finish()
    }
}

/// Returned by [`Limiter::acquire`]; frees its slot on drop.
pub struct Permit<'a>(&'a Limiter);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

impl Limiter {
    pub fn new(max: usize) -> Limiter {
        Limiter {
            max: max.max(1),
            used: Mutex::new(0),
            freed: Condvar::new(),
            on_release: OnceLock::new(),
        }
    }

    /// Sets the hook told about every freed slot (once; later calls are ignored).
    pub fn set_on_release(&self, f: Box<dyn Fn() + Send + Sync>) {
        let _ = self.on_release.set(f);
    }

    /// A slot now, without waiting; pair with [`Limiter::release`].
    pub fn try_acquire(&self) -> bool {
        let mut used = crate::sync::lock(&self.used);
        if *used >= self.max {
            return false;
        }
        *used += 1;
        true
    }

    /// Frees a slot taken by `try_acquire` (a `Permit` does this on drop).
    pub fn release(&self) {
        {
            let mut used = crate::sync::lock(&self.used);
            *used -= 1;
            self.freed.notify_one();
        }
        if let Some(f) = self.on_release.get() {
            f();
        }
    }

    /// Whether every slot is taken right now (a caller would wait).
    pub fn is_full(&self) -> bool {
        *crate::sync::lock(&self.used) >= self.max
    }

    /// A slot, or `None` when none came free within `timeout`.
    pub fn acquire(&self, timeout: Duration) -> Option<Permit<'_>> {
        let deadline = Instant::now() + timeout;
        let mut used = crate::sync::lock(&self.used);
        while *used >= self.max {
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            used = crate::sync::wait_timeout(&self.freed, used, deadline - now).0;
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
    fn try_acquire_and_release_tell_the_hook() {
        let l = Limiter::new(1);
        let told = Arc::new(AtomicUsize::new(0));
        let t = told.clone();
        l.set_on_release(Box::new(move || {
            t.fetch_add(1, Ordering::SeqCst);
        }));
        assert!(l.try_acquire());
        assert!(!l.try_acquire());
        l.release();
        assert_eq!(told.load(Ordering::SeqCst), 1);
        drop(l.acquire(Duration::ZERO).unwrap());
        assert_eq!(told.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn times_out_when_full() {
        let l = Limiter::new(1);
        let _held = l.acquire(Duration::ZERO).unwrap();
        assert!(l.acquire(Duration::from_millis(20)).is_none());
    }
}
