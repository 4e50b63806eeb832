//! The async executor: library-owned threads that run calls submitted
//! without blocking the caller, per-call cancellation, and a completion
//! queue for event loops.
//!
//! - [`pool`]: worker threads (on demand, capped, retired when idle) and the
//!   queue of calls waiting for a `max_concurrency` slot, which holds no
//!   thread; a timer thread expires those past their queue timeout.
//! - [`token`]: a call's cancel token; sockets in use and waits are tied to
//!   it so one call can be cancelled alone within milliseconds.
//! - [`queue`]: completions handed from library threads to one consumer
//!   thread, with an eventfd that is readable while any wait.
//!
//! The glue to the client (what a call runs) is `client::submit`.

pub mod pool;
pub mod queue;
pub mod token;

pub use pool::{CallHandle, Closed, Config, Executor, Gate, Start, Stats, WeakExecutor};
pub use queue::CompletionQueue;
pub use token::CallToken;
