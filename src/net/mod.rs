//! Transport layer: the TCP connector and its pool bookkeeping,
//! per-connection I/O buffers, the caching DNS resolver, TLS configuration,
//! and the few socket calls `std` lacks.

pub mod buffers;
pub mod proxy;
pub mod resolver;
mod sys;
pub mod tls;
pub mod transport;
pub mod tunnel;
