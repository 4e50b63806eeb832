//! The API key: a string whose `Debug` never shows it.

use std::fmt;

/// An API key. Its `Debug` output never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key; empty keys are treated as "no key" by the caller.
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into())
    }

    /// The key itself, only for building the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// An API key must fit in an HTTP header: printable ASCII. The error never
/// quotes the key.
pub fn valid_api_key(key: &str) -> bool {
    key.bytes().all(|b| (0x20..0x7f).contains(&b))
}
