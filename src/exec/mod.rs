//! The async executor: library-owned threads that run calls submitted
//! without blocking the caller, per-call cancellation, and a completion
//! queue for event loops.
//!
//! - [`pool`]: worker threads (on demand, capped, retired when idle) that
//!   poll call futures; a call parked in a wait holds no thread. Calls
//!   waiting for a `max_concurrency` slot hold none either; the timer
//!   expires those past their queue timeout.
//! - [`token`]: a call's cancel token; sockets in use and waits are tied to
//!   it so one call can be cancelled alone within milliseconds. Its
//!   `sleep` is the one wait of a call.
//! - [`timer`]: the thread that wakes parked calls when their wait is over
//!   and expires calls past their queue timeout.
//! - [`block`]: `block_on_call`, which runs the same call futures to
//!   completion on the caller's thread for the blocking API.
//! - [`boxed`]: futures made on the heap in a frame of their own, so a
//!   fiber's stack holds no copies of them while its call waits.
//! - [`queue`]: completions handed from library threads to one consumer
//!   thread, with an eventfd that is readable while any wait.
//!
//! The glue to the client (what a call runs) is `client::submit`.

pub mod block;
pub mod boxed;
pub mod fiber;
pub mod pool;
pub mod queue;
pub mod reactor;
pub mod timer;
pub mod token;

pub use block::{block_on, block_on_call, CatchPanic};
pub use boxed::{boxed, Boxed};
pub use pool::{
    BoxFuture, CallHandle, Closed, Config, Executor, Gate, Start, Stats, Task, WeakExecutor,
};
pub use queue::CompletionQueue;
pub use token::CallToken;
