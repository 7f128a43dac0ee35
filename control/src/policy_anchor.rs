//! Stored policy documents anchored in the audit chain. Every audit entry that stores a policy
//! version carries the SHA-256 of the document exactly as stored (`doc_sha256`), so editing a
//! stored version in the database, or inserting one no change made, breaks `audit verify`
//! like an edited audit entry does. Versions stored before documents were anchored have an
//! entry without a digest: they are counted as unanchored rather than failed.

use crate::db::{from_sql, to_sql, DbError, Sql};
use crate::params;
use fusebox_engine::identity::{hex, sha256};
use serde_json::Value;
use std::collections::BTreeMap;

/// The digest an audit entry records for a stored policy document.
pub fn doc_digest(doc: &str) -> String {
    hex(&sha256(doc.as_bytes()))
}

/// What an audit entry says of a stored version: the version and its digest (`None` before
/// documents were anchored). The seeding entry of older logs names no version: it is version 1.
pub fn anchor_of(action: &str, outcome: &str, details: &Value) -> Option<(u64, Option<String>)> {
    if outcome != "applied" {
        return None;
    }
    let version = details["version"].as_u64().or_else(|| (action == "policy.seed").then_some(1))?;
    Some((version, details["doc_sha256"].as_str().map(str::to_string)))
}

/// Versions to their anchoring entry: its sequence number and the digest it records.
pub type Anchors = BTreeMap<u64, (u64, Option<String>)>;

/// What checking the stored documents against their anchors found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    pub versions: u64,
    pub unanchored: u64,
    /// The first problem: the audit entry it concerns (0 if none does) and what is wrong.
    pub problem: Option<(u64, String)>,
}

const PAGE: usize = 200;

/// Compares every stored policy version with the digest its audit entry recorded.
pub fn check(conn: &dyn Sql, anchors: &Anchors) -> Result<Checked, DbError> {
    let mut out = Checked::default();
    let mut after = 0u64;
    loop {
        let rows = conn.query(
            &format!("SELECT version, doc FROM policy_versions WHERE version > ?1 ORDER BY version LIMIT {PAGE}"),
            params![to_sql(after)],
        )?;
        for r in &rows {
            let version: u64 = from_sql(r.get(0)?);
            let doc: String = r.get(1)?;
            after = version;
            out.versions += 1;
            match anchors.get(&version) {
                None => {
                    out.problem = Some((0, format!("policy version {version} has no audit entry")));
                    return Ok(out);
                }
                Some((_, None)) => out.unanchored += 1,
                Some((seq, Some(digest))) if *digest != doc_digest(&doc) => {
                    out.problem = Some((*seq, format!("stored policy version {version} was altered")));
                    return Ok(out);
                }
                Some(_) => {}
            }
        }
        if rows.len() < PAGE {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::audit::{self, verify};
    use crate::db::Db;
    use crate::policy_ops::{apply, seed, Change};
    use fusebox_engine::policy::{Limits, Policy};
    use serde_json::json;

    /// A database with the seed (version 1) and one change (version 2).
    fn two_versions() -> Db {
        let db = Db::in_memory().unwrap();
        let policy = Policy::from_json(
            br#"{"identity": {"jwt": {"issuer": "i", "audiences": ["a"],
                "keys": [{"alg": "HS256", "secret": "0123456789abcdef"}]}},
                "tenants": {"acme": {"tokens_60s": 100}}}"#,
        )
        .unwrap();
        seed(&db, policy, "test", "test").unwrap();
        let gold = Limits::from_json(br#"{"tokens_60s": 5000}"#).unwrap();
        apply(&db, &Change::PutTier("gold".into(), Box::new(gold)), "alice").unwrap();
        db
    }

    #[test]
    fn untouched_policy_versions_verify() {
        let v = verify(&two_versions().conn()).unwrap();
        assert!(v.ok && v.policies == 2 && v.policies_unanchored == 0, "{v:?}");
    }

    #[test]
    fn an_edited_stored_policy_is_detected_at_its_audit_entry() {
        let db = two_versions();
        // Raising a tenant's limit behind the audit log's back (the table has no guard).
        db.sqlite_batch("UPDATE policy_versions SET doc = replace(doc, '5000', '9999999') WHERE version = 2").unwrap();
        let v = verify(&db.conn()).unwrap();
        assert!(!v.ok, "{v:?}");
        assert_eq!(v.first_bad_seq, Some(2));
        assert!(v.error.unwrap().contains("version 2 was altered"));
    }

    #[test]
    fn a_policy_version_no_change_made_is_detected() {
        let db = two_versions();
        db.sqlite_batch(
            "INSERT INTO policy_versions (version, doc, created_ms, actor) \
             SELECT 3, doc, created_ms, 'mallory' FROM policy_versions WHERE version = 2",
        )
        .unwrap();
        let v = verify(&db.conn()).unwrap();
        assert!(!v.ok && v.error.as_deref() == Some("policy version 3 has no audit entry"), "{v:?}");
    }

    #[test]
    fn versions_stored_before_documents_were_anchored_are_counted_not_failed() {
        let db = Db::in_memory().unwrap();
        db.sqlite_batch("INSERT INTO policy_versions (version, doc, created_ms, actor) VALUES (1, '{}', 0, 'old')")
            .unwrap();
        let old_seed = audit::NewEntry {
            tenant_id: None,
            actor_id: "fusebox-control",
            action: "policy.seed",
            reason_code: "policy_change",
            outcome: "applied",
            details: json!({"source": "policy.json", "after": {}}),
        };
        db.write(|tx| audit::append(tx, old_seed)).unwrap();
        let v = verify(&db.conn()).unwrap();
        assert!(v.ok && v.policies == 1 && v.policies_unanchored == 1, "{v:?}");
    }
}
