use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

fn cfg(max_threads: usize) -> Config {
    Config {
        threads: max_threads,
        max_threads,
        stack_size: STACK_SIZE,
        idle: Duration::from_millis(200),
        queue_timeout: Duration::from_secs(5),
    }
}

fn token(id: u64) -> Arc<CallToken> {
    Arc::new(CallToken::new(id))
}

#[test]
fn every_task_runs_once_and_threads_stay_under_the_cap() {
    let ex = Executor::new(cfg(4), None);
    let (tx, rx) = mpsc::channel();
    let busy = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    for i in 0..40 {
        let (tx, busy, peak) = (tx.clone(), busy.clone(), peak.clone());
        ex.submit(
            token(i + 1),
            task(move |s| {
                let n = busy.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(n, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
                busy.fetch_sub(1, Ordering::SeqCst);
                tx.send((i, s)).unwrap();
            }),
        )
        .unwrap();
    }
    let mut seen: Vec<u64> = (0..40)
        .map(|_| {
            let (i, s) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(s, Start::Run);
            i
        })
        .collect();
    seen.sort();
    assert_eq!(seen, (0..40).collect::<Vec<_>>());
    assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
    assert!(peak.load(Ordering::SeqCst) <= 4);
    assert!(ex.stats().peak_threads <= 4);
}

#[test]
fn many_slow_tasks_run_concurrently_and_idle_threads_retire() {
    let ex = Executor::new(cfg(200), None);
    let (tx, rx) = mpsc::channel();
    let t0 = Instant::now();
    for i in 0..100 {
        let tx = tx.clone();
        ex.submit(
            token(i + 1),
            task(move |_| {
                std::thread::sleep(Duration::from_millis(300));
                tx.send(()).unwrap();
            }),
        )
        .unwrap();
    }
    for _ in 0..100 {
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
    }
    // Serially this is 30 s; concurrently about 0.3 s.
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert!(ex.stats().peak_threads >= 50, "{:?}", ex.stats());
    let deadline = Instant::now() + Duration::from_secs(5);
    while ex.stats().threads > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(ex.stats().threads, 0, "idle threads retire");
    // And the pool starts threads again afterwards.
    let (tx, rx) = mpsc::channel();
    ex.submit(token(999), task(move |_| tx.send(()).unwrap()))
        .unwrap();
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
}

struct Slots {
    free: Mutex<usize>,
    ex: Mutex<Option<WeakExecutor>>,
}

impl Gate for Slots {
    fn try_acquire(&self) -> bool {
        let mut f = self.free.lock().unwrap();
        if *f == 0 {
            return false;
        }
        *f -= 1;
        true
    }
    fn release(&self) {
        *self.free.lock().unwrap() += 1;
        let ex = self.ex.lock().unwrap().clone();
        if let Some(ex) = ex {
            ex.gate_opened();
        }
    }
}

fn gated(slots: usize, queue_timeout: Duration) -> (Executor, Arc<Slots>) {
    let gate = Arc::new(Slots {
        free: Mutex::new(slots),
        ex: Mutex::new(None),
    });
    let ex = Executor::new(
        Config {
            queue_timeout,
            ..cfg(64)
        },
        Some(gate.clone()),
    );
    *gate.ex.lock().unwrap() = Some(ex.weak());
    (ex, gate)
}

#[test]
fn calls_waiting_for_a_slot_hold_no_thread() {
    let (ex, _gate) = gated(2, Duration::from_secs(10));
    let (tx, rx) = mpsc::channel();
    for i in 0..20 {
        let tx = tx.clone();
        ex.submit(
            token(i + 1),
            task(move |s| {
                std::thread::sleep(Duration::from_millis(20));
                tx.send(s).unwrap();
            }),
        )
        .unwrap();
    }
    std::thread::sleep(Duration::from_millis(5));
    let st = ex.stats();
    assert!(st.threads <= 3, "{st:?}");
    assert!(st.waiting_for_slot >= 17, "{st:?}");
    for _ in 0..20 {
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            Start::Run
        );
    }
    // A slot freed at the end of a task may start the next waiting call on
    // a new thread just before the freeing thread looks for work: one spare.
    assert!(ex.stats().peak_threads <= 3, "{:?}", ex.stats());
}

#[test]
fn waiting_past_the_queue_timeout_expires_and_cancel_skips_the_queue() {
    let (ex, _gate) = gated(1, Duration::from_millis(100));
    let (tx, rx) = mpsc::channel();
    let hold = {
        let tx = tx.clone();
        task(move |s| {
            std::thread::sleep(Duration::from_millis(600));
            tx.send((1, s)).unwrap();
        })
    };
    ex.submit(token(1), hold).unwrap();
    let tx2 = tx.clone();
    ex.submit(token(2), task(move |s| tx2.send((2, s)).unwrap()))
        .unwrap();
    let tx3 = tx.clone();
    let h3 = ex
        .submit(token(3), task(move |s| tx3.send((3, s)).unwrap()))
        .unwrap();
    h3.cancel();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(2)).unwrap(),
        (3, Start::Cancelled)
    );
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(2)).unwrap(),
        (2, Start::Expired)
    );
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(2)).unwrap(),
        (1, Start::Run)
    );
}

