//! [`Sql`] over PostgreSQL, so that any number of control replicas share one database.
//!
//! The client runs on a thread of its own (the `postgres` crate drives its own runtime, which
//! must not nest in the service's), one statement at a time, so callers look the same as with
//! SQLite. Every write transaction first takes one advisory lock: writes are serialised across
//! all replicas exactly as SQLite serialises them in one process, which keeps the audit chain a
//! chain and policy versions consecutive whoever appends. A lost connection is made again on
//! the next statement, never in the middle of a transaction.

use super::pg_schema;
use super::sql::{DbError, Dialect, Row, Sql, ToValue, Value};
use postgres::types::{IsNull, ToSql, Type};
use postgres::{Client, NoTls, Statement};
use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};

/// The advisory lock every write transaction holds (any constant; ours by convention).
const WRITE_LOCK: i64 = 0x0066_7573_6562_6f78;

impl From<postgres::Error> for DbError {
    fn from(e: postgres::Error) -> DbError {
        DbError(match e.as_db_error() {
            Some(db) => format!("postgres: {}", db.message()),
            None => format!("postgres: {e}"),
        })
    }
}

/// The client thread's side: the connection, made again when lost, and its prepared statements.
struct Session {
    url: String,
    client: Option<Client>,
    statements: HashMap<String, Statement>,
    in_transaction: bool,
}

impl Session {
    fn client(&mut self) -> Result<&mut Client, DbError> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
            self.statements.clear();
            if self.in_transaction {
                self.in_transaction = false;
                return Err(DbError("postgres: connection lost during a transaction".into()));
            }
        }
        if self.client.is_none() {
            self.client = Some(Client::connect(&self.url, NoTls)?);
        }
        self.client.as_mut().ok_or_else(|| DbError("postgres: not connected".into()))
    }

    fn statement(&mut self, sql: &str) -> Result<Statement, DbError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let prepared = self.client()?.prepare(&placeholders(sql))?;
        // Statements are our own constants (and a few variants of them): the cache stays small.
        self.statements.insert(sql.to_string(), prepared.clone());
        Ok(prepared)
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<usize, DbError> {
        let st = self.statement(sql)?;
        let bound: Vec<Bound<'_>> = params.iter().map(Bound).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
        let n = self.client()?.execute(&st, &refs);
        Ok(usize::try_from(n.map_err(|e| self.failed(e))?).unwrap_or(usize::MAX))
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let st = self.statement(sql)?;
        let bound: Vec<Bound<'_>> = params.iter().map(Bound).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
        let rows = self.client()?.query(&st, &refs);
        rows.map_err(|e| self.failed(e))?.iter().map(read_row).collect()
    }

    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        let done = self.client()?.batch_execute(sql);
        done.map_err(|e| self.failed(e))
    }

    /// A failed statement may have been one the server no longer knows (a schema change by a
    /// migration elsewhere): forget the prepared ones.
    fn failed(&mut self, e: postgres::Error) -> DbError {
        self.statements.clear();
        e.into()
    }
}

type Job = Box<dyn FnOnce(&mut Session) + Send>;

pub(super) struct PgDb {
    jobs: Mutex<mpsc::Sender<Job>>,
}

/// `?N` placeholders (how every statement here is written) as Postgres spells them, `$N`.
fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

/// A value bound to whatever type Postgres inferred for its parameter.
#[derive(Debug)]
struct Bound<'a>(&'a Value);

impl ToSql for Bound<'_> {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self.0 {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                _ => i.to_string().as_str().to_sql(ty, out),
            },
            Value::Real(r) => r.to_sql(ty, out),
            Value::Text(s) => s.as_str().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

