//! Futures made on the heap in a frame of their own, so that the frames
//! polling them stay small.
//!
//! An async call's future is polled on a fiber, and every frame of the
//! poll chain stays on the fiber's stack for as long as the call waits (a
//! stream: seconds to minutes). A parent future that makes its child in
//! place reserves, in its poll frame, a temporary of the child's whole size
//! (the child's state for every await inside it), copied into the parent's
//! state: measured at a stream's read wait, the frame that started the
//! call's future held 10.9 KiB of it, and the chain from there down to
//! the read 28 KiB. [`boxed`] makes the child inside a function that is
//! never inlined, which returns before the child is polled: the temporary
//! lives and dies there, and the parent's frame and state hold a pointer.
//! One allocation per boundary, the same bytes on the heap instead of
//! reserved on every fiber's stack.

use std::future::Future;
use std::pin::Pin;

/// A boxed future (see the module doc).
pub type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The future `make` returns, made and boxed in this function's own frame.
#[inline(never)]
pub fn boxed<'a, T, F>(make: impl FnOnce() -> F) -> Boxed<'a, T>
where
    F: Future<Output = T> + Send + 'a,
{
    Box::pin(make())
}
