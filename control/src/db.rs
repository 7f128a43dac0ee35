//! The control database: one SQLite file (WAL mode), created and migrated on open.
//!
//! Every write is one transaction, so a `kill -9` loses nothing that was acknowledged.
//! Connections are cheap to share behind a mutex here: control's load is operator writes,
//! one policy poll per Envoy per second (served from memory) and event batches.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// Schema migrations, applied in order; the index + 1 is the schema version.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE policy_versions (
    version    INTEGER PRIMARY KEY,
    doc        TEXT    NOT NULL,
    created_ms INTEGER NOT NULL,
    actor      TEXT    NOT NULL
);
CREATE TABLE audit (
    seq         INTEGER PRIMARY KEY,
    ts_ms       INTEGER NOT NULL,
    tenant_id   TEXT,
    actor_id    TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    reason_code TEXT    NOT NULL,
    outcome     TEXT    NOT NULL,
    details     TEXT    NOT NULL,
    prev_hash   TEXT    NOT NULL,
    hash        TEXT    NOT NULL
);
CREATE INDEX audit_tenant ON audit(tenant_id, seq);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TABLE audit_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   INTEGER NOT NULL,
    hash  TEXT    NOT NULL
);
CREATE TABLE batches (
    batch_id    TEXT    PRIMARY KEY,
    source      TEXT    NOT NULL,
    received_ms INTEGER NOT NULL,
    events      INTEGER NOT NULL,
    dropped     INTEGER NOT NULL
);
CREATE TABLE usage (
    id            INTEGER PRIMARY KEY,
    minute        INTEGER NOT NULL,
    tenant        TEXT    NOT NULL,
    model         TEXT    NOT NULL,
    route         TEXT    NOT NULL,
    run_id        TEXT,
    status        INTEGER NOT NULL,
    requests      INTEGER NOT NULL,
    input_tokens  INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost_micros   INTEGER NOT NULL
);
CREATE INDEX usage_tenant_minute ON usage(tenant, minute);
CREATE INDEX usage_minute ON usage(minute);
CREATE TABLE tenant_totals (
    tenant        TEXT    PRIMARY KEY,
    requests      INTEGER NOT NULL DEFAULT 0,
    input_tokens  INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cost_micros   INTEGER NOT NULL DEFAULT 0,
    denials       INTEGER NOT NULL DEFAULT 0,
    trips         INTEGER NOT NULL DEFAULT 0,
    warnings      INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE tenant_denials (
    tenant TEXT    NOT NULL,
    reason TEXT    NOT NULL,
    count  INTEGER NOT NULL,
    PRIMARY KEY (tenant, reason)
);
CREATE TABLE breaker_state (
    tenant        TEXT    PRIMARY KEY,
    state         TEXT    NOT NULL,
    at_ms         INTEGER NOT NULL,
    metric        TEXT,
    threshold     INTEGER,
    observed      INTEGER,
    open_until_ms INTEGER,
    source        TEXT    NOT NULL
);
CREATE TABLE tenant_events (
    id      INTEGER PRIMARY KEY,
    tenant  TEXT    NOT NULL,
    kind    TEXT    NOT NULL,
    at_ms   INTEGER NOT NULL,
    details TEXT    NOT NULL
);
CREATE INDEX tenant_events_tenant ON tenant_events(tenant, kind, at_ms);
CREATE TABLE idempotency (
    key         TEXT    PRIMARY KEY,
    fingerprint TEXT    NOT NULL,
    status      INTEGER NOT NULL,
    body        TEXT    NOT NULL,
    created_ms  INTEGER NOT NULL
);
"#];

pub struct Db {
    conn: Mutex<Connection>,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// SQLite stores integers as i64; counts and timestamps here are far below its maximum.
pub fn to_sql(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub fn from_sql(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Db {
    /// Opens (creating if needed) and migrates the database at `path` (`:memory:` for tests).
    pub fn open(path: &Path) -> Result<Db, String> {
        let conn = Connection::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Db::init(conn).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn in_memory() -> Result<Db, String> {
        Db::init(Connection::open_in_memory().map_err(|e| e.to_string())?).map_err(|e| e.to_string())
    }

    fn init(mut conn: Connection) -> rusqlite::Result<Db> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // WAL: readers never block the writer; NORMAL sync is durable across a process crash.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let applied = usize::try_from(version).unwrap_or(0);
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i64::try_from(i + 1).unwrap_or(i64::MAX))?;
            tx.commit()?;
            tracing::info!("database migrated to schema {}", i + 1);
        }
        Ok(Db { conn: Mutex::new(conn) })
    }

    pub fn conn(&self) -> MutexGuard<'_, Connection> {
        // A poisoned lock only means another request panicked mid-use; SQLite rolled back.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in one transaction, committed only if it returns `Ok`.
    pub fn write<R, E: From<rusqlite::Error>>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<R, E>) -> Result<R, E> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let r = f(&tx)?;
        tx.commit()?;
        Ok(r)
    }
}

/// The newest policy document and its version, if any was ever stored.
pub fn latest_policy(conn: &Connection) -> rusqlite::Result<Option<(u64, String)>> {
    conn.query_row("SELECT version, doc FROM policy_versions ORDER BY version DESC LIMIT 1", [], |r| {
        Ok((from_sql(r.get(0)?), r.get(1)?))
    })
    .optional()
}

/// The newest stored policy version (cheap: the primary key's end), if any.
pub fn latest_version(conn: &Connection) -> rusqlite::Result<Option<u64>> {
    conn.query_row("SELECT MAX(version) FROM policy_versions", [], |r| r.get::<_, Option<i64>>(0))
        .map(|v| v.map(from_sql))
}

pub fn insert_policy(tx: &Transaction<'_>, version: u64, doc: &str, actor: &str) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO policy_versions (version, doc, created_ms, actor) VALUES (?1, ?2, ?3, ?4)",
        params![to_sql(version), doc, to_sql(now_ms()), actor],
    )
    .map(|_| ())
}
