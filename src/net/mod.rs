//! Transport layer: the TCP connector and its pool bookkeeping, a connect
//! that an async call's cancel interrupts, per-connection I/O buffers, the
//! caching DNS resolver, TLS configuration, and the few socket calls `std`
//! lacks.

pub mod buffers;
pub mod connect;
pub mod error;
pub mod live;
pub mod proxy;
pub mod resolver;
mod sys;
pub mod tls;
pub mod transport;
pub mod tunnel;
