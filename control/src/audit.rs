//! The append-only, hash-chained audit log.
//!
//! Each entry's `hash` is SHA-256 over its own fields and the previous entry's hash, so
//! editing or deleting any row breaks the chain from there on. The newest sequence number and
//! hash are also kept in `audit_head` (written in the same transaction), so cutting entries off
//! the end is detected too. SQL triggers refuse UPDATE and DELETE on the table; someone with
//! the file can drop them, which is what verification is for. Whoever can rewrite the whole
//! file can rebuild a consistent chain: record `head` from `/v1/audit/verify` elsewhere to
//! anchor it.

use crate::db::{from_sql, now_ms, to_sql, DbError, Row, Sql};
use crate::params;
use crate::policy_anchor;
use fusebox_engine::identity::{hex, sha256};
use serde::Serialize;
use serde_json::{json, Value};

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An entry to append.
#[derive(Debug, Clone)]
pub struct NewEntry<'a> {
    pub tenant_id: Option<&'a str>,
    pub actor_id: &'a str,
    pub action: &'a str,
    pub reason_code: &'a str,
    pub outcome: &'a str,
    pub details: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub seq: u64,
    pub timestamp_ms: u64,
    pub tenant_id: Option<String>,
    pub actor_id: String,
    pub action: String,
    pub reason_code: String,
    pub outcome: String,
    pub details: Value,
    pub prev_hash: String,
    pub hash: String,
}

#[allow(clippy::too_many_arguments)]
fn entry_hash(
    prev_hash: &str,
    seq: u64,
    ts_ms: u64,
    tenant: Option<&str>,
    actor: &str,
    action: &str,
    reason: &str,
    outcome: &str,
    details: &str,
) -> String {
    // A JSON array is an unambiguous encoding of the fields, whatever characters they hold.
    let canonical = json!([prev_hash, seq, ts_ms, tenant, actor, action, reason, outcome, details]).to_string();
    hex(&sha256(canonical.as_bytes()))
}

fn head(conn: &dyn Sql) -> Result<Option<(u64, String)>, DbError> {
    conn.query_opt("SELECT seq, hash FROM audit_head WHERE id = 1", params![], |r| Ok((from_sql(r.get(0)?), r.get(1)?)))
}

/// Appends an entry inside the caller's transaction.
pub fn append(tx: &dyn Sql, e: NewEntry<'_>) -> Result<u64, DbError> {
    let (prev_seq, prev_hash) = head(tx)?.unwrap_or((0, GENESIS.to_string()));
    let seq = prev_seq + 1;
    let ts_ms = now_ms();
    let details = e.details.to_string();
    let hash =
        entry_hash(&prev_hash, seq, ts_ms, e.tenant_id, e.actor_id, e.action, e.reason_code, e.outcome, &details);
    tx.execute(
        "INSERT INTO audit (seq, ts_ms, tenant_id, actor_id, action, reason_code, outcome, details, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            to_sql(seq),
            to_sql(ts_ms),
            e.tenant_id,
            e.actor_id,
            e.action,
            e.reason_code,
            e.outcome,
            details,
            prev_hash,
            hash
        ],
    )?;
    tx.execute(
        "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?1, ?2)
         ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        params![to_sql(seq), hash],
    )?;
    Ok(seq)
}

fn row_to_entry(r: &Row) -> Result<(Entry, String), DbError> {
    let details: String = r.get(7)?;
    Ok((
        Entry {
            seq: from_sql(r.get(0)?),
            timestamp_ms: from_sql(r.get(1)?),
            tenant_id: r.get(2)?,
            actor_id: r.get(3)?,
            action: r.get(4)?,
            reason_code: r.get(5)?,
            outcome: r.get(6)?,
            details: serde_json::from_str(&details).unwrap_or(Value::String(details.clone())),
            prev_hash: r.get(8)?,
            hash: r.get(9)?,
        },
        details,
    ))
}

/// Entries read per query while verifying.
const VERIFY_PAGE: usize = 1000;

const COLUMNS: &str = "seq, ts_ms, tenant_id, actor_id, action, reason_code, outcome, details, prev_hash, hash";