fn read_row(row: &postgres::Row) -> Result<Row, DbError> {
    let value = |i: usize, ty: &Type| -> Result<Value, postgres::Error> {
        Ok(match *ty {
            Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map_or(Value::Null, Value::Int),
            Type::INT4 => row.try_get::<_, Option<i32>>(i)?.map_or(Value::Null, |v| Value::Int(v.into())),
            Type::INT2 => row.try_get::<_, Option<i16>>(i)?.map_or(Value::Null, |v| Value::Int(v.into())),
            Type::BOOL => row.try_get::<_, Option<bool>>(i)?.map_or(Value::Null, |v| Value::Int(v.into())),
            Type::FLOAT8 => row.try_get::<_, Option<f64>>(i)?.map_or(Value::Null, Value::Real),
            _ => row.try_get::<_, Option<String>>(i)?.map_or(Value::Null, Value::Text),
        })
    };
    let values = row.columns().iter().enumerate().map(|(i, c)| value(i, c.type_())).collect::<Result<_, _>>()?;
    Ok(Row(values))
}

impl PgDb {
    /// Connects to `url`, applies the schema migrations (under a lock, so replicas starting
    /// together migrate once) and starts the client thread.
    pub(super) fn open(url: &str) -> Result<PgDb, String> {
        let db = PgDb::start(url)?;
        // Connecting, like every statement, happens on the client thread.
        db.conn()
            .run(|s| pg_schema::migrate(s.client()?).map_err(|e| DbError(format!("migrating the database: {e}"))))
            .map_err(|e| e.to_string())?;
        Ok(db)
    }

    /// Starts a client thread for `url` (it connects on its first statement; no migration).
    pub(super) fn start(url: &str) -> Result<PgDb, String> {
        let mut session =
            Session { url: url.to_string(), client: None, statements: HashMap::new(), in_transaction: false };
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("fusebox-postgres".into())
            .spawn(move || {
                for job in queue {
                    job(&mut session);
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(PgDb { jobs: Mutex::new(jobs) })
    }

    /// The connection, held until the guard is dropped (statements of one caller never
    /// interleave with another's).
    pub(super) fn conn(&self) -> PgConn<'_> {
        PgConn(self.jobs.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub(super) fn write<R, E: From<DbError>>(&self, f: impl FnOnce(&dyn Sql) -> Result<R, E>) -> Result<R, E> {
        let conn = self.conn();
        conn.run(|s| {
            s.batch(&format!("BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})"))?;
            s.in_transaction = true;
            Ok(())
        })?;
        let result = f(&conn);
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = conn.run(move |s| {
            s.in_transaction = false;
            s.batch(end)
        });
        match (result, ended) {
            (Ok(r), Ok(())) => Ok(r),
            (Ok(_), Err(e)) => Err(e.into()),
            (Err(e), _) => Err(e),
        }
    }
}

pub(super) struct PgConn<'a>(MutexGuard<'a, mpsc::Sender<Job>>);

impl PgConn<'_> {
    /// Runs `f` on the client thread and waits for its answer.
    fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Session) -> Result<R, DbError> + Send + 'static,
    ) -> Result<R, DbError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.0
            .send(Box::new(move |s: &mut Session| {
                let _ = reply.send(f(s));
            }))
            .map_err(|_| DbError("postgres: the client thread is gone".into()))?;
        answer.recv().map_err(|_| DbError("postgres: the client thread is gone".into()))?
    }
}

impl Sql for PgConn<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&self, sql: &str, params: &[&dyn ToValue]) -> Result<usize, DbError> {
        let (sql, params) = (sql.to_string(), params.iter().map(|p| p.to_value()).collect::<Vec<_>>());
        self.run(move |s| s.execute(&sql, &params))
    }

    fn query(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Vec<Row>, DbError> {
        let (sql, params) = (sql.to_string(), params.iter().map(|p| p.to_value()).collect::<Vec<_>>());
        self.run(move |s| s.query(&sql, &params))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_mark_placeholders_become_dollar_ones() {
        assert_eq!(
            placeholders("SELECT a FROM t WHERE (?1 IS NULL OR b = ?1) AND c > ?12"),
            "SELECT a FROM t WHERE ($1 IS NULL OR b = $1) AND c > $12"
        );
        assert_eq!(placeholders("SELECT '?' , x"), "SELECT '?' , x", "a lone ? is left alone");
    }
}
