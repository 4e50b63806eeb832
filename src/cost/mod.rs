//! Cost control: everything the client needs to keep spend predictable,
//! kept free of networking and `unsafe` so it can be unit-tested in
//! isolation and reasoned about without a gateway.
//!
//! The pieces are independent; the client wires them together per call:
//!
//! 1. [`ResponseCache::is_cacheable`], then [`take_cache_directive`] (strips
//!    the `llmpool_cache` field so it never reaches the gateway).
//! 2. [`Router::route`] rewrites an alias model (`"auto"`) to a real one, so
//!    that pricing, budgets and cache keys all see the model actually used.
//! 3. [`ResponseCache::key`] / [`ResponseCache::get`]: a hit costs nothing and
//!    skips the budget entirely.
//! 4. [`PriceTable::estimate_max_cost`] then [`Budget::reserve`] before
//!    sending; [`Budget::commit`] with the real cost (from
//!    [`Usage::from_response_json`] and [`PriceTable::cost`]) or
//!    [`Budget::release`] when nothing was spent.
//! 5. [`ResponseCache::put`] for successful, cacheable responses.

pub mod budget;
pub mod cache;
pub mod prices;
pub mod routing;
pub mod spend;

pub use crate::request::estimate::{
    estimate_prompt_tokens, estimate_text_tokens, requested_max_output_tokens,
};
pub use budget::{Asked, Budget, BudgetError, Period, Reservation};
pub use cache::{take_cache_directive, CacheKey, CachedEntry, ResponseCache};
pub use prices::{ModelPrice, PriceTable, Usage};
pub use routing::{RouteDecision, Router};
