//! llmpool: a pooled, retrying, cost-aware client for OpenAI-compatible AI
//! gateways, with a C ABI (`include/llmpool.h`).
//!
//! The logic is a safe Rust core ([`Client`]); `ffi` is the thin `extern "C"`
//! boundary that checks pointers and catches panics.

pub mod assemble;
pub mod body;
pub mod civil;
pub mod client;
pub mod cost;
pub mod env;
pub mod error;
pub mod exec;
pub mod headers;
pub mod log;
pub mod metrics;
pub mod net;
pub mod options;
pub mod policy;
pub mod prometheus;
pub mod request;
pub mod response;
pub mod secret;
pub mod sse;
pub mod store;
pub mod sync;

pub mod ffi;

// Where callers have always found them.
pub use client::{batch, stream};

pub use client::Client;
pub use error::{Code, Error};
pub use options::Options;
pub use response::Response;
