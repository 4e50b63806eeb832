//! Call policy: when to retry and how long to wait, which endpoint to try
//! (failover and circuit breakers), and how many calls may run at once.

pub mod failover;
pub mod limiter;
pub mod ratelimit;
pub mod retry;