/// The newest `limit` entries (of one tenant, if given), oldest first.
pub fn list(conn: &dyn Sql, tenant: Option<&str>, limit: u64) -> Result<Vec<Entry>, DbError> {
    let sql = format!(
        "SELECT * FROM (SELECT {COLUMNS} FROM audit WHERE (CAST(?1 AS TEXT) IS NULL OR tenant_id = ?1) ORDER BY seq DESC LIMIT ?2)
         AS newest ORDER BY seq"
    );
    conn.query_map(&sql, params![tenant, to_sql(limit)], |r| row_to_entry(r).map(|(e, _)| e))
}

/// The outcome of checking the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub ok: bool,
    pub entries: u64,
    /// Hash of the newest entry: record it elsewhere to anchor the chain.
    pub head: Option<String>,
    /// Stored policy versions checked against the digests their entries record.
    pub policies: u64,
    /// Of those, versions stored before documents were anchored (their entry has no digest).
    #[serde(skip_serializing_if = "is_zero")]
    pub policies_unanchored: u64,
    /// The first problem found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_bad_seq: Option<u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Recomputes the whole chain, then checks every stored policy document against it.
pub fn verify(conn: &dyn Sql) -> Result<Verification, DbError> {
    let mut prev = GENESIS.to_string();
    let mut count = 0u64;
    let mut anchors = policy_anchor::Anchors::new();
    let fail = |count: u64, seq: u64, error: String| Verification {
        ok: false,
        entries: count,
        head: None,
        policies: 0,
        policies_unanchored: 0,
        error: Some(error),
        first_bad_seq: Some(seq),
    };
    // In pages by sequence number, so a long log is never held in memory whole.
    let page = format!("SELECT {COLUMNS} FROM audit WHERE seq > ?1 ORDER BY seq LIMIT {VERIFY_PAGE}");
    loop {
        let rows = conn.query(&page, params![to_sql(count)])?;
        for r in &rows {
            let (e, details) = row_to_entry(r)?;
            let expected_seq = count + 1;
            if e.seq != expected_seq {
                return Ok(fail(count, expected_seq, format!("entry {expected_seq} is missing")));
            }
            if e.prev_hash != prev {
                return Ok(fail(count, e.seq, format!("entry {} does not follow entry {}", e.seq, e.seq - 1)));
            }
            let hash = entry_hash(
                &e.prev_hash,
                e.seq,
                e.timestamp_ms,
                e.tenant_id.as_deref(),
                &e.actor_id,
                &e.action,
                &e.reason_code,
                &e.outcome,
                &details,
            );
            if hash != e.hash {
                return Ok(fail(count, e.seq, format!("entry {} was altered", e.seq)));
            }
            if let Some((version, digest)) = policy_anchor::anchor_of(&e.action, &e.outcome, &e.details) {
                anchors.insert(version, (e.seq, digest));
            }
            prev = e.hash;
            count += 1;
        }
        if rows.len() < VERIFY_PAGE {
            break;
        }
    }
    let recorded = head(conn)?;
    let last = (count > 0).then(|| (count, prev.clone()));
    if recorded != last {
        let at = recorded.as_ref().map_or(count, |(seq, _)| *seq);
        return Ok(fail(count, at, "the newest entries were removed (the chain head does not match)".into()));
    }
    let policies = policy_anchor::check(conn, &anchors)?;
    if let Some((seq, error)) = policies.problem {
        return Ok(fail(count, seq, error));
    }
    Ok(Verification {
        ok: true,
        entries: count,
        head: last.map(|(_, h)| h),
        policies: policies.versions,
        policies_unanchored: policies.unanchored,
        error: None,
        first_bad_seq: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    fn entry(tenant: &str) -> NewEntry<'_> {
        NewEntry {
            tenant_id: Some(tenant),
            actor_id: "ops",
            action: "breaker.open",
            reason_code: "kill_switch",
            outcome: "applied",
            details: json!({"reason": "runaway agent"}),
        }
    }

    fn filled() -> Db {
        let db = Db::in_memory().unwrap();
        for t in ["a", "b", "c", "d"] {
            db.write(|tx| append(tx, entry(t))).unwrap();
        }
        db
    }

    /// Tampering as an attacker with the file would: drop the guard triggers first.
    fn tamper(db: &Db, sql: &str) {
        db.sqlite_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;").unwrap();
        db.sqlite_batch(sql).unwrap();
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let db = filled();
        let v = verify(&db.conn()).unwrap();
        assert!(v.ok, "{v:?}");
        assert_eq!(v.entries, 4);
        assert_eq!(v.head.as_deref().map(str::len), Some(64));
    }

    #[test]
    fn an_empty_log_verifies() {
        let db = Db::in_memory().unwrap();
        assert_eq!(
            verify(&db.conn()).unwrap(),
            Verification {
                ok: true,
                entries: 0,
                head: None,
                policies: 0,
                policies_unanchored: 0,
                error: None,
                first_bad_seq: None
            }
        );
    }

    #[test]
    fn updates_and_deletes_are_refused_by_the_database() {
        let db = filled();
        let conn = db.conn();
        assert!(conn.execute("UPDATE audit SET outcome = 'x' WHERE seq = 2", params![]).is_err());
        assert!(conn.execute("DELETE FROM audit WHERE seq = 2", params![]).is_err());
    }

    #[test]
    fn an_edited_entry_is_detected() {
        let db = filled();
        tamper(&db, "UPDATE audit SET details = '{\"reason\":\"nothing to see\"}' WHERE seq = 2");
        let v = verify(&db.conn()).unwrap();
        assert!(!v.ok);
        assert_eq!(v.first_bad_seq, Some(2));
        assert_eq!(v.entries, 1);
    }

    #[test]
    fn a_deleted_entry_is_detected() {
        let db = filled();
        tamper(&db, "DELETE FROM audit WHERE seq = 3");
        let v = verify(&db.conn()).unwrap();
        assert_eq!((v.ok, v.first_bad_seq), (false, Some(3)));
    }

    #[test]
    fn removing_the_newest_entries_is_detected() {
        let db = filled();
        tamper(&db, "DELETE FROM audit WHERE seq = 4");
        let v = verify(&db.conn()).unwrap();
        assert!(!v.ok, "{v:?}");
        assert!(v.error.unwrap().contains("newest entries"));
    }

    #[test]
    fn a_rehashed_edit_still_breaks_the_next_link() {
        let db = filled();
        // Edit entry 2 and fix its own hash; entry 3 still points at the old one.
        let e = list(&db.conn(), Some("b"), 1).unwrap().remove(0);
        let forged = entry_hash(
            &e.prev_hash,
            2,
            e.timestamp_ms,
            Some("b"),
            "ops",
            "breaker.open",
            "kill_switch",
            "rejected",
            &e.details.to_string(),
        );
        tamper(&db, &format!("UPDATE audit SET outcome = 'rejected', hash = '{forged}' WHERE seq = 2"));
        let v = verify(&db.conn()).unwrap();
        assert_eq!((v.ok, v.first_bad_seq), (false, Some(3)));
    }

    #[test]
    fn a_chain_longer_than_a_page_verifies_and_a_break_past_the_first_page_is_found() {
        let db = Db::in_memory().unwrap();
        db.write(|tx| (0..VERIFY_PAGE * 2 + 5).try_for_each(|_| append(tx, entry("a")).map(|_| ()))).unwrap();
        let v = verify(&db.conn()).unwrap();
        assert_eq!((v.ok, v.entries), (true, (VERIFY_PAGE * 2 + 5) as u64));
        tamper(&db, &format!("DELETE FROM audit WHERE seq = {}", VERIFY_PAGE + 7));
        let v = verify(&db.conn()).unwrap();
        assert_eq!((v.ok, v.first_bad_seq), (false, Some(VERIFY_PAGE as u64 + 7)));
    }

    #[test]
    fn list_filters_by_tenant_and_keeps_order() {
        let db = filled();
        db.write(|tx| append(tx, entry("a"))).unwrap();
        let a = list(&db.conn(), Some("a"), 10).unwrap();
        assert_eq!(a.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 5]);
        assert_eq!(list(&db.conn(), None, 2).unwrap().iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4, 5]);
    }
}
