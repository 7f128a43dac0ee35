//! What control's queries are written against, whichever database runs them: statements with
//! `?N` parameters, values that are integers, text or NULL, rows read by column index.

use std::fmt;

/// A database failure, with the database's own message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError(pub String);

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DbError {}

/// The two SQL dialects control speaks; statements differ only where noted at their use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A parameter or column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

/// What can be bound as a parameter.
pub trait ToValue {
    fn to_value(&self) -> Value;
}

impl ToValue for i64 {
    fn to_value(&self) -> Value {
        Value::Int(*self)
    }
}

impl ToValue for u16 {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}

impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

/// What a column can be read as.
pub trait FromValue: Sized {
    fn from_value(v: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Option<i64> {
        match v {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}

impl FromValue for u16 {
    fn from_value(v: &Value) -> Option<u16> {
        i64::from_value(v).and_then(|i| u16::try_from(i).ok())
    }
}

impl FromValue for f64 {
    fn from_value(v: &Value) -> Option<f64> {
        match v {
            Value::Real(r) => Some(*r),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
}

impl FromValue for String {
    fn from_value(v: &Value) -> Option<String> {
        match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Option<Option<T>> {
        match v {
            Value::Null => Some(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// One result row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Value>);

impl Row {
    /// Column `i` as `T`; a missing column or another type is an error, not a default.
    pub fn get<T: FromValue>(&self, i: usize) -> Result<T, DbError> {
        let v = self.0.get(i).ok_or_else(|| DbError(format!("no column {i}")))?;
        T::from_value(v).ok_or_else(|| DbError(format!("column {i} holds {v:?}, not a {}", std::any::type_name::<T>())))
    }
}

/// A connection or a transaction of either database.
pub trait Sql {
    fn dialect(&self) -> Dialect;

    /// Runs a statement; the number of rows it changed.
    fn execute(&self, sql: &str, params: &[&dyn ToValue]) -> Result<usize, DbError>;

    /// Runs a query; all its rows.
    fn query(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Vec<Row>, DbError>;
}

impl dyn Sql + '_ {
    /// Each row through `f`.
    pub fn query_map<T>(
        &self,
        sql: &str,
        params: &[&dyn ToValue],
        f: impl FnMut(&Row) -> Result<T, DbError>,
    ) -> Result<Vec<T>, DbError> {
        self.query(sql, params)?.iter().map(f).collect()
    }

    /// The first row through `f`, if there is one.
    pub fn query_opt<T>(
        &self,
        sql: &str,
        params: &[&dyn ToValue],
        f: impl FnOnce(&Row) -> Result<T, DbError>,
    ) -> Result<Option<T>, DbError> {
        self.query(sql, params)?.first().map(f).transpose()
    }

    /// The first row through `f`; no row is an error.
    pub fn query_one<T>(
        &self,
        sql: &str,
        params: &[&dyn ToValue],
        f: impl FnOnce(&Row) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        self.query_opt(sql, params, f)?.ok_or_else(|| DbError("query returned no row".into()))
    }
}

/// Parameters as `&[&dyn ToValue]`: `params![tenant, to_sql(n)]`.
#[macro_export]
macro_rules! params {
    ($($p:expr),* $(,)?) => {
        &[$(&$p as &dyn $crate::db::ToValue),*] as &[&dyn $crate::db::ToValue]
    };
}

/// A sum that saturates at about i64::MAX instead of failing, and is 0 over no rows.
pub fn saturating_sum(dialect: Dialect, expr: &str) -> String {
    match dialect {
        // TOTAL is a float (exact below 2^53) and never overflows.
        Dialect::Sqlite => format!("CAST(MIN(TOTAL({expr}), 9.2e18) AS INTEGER)"),
        // SUM of BIGINT is NUMERIC: exact, then capped to what BIGINT holds.
        Dialect::Postgres => format!("CAST(LEAST(COALESCE(SUM({expr}), 0), 9200000000000000000) AS BIGINT)"),
    }
}
