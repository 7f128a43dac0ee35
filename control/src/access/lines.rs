//! The shape shared by control's credential files: one entry per line, fields separated by
//! whitespace, the token's SHA-256 (64 hex digits, `fusebox-control hash-key` prints it) last,
//! `#` comments and blank lines ignored. Only digests are stored, so the file is no secret.

use fusebox_engine::identity::parse_digest;

/// One entry: its line number (from 1), its `N` leading fields and its token's digest.
pub struct Line<'a, const N: usize> {
    pub at: usize,
    pub fields: [&'a str; N],
    pub digest: [u8; 32],
}

/// The entries of `text`, each with exactly `N` fields before the digest; `shape` names them
/// for the error (`<node id>`).
pub fn entries<'a, const N: usize>(text: &'a str, shape: &str) -> Result<Vec<Line<'a, N>>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let at = n + 1;
        let mut all: Vec<&str> = line.split_whitespace().collect();
        let hex = all.pop();
        let (Some(hex), Ok(fields)) = (hex, <[&str; N]>::try_from(all.as_slice())) else {
            return Err(format!("line {at}: expected `{shape} <sha256 hex of its token>`"));
        };
        let digest = parse_digest(hex).ok_or_else(|| format!("line {at}: the digest must be 64 hex digits"))?;
        out.push(Line { at, fields, digest });
    }
    Ok(out)
}
