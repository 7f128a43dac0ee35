//! What fusebox reads and rewrites in a request body: the token estimate reserved at
//! admission (`estimate.rs`) and the `include_usage` / `max_tokens` rewrite (`inject.rs`).

pub mod estimate;
pub mod inject;
