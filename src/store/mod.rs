//! Shared stores: state that several processes (and machines) see at once.
//!
//! [`redis`] holds the `"redis"` option and, with the `redis` cargo feature
//! (on by default), the [`redis::RedisStore`] handle that budgets, rate limits
//! and the shared cache use. Built without the feature, the option is refused
//! with a clear error and everything else works as before.

pub mod redis;
