//! The control database: one SQLite file (WAL mode) by default, or PostgreSQL shared by any
//! number of control replicas (`--database-url postgres://...`); created and migrated on open.
//! Queries are written once against [`Sql`] (`sql.rs`); `sqlite.rs` and `postgres.rs` run them.
//!
//! Every write is one transaction, so a `kill -9` loses nothing that was acknowledged.
//! Writes and reads have a connection each, so a long read (a dashboard over 100 000 tenants)
//! never holds up event ingestion or an operator's write: SQLite's WAL lets a reader and the
//! writer work at once, PostgreSQL serves two sessions.

mod pg_schema;
mod postgres;
mod schema;
mod sql;
mod sqlite;

pub use sql::{saturating_sum, DbError, Dialect, FromValue, Row, Sql, ToValue, Value};

use crate::params;
use postgres::{PgConn, PgDb};
use rusqlite::{Connection, TransactionBehavior};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

pub struct Db(Backend);

enum Backend {
    /// An in-memory database has no second connection: `reader` is `None` there.
    Sqlite {
        writer: Mutex<Connection>,
        reader: Option<Mutex<Connection>>,
    },
    Postgres {
        writer: PgDb,
        reader: PgDb,
    },
}

/// A connection held for a few statements (reads; writes go through [`Db::write`]).
pub struct Conn<'a>(Held<'a>);

enum Held<'a> {
    Sqlite(MutexGuard<'a, Connection>),
    Postgres(PgConn<'a>),
}

impl<'a> std::ops::Deref for Conn<'a> {
    type Target = dyn Sql + 'a;
    fn deref(&self) -> &(dyn Sql + 'a) {
        match &self.0 {
            Held::Sqlite(c) => &**c,
            Held::Postgres(c) => c,
        }
    }
}

impl Sql for Conn<'_> {
    fn dialect(&self) -> Dialect {
        (**self).dialect()
    }
    fn execute(&self, sql: &str, params: &[&dyn ToValue]) -> Result<usize, DbError> {
        (**self).execute(sql, params)
    }
    fn query(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Vec<Row>, DbError> {
        (**self).query(sql, params)
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Databases store integers as i64; counts and timestamps here are far below its maximum.
pub fn to_sql(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub fn from_sql(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Db {
    /// Opens (creating if needed) and migrates the SQLite database at `path`.
    pub fn open(path: &Path) -> Result<Db, String> {
        let at = |e: rusqlite::Error| format!("{}: {e}", path.display());
        let writer = sqlite::init(Connection::open(path).map_err(at)?).map_err(at)?;
        let reader = sqlite::reader(path).map_err(at)?;
        Ok(Db(Backend::Sqlite { writer: Mutex::new(writer), reader: Some(Mutex::new(reader)) }))
    }

    pub fn in_memory() -> Result<Db, String> {
        let conn = Connection::open_in_memory().map_err(|e| e.to_string())?;
        let writer = Mutex::new(sqlite::init(conn).map_err(|e| e.to_string())?);
        Ok(Db(Backend::Sqlite { writer, reader: None }))
    }

    /// Connects to (and migrates) a PostgreSQL database: `postgres://user@host:port/name`.
    pub fn postgres(url: &str) -> Result<Db, String> {
        let writer = PgDb::open(url).map_err(|e| format!("{}: {e}", redact(url)))?;
        let reader = PgDb::start(url).map_err(|e| format!("{}: {e}", redact(url)))?;
        Ok(Db(Backend::Postgres { writer, reader }))
    }

    /// A connection for reads (writes go through [`Db::write`]).
    pub fn conn(&self) -> Conn<'_> {
        match &self.0 {
            Backend::Sqlite { writer, reader } => {
                // A poisoned lock only means another request panicked mid-use; SQLite rolled back.
                let c = reader.as_ref().unwrap_or(writer);
                Conn(Held::Sqlite(c.lock().unwrap_or_else(|p| p.into_inner())))
            }
            Backend::Postgres { reader, .. } => Conn(Held::Postgres(reader.conn())),
        }
    }

    /// Runs `f` in one transaction, committed only if it returns `Ok`.
    pub fn write<R, E: From<DbError>>(&self, f: impl FnOnce(&dyn Sql) -> Result<R, E>) -> Result<R, E> {
        match &self.0 {
            Backend::Sqlite { writer, .. } => {
                let mut conn = writer.lock().unwrap_or_else(|p| p.into_inner());
                // IMMEDIATE: take the write lock up front, so two processes on one file queue
                // (busy timeout) instead of one failing when both upgrade a read to a write.
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(DbError::from)?;
                let r = f(&*tx)?;
                tx.commit().map_err(DbError::from)?;
                Ok(r)
            }
            Backend::Postgres { writer, .. } => writer.write(f),
        }
    }

    /// Raw SQL on the SQLite file, for tests that tamper with it as an attacker with the file would.
    #[doc(hidden)]
    pub fn sqlite_batch(&self, sql: &str) -> Result<(), DbError> {
        match &self.0 {
            Backend::Sqlite { writer, .. } => {
                Ok(writer.lock().unwrap_or_else(|p| p.into_inner()).execute_batch(sql)?)
            }
            Backend::Postgres { .. } => Err(DbError("not a SQLite database".into())),
        }
    }
}

/// A database URL without its password.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            let user = creds.split(':').next().unwrap_or_default();
            format!("{}{user}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// The newest policy document and its version, if any was ever stored.
pub fn latest_policy(conn: &dyn Sql) -> Result<Option<(u64, String)>, DbError> {
    conn.query_opt("SELECT version, doc FROM policy_versions ORDER BY version DESC LIMIT 1", params![], |r| {
        Ok((from_sql(r.get(0)?), r.get(1)?))
    })
}

/// The newest stored policy version (cheap: the primary key's end), if any.
pub fn latest_version(conn: &dyn Sql) -> Result<Option<u64>, DbError> {
    conn.query_one("SELECT MAX(version) FROM policy_versions", params![], |r| {
        Ok(r.get::<Option<i64>>(0)?.map(from_sql))
    })
}

pub fn insert_policy(tx: &dyn Sql, version: u64, doc: &str, actor: &str) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO policy_versions (version, doc, created_ms, actor) VALUES (?1, ?2, ?3, ?4)",
        params![to_sql(version), doc, to_sql(now_ms()), actor],
    )
    .map(|_| ())
}
