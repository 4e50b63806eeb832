use super::*;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Wake;

struct Count(AtomicUsize);
impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Pending `n` times, waking itself each time.
struct Yields(usize);
impl Future for Yields {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 == 0 {
            return Poll::Ready(());
        }
        self.0 -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

fn waker() -> (Arc<Count>, Waker) {
    let c = Arc::new(Count(AtomicUsize::new(0)));
    (c.clone(), Waker::from(c))
}

#[test]
fn a_future_on_a_fiber_suspends_and_completes_on_another_thread() {
    let (count, w) = waker();
    let seen = Arc::new(AtomicUsize::new(0));
    let s2 = seen.clone();
    let mut f = Fiber::new(Box::pin(async move {
        assert!(on_fiber());
        Yields(2).await;
        // A wait deep in ordinary code (as the transport does).
        assert!(wait(None));
        s2.store(1, Ordering::SeqCst);
    }))
    .unwrap_or_else(|_| panic!("no stack"));
    assert!(!on_fiber());
    assert!(!f.resume(&w));
    assert!(!f.resume(&w));
    // Resumed on another thread from here on.
    let done = std::thread::spawn(move || {
        let mut n = 0;
        while !f.resume(&w) {
            n += 1;
        }
        n
    })
    .join()
    .unwrap();
    assert_eq!(done, 1, "the explicit wait suspended once more");
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    assert_eq!(count.0.load(Ordering::SeqCst), 2, "two self-wakes");
}

#[test]
fn the_log_scope_travels_with_the_fiber() {
    let logger = Arc::new(crate::log::Logger::from_env(&|_| None, false));
    let (_c, w) = waker();
    let l2 = logger.clone();
    let mut f = Fiber::new(Box::pin(async move {
        let _s = crate::log::Scope::enter(&l2, 42);
        wait(None);
        assert_eq!(crate::log::current().map(|(_, id)| id), Some(42));
    }))
    .unwrap_or_else(|_| panic!("no stack"));
    assert!(!f.resume(&w));
    // Suspended: the thread has no scope of the fiber's.
    assert!(crate::log::current().is_none());
    std::thread::spawn(move || {
        assert!(f.resume(&w));
        assert!(
            crate::log::current().is_none(),
            "the scope ended with the fiber's guard"
        );
    })
    .join()
    .unwrap();
}

#[test]
fn a_panic_in_a_callback_on_the_thread_stack_reaches_the_fiber() {
    let (_c, w) = waker();
    let caught = Arc::new(AtomicUsize::new(0));
    let c2 = caught.clone();
    let mut f = Fiber::new(Box::pin(async move {
        let r = std::panic::catch_unwind(|| {
            on_thread_stack(|| {
                assert!(!on_fiber(), "callbacks run outside the fiber");
                panic!("callback panicked")
            })
        });
        let p = r.unwrap_err();
        assert_eq!(p.downcast_ref::<&str>(), Some(&"callback panicked"));
        c2.store(1, Ordering::SeqCst);
        // And a panic that leaves the fiber reaches whoever resumed it.
        panic!("out of the fiber");
    }))
    .unwrap_or_else(|_| panic!("no stack"));
    let r = std::panic::catch_unwind(AssertUnwindSafe(|| f.resume(&w)));
    assert!(r.is_err());
    assert_eq!(caught.load(Ordering::SeqCst), 1);
    drop(f);
}

#[test]
fn dropping_a_suspended_fiber_runs_its_destructors() {
    struct Flag(Arc<AtomicUsize>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(1, Ordering::SeqCst);
        }
    }
    let (_c, w) = waker();
    let dropped = Arc::new(AtomicUsize::new(0));
    let d2 = dropped.clone();
    let mut f = Fiber::new(Box::pin(async move {
        let _flag = Flag(d2);
        wait(None);
        unreachable!("never resumed");
    }))
    .unwrap_or_else(|_| panic!("no stack"));
    assert!(!f.resume(&w));
    drop(f);
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
}

#[inline(never)]
fn deep(n: u64) -> u64 {
    let buf = [n as u8; 1024];
    std::hint::black_box(&buf);
    if n == 0 {
        return 0;
    }
    deep(n - 1) + u64::from(buf[7])
}

/// Run in a child process by `running_off_the_fiber_stack_faults_cleanly`.
#[test]
fn overflow_child() {
    if std::env::var_os("LLMPOOL_FIBER_OVERFLOW").is_none() {
        return;
    }
    let (_c, w) = waker();
    let mut f = Fiber::new(Box::pin(async {
        // 1 MiB of frames on a 256 KiB stack.
        std::hint::black_box(deep(1024));
    }))
    .unwrap_or_else(|_| panic!("no stack"));
    f.resume(&w);
    // Not reached: the guard page stops the recursion.
    std::process::exit(3);
}

#[test]
fn running_off_the_fiber_stack_faults_cleanly() {
    use std::os::unix::process::ExitStatusExt;
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "exec::fiber::tests::overflow_child",
            "--nocapture",
        ])
        .env("LLMPOOL_FIBER_OVERFLOW", "1")
        .output()
        .unwrap();
    let sig = out.status.signal();
    assert!(
        sig == Some(libc::SIGSEGV) || sig == Some(libc::SIGBUS),
        "the child should die at the guard page, got {:?} / {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
