//! Who may call control: Envoys (the shared filter token, or a token per node) and named
//! operators with roles. Credential files hold only SHA-256 digests of tokens.

mod lines;
pub mod nodes;
pub mod operators;
