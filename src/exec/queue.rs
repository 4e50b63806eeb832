//! A completion queue for single-threaded programs: library threads push,
//! the program pops, and an eventfd tells its event loop when to look.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

/// Completions waiting to be collected, with a file descriptor that is
/// readable (level-triggered) exactly while the queue is not empty.
#[derive(Debug)]
pub struct CompletionQueue<T> {
    items: Mutex<VecDeque<T>>,
    fd: OwnedFd,
}

impl<T> CompletionQueue<T> {
    pub fn new() -> io::Result<CompletionQueue<T>> {
        // SAFETY: eventfd has no memory arguments; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(CompletionQueue {
            items: Mutex::new(VecDeque::new()),
            // SAFETY: a fresh descriptor owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Adds a completion; the fd becomes readable if it was not.
    pub fn push(&self, item: T) {
        let mut q = crate::sync::lock(&self.items);
        if q.is_empty() {
            // Under the lock, so the counter's state always matches the queue's.
            self.signal(1);
        }
        q.push_back(item);
    }

    /// The oldest completion, or `None` at once when there is none; the fd
    /// stops being readable when the last one is taken.
    pub fn pop(&self) -> Option<T> {
        let mut q = crate::sync::lock(&self.items);
        let item = q.pop_front();
        if item.is_some() && q.is_empty() {
            self.drain();
        }
        item
    }

    /// Takes every waiting completion (for teardown).
    pub fn take_all(&self) -> Vec<T> {
        let mut q = crate::sync::lock(&self.items);
        if !q.is_empty() {
            self.drain();
        }
        q.drain(..).collect()
    }

    /// The oldest item `want` accepts, removed; the others stay in order.
    pub fn pop_first(&self, want: impl Fn(&T) -> bool) -> Option<T> {
        let mut q = crate::sync::lock(&self.items);
        let i = q.iter().position(want)?;
        let item = q.remove(i);
        if q.is_empty() {
            self.drain();
        }
        item
    }

    /// Up to `max` of the oldest items, in order (one lock, one wake-up's
    /// worth of work for the consumer).
    pub fn take_up_to(&self, max: usize) -> Vec<T> {
        let mut q = crate::sync::lock(&self.items);
        let n = q.len().min(max);
        let out: Vec<T> = q.drain(..n).collect();
        if n > 0 && q.is_empty() {
            self.drain();
        }
        out
    }

    fn signal(&self, n: u64) {
        let v = n.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to our own descriptor.
        // It cannot fail for want of room: the counter only goes 0 -> 1.
        let _ = unsafe { libc::write(self.fd(), v.as_ptr().cast(), v.len()) };
    }

    fn drain(&self) {
        let mut v = [0u8; 8];
        // SAFETY: reads 8 bytes into a live buffer; non-blocking, so an
        // already-zero counter just returns EAGAIN.
        let _ = unsafe { libc::read(self.fd(), v.as_mut_ptr().cast(), v.len()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(fd: RawFd) -> bool {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd, zero timeout.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        n == 1 && p.revents & libc::POLLIN != 0
    }

    #[test]
    fn take_and_pop_first_keep_order_and_the_fd_true() {
        let q = CompletionQueue::new().unwrap();
        for i in 1..=5u32 {
            q.push(i);
        }
        assert_eq!(q.pop_first(|v| v % 2 == 0), Some(2));
        assert_eq!(q.take_up_to(2), vec![1, 3]);
        assert!(readable(q.fd()));
        assert_eq!(q.take_up_to(10), vec![4, 5]);
        assert!(!readable(q.fd()));
        assert_eq!(q.take_up_to(10), Vec::<u32>::new());
        assert_eq!(q.pop_first(|_| true), None);
    }

    #[test]
    fn fd_is_readable_exactly_while_items_wait() {
        let q = CompletionQueue::new().unwrap();
        assert!(!readable(q.fd()));
        assert_eq!(q.pop(), None::<u32>);
        q.push(1);
        q.push(2);
        assert!(readable(q.fd()));
        assert!(readable(q.fd()), "level-triggered: still readable");
        assert_eq!(q.pop(), Some(1));
        assert!(readable(q.fd()));
        assert_eq!(q.pop(), Some(2));
        assert!(!readable(q.fd()));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn pushes_from_many_threads_are_all_popped() {
        let q = std::sync::Arc::new(CompletionQueue::new().unwrap());
        let hs: Vec<_> = (0..8)
            .map(|t| {
                let q = q.clone();
                std::thread::spawn(move || (0..100).for_each(|i| q.push(t * 1000 + i)))
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
        let mut n = 0;
        while q.pop().is_some() {
            n += 1;
        }
        assert_eq!(n, 800);
        assert!(!readable(q.fd()));
        q.push(5);
        assert_eq!(q.take_all(), vec![5]);
        assert!(!readable(q.fd()));
    }
}
