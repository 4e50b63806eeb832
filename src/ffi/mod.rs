//! The C ABI: every `extern "C"` function of llmpool lives below this module.
//!
//! Each function checks its pointers, converts C strings, calls the safe core
//! and catches panics (a panic becomes `LLMPOOL_PANIC`, it never unwinds into
//! C). No error state is kept per thread: errors travel in response objects
//! or caller buffers, because Go and others move work between threads.

#![allow(non_camel_case_types)]

mod apis;
mod async_call;
mod batch;
mod call;
mod client;
mod code;
mod delta;
mod embeddings;
mod events;
mod log;
mod queue;
mod resilience;
mod response;
mod stream;
mod util;

pub use apis::*;
pub use async_call::*;
pub use batch::*;
pub use call::*;
pub use client::*;
pub use code::*;
pub use delta::*;
pub use embeddings::*;
pub use events::*;
pub use log::*;
pub use queue::*;
pub use resilience::*;
pub use response::*;
pub use stream::*;
