//! Shared stores: state that several processes (and machines) see at once.
//!
//! [`redis`] holds the `"redis"` option, its errors, `on_error` and, with
//! the `redis` cargo feature (on by default), the [`redis::RedisStore`]
//! connection. What budgets, rate limits and the shared cache keep in it
//! lives beside each of them (`cost::budget::redis`,
//! `policy::ratelimit::redis`, `cost::cache::redis`), built on this handle.
//! Built without the feature, the option is refused with a clear error, no
//! `RedisStore` can exist, and everything else works as before.

pub mod redis;