#[test]
fn close_cancels_waits_for_tasks_and_refuses_new_ones() {
    let ex = Executor::new(cfg(8), None);
    let done = Arc::new(AtomicUsize::new(0));
    for i in 0..5 {
        let done = done.clone();
        let tok = token(i + 1);
        let t2 = tok.clone();
        ex.submit(
            tok,
            Box::new(move |_| {
                Box::pin(async move {
                    // Parked until cancelled.
                    t2.sleep(Duration::from_secs(30)).await;
                    done.fetch_add(1, Ordering::SeqCst);
                })
            }),
        )
        .unwrap();
    }
    let t0 = Instant::now();
    ex.close();
    assert_eq!(done.load(Ordering::SeqCst), 5);
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(ex.submit(token(9), task(|_| {})).is_err());
}

#[test]
fn close_from_a_pool_thread_returns_without_waiting() {
    let ex = Arc::new(Executor::new(cfg(8), None));
    let (tx, rx) = mpsc::channel();
    let ex2 = ex.clone();
    let tok = token(1);
    ex.submit(
        tok,
        task(move |_| {
            ex2.close();
            tx.send(()).unwrap();
        }),
    )
    .unwrap();
    rx.recv_timeout(Duration::from_secs(5))
        .expect("close inside a task must not deadlock");
}

#[test]
fn a_panicking_task_does_not_kill_the_pool() {
    let ex = Executor::new(cfg(1), None);
    ex.submit(token(1), task(|_| panic!("task panic"))).unwrap();
    let (tx, rx) = mpsc::channel();
    ex.submit(token(2), task(move |_| tx.send(()).unwrap()))
        .unwrap();
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
}

/// A task that parks in a token sleep of `d`, then reports whether the
/// sleep ran out (true) or was cancelled (false).
fn sleeper(d: Duration, tx: mpsc::Sender<(u64, bool)>) -> Task {
    Box::new(move |_| {
        Box::pin(async move {
            let tok = crate::exec::token::current().expect("a pool task has a token");
            let ran_out = tok.sleep(d).await;
            tx.send((tok.id(), ran_out)).unwrap();
        })
    })
}

#[test]
fn waiting_calls_are_parked_without_a_thread() {
    // Four threads for 200 calls that each wait 400 ms: the waits overlap
    // (a few hundred ms in all, not 200 x 400 ms / 4 = 20 s).
    let ex = Executor::new(cfg(4), None);
    let t0 = Instant::now();
    let (tx, rx) = mpsc::channel();
    for i in 0..200 {
        ex.submit(
            token(i + 1),
            sleeper(Duration::from_millis(400), tx.clone()),
        )
        .unwrap();
    }
    let until = Instant::now() + Duration::from_secs(5);
    while ex.stats().parked < 200 {
        assert!(Instant::now() < until, "stats: {:?}", ex.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
    let s = ex.stats();
    assert!(s.peak_threads <= 4, "{s:?}");
    assert_eq!(s.in_flight, 200);
    let mut ids: Vec<u64> = (0..200)
        .map(|_| {
            let (id, ran_out) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert!(ran_out);
            id
        })
        .collect();
    ids.sort();
    assert_eq!(ids, (1..=200).collect::<Vec<_>>());
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    let until = Instant::now() + Duration::from_secs(5);
    while ex.stats().in_flight > 0 {
        assert!(Instant::now() < until);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(ex.stats().parked, 0);
}

#[test]
fn cancel_resumes_a_parked_call_alone() {
    let ex = Executor::new(cfg(4), None);
    let (tx, rx) = mpsc::channel();
    let a = ex
        .submit(token(1), sleeper(Duration::from_secs(30), tx.clone()))
        .unwrap();
    ex.submit(token(2), sleeper(Duration::from_millis(300), tx))
        .unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    while ex.stats().parked < 2 {
        assert!(Instant::now() < until);
        std::thread::sleep(Duration::from_millis(2));
    }
    let t0 = Instant::now();
    a.cancel();
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), (1, false));
    assert!(t0.elapsed() < Duration::from_millis(500));
    // The sibling keeps its wait and runs it out.
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), (2, true));
}

#[test]
fn a_gate_slot_is_held_while_parked_and_released_at_completion() {
    struct One(Mutex<bool>);
    impl Gate for One {
        fn try_acquire(&self) -> bool {
            !std::mem::replace(&mut *self.0.lock().unwrap(), true)
        }
        fn release(&self) {
            *self.0.lock().unwrap() = false;
        }
    }
    let gate = Arc::new(One(Mutex::new(false)));
    let ex = Arc::new(Executor::new(cfg(4), Some(gate.clone())));
    let weak = ex.weak();
    let (tx, rx) = mpsc::channel();
    ex.submit(token(1), sleeper(Duration::from_millis(200), tx.clone()))
        .unwrap();
    ex.submit(token(2), sleeper(Duration::from_millis(10), tx))
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(ex.stats().waiting_for_slot, 1);
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), (1, true));
    weak.gate_opened();
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), (2, true));
}
