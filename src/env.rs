//! Environment variables, behind a lookup that tests can replace.

/// Where environment variables come from; a closure so tests need not touch
/// the real process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}
