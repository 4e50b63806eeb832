//! The buckets and blocks of this process, on a monotonic clock: used
//! without Redis, and whenever Redis cannot be reached.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Booking, Buckets, Demand};

#[derive(Debug, Default)]
struct State {
    /// Theoretical arrival time per bucket, in µs since `epoch`.
    tat: HashMap<String, f64>,
    /// The gateway said "0 remaining" for this key until this time (µs).
    blocked_until: HashMap<String, f64>,
}

#[derive(Debug)]
pub(super) struct LocalBuckets {
    epoch: Instant,
    state: Mutex<State>,
}

impl LocalBuckets {
    pub fn new() -> LocalBuckets {
        LocalBuckets {
            epoch: Instant::now(),
            state: Mutex::new(State::default()),
        }
    }

    fn now_us(&self) -> f64 {
        self.epoch.elapsed().as_micros() as f64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }
}

impl Buckets for LocalBuckets {
    type Error = Infallible;

    fn book(
        &self,
        all: &[Demand],
        blocks: &[String],
        max_wait_us: f64,
    ) -> Result<Booking, Infallible> {
        let now = self.now_us();
        let mut st = self.lock();
        let mut wait: f64 = 0.0;
        for b in blocks {
            if let Some(until) = st.blocked_until.get(b) {
                wait = wait.max(until - now);
            }
        }
        for d in all {
            let tat = st.tat.get(&d.key).copied().unwrap_or(now).max(now);
            wait = wait.max(tat - d.tolerance_us - now);
        }
        if wait > max_wait_us {
            return Ok(Booking::TooFar { needed_us: wait });
        }
        let at = now + wait;
        for d in all {
            let tat = st.tat.get(&d.key).copied().unwrap_or(now).max(at);
            st.tat.insert(d.key.clone(), tat + d.cost * d.interval_us);
        }
        st.blocked_until.retain(|_, until| *until > now);
        Ok(Booking::Booked { wait_us: wait })
    }

    fn shift(&self, deltas: &[(String, f64)]) -> Result<(), Infallible> {
        let mut st = self.lock();
        for (key, delta) in deltas {
            if let Some(tat) = st.tat.get_mut(key) {
                *tat += delta;
            }
        }
        Ok(())
    }

    fn block(&self, blocks: &[(String, Duration)]) -> Result<(), Infallible> {
        let now = self.now_us();
        let mut st = self.lock();
        for (key, d) in blocks {
            let until = now + d.as_micros() as f64;
            let e = st.blocked_until.entry(key.clone()).or_insert(until);
            *e = e.max(until);
        }
        Ok(())
    }
}
