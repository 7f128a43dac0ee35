//! `Idempotency-Key` for admin writes: the first reply to a key is stored and replayed for
//! the same request; the key used for a different request is refused.

use super::state::Inner;
use crate::db;
use crate::error::ApiError;
use crate::params;
use axum::http::Method;
use fusebox_engine::identity::{hex, sha256};
use serde_json::Value;

/// A stored reply to an `Idempotency-Key`d write.
pub(super) struct Remembered {
    pub(super) fingerprint: String,
    pub(super) status: u16,
    pub(super) body: String,
}

pub(super) fn remembered(inner: &Inner, key: &str) -> Result<Option<Remembered>, ApiError> {
    Ok(inner.db.conn().query_opt(
        "SELECT fingerprint, status, body FROM idempotency WHERE key = ?1",
        params![key],
        |r| Ok(Remembered { fingerprint: r.get(0)?, status: r.get(1)?, body: r.get(2)? }),
    )?)
}

/// What identifies a request for its key: method, path and body.
pub(super) fn fingerprint(method: &Method, path: &str, body: &[u8]) -> String {
    let mut material = format!("{method} {path}\n").into_bytes();
    material.extend_from_slice(body);
    hex(&sha256(&material))
}

/// Stores the reply to `key` (the first one wins).
pub(super) fn remember(
    inner: &Inner,
    key: &str,
    fingerprint: &str,
    status: u16,
    reply: &Value,
) -> Result<(), ApiError> {
    inner.db.write(|tx| {
        tx.execute(
            "INSERT INTO idempotency (key, fingerprint, status, body, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (key) DO NOTHING",
            params![key, fingerprint, status, reply.to_string(), db::to_sql(db::now_ms())],
        )
        .map(|_| ())
        .map_err(ApiError::from)
    })
}
