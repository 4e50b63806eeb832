//! What a request is, read once where its JSON is parsed.

pub mod estimate;
