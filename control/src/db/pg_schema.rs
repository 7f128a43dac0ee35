//! Migrating a Postgres database (the schema is in `schema.rs`): under an advisory lock, so
//! that replicas starting at once migrate once; `fusebox_schema` holds the version reached.

use super::schema;
use super::sql::Dialect;
use postgres::Client;

/// Held while migrating (another constant than the write lock's).
const MIGRATION_LOCK: i64 = 0x0066_7573_6562_6f79;

/// Brings the database's schema up to date.
pub(super) fn migrate(client: &mut Client) -> Result<(), postgres::Error> {
    client.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))?;
    let result = apply(client);
    client.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))?;
    result
}

fn apply(client: &mut Client) -> Result<(), postgres::Error> {
    client.batch_execute("CREATE TABLE IF NOT EXISTS fusebox_schema (version BIGINT NOT NULL)")?;
    let applied: i64 = client.query_opt("SELECT version FROM fusebox_schema", &[])?.map_or(0, |r| r.get::<_, i64>(0));
    for (i, sql) in schema::migrations(Dialect::Postgres).iter().enumerate().skip(usize::try_from(applied).unwrap_or(0))
    {
        let version = i64::try_from(i + 1).unwrap_or(i64::MAX);
        let mut tx = client.transaction()?;
        tx.batch_execute(sql)?;
        tx.execute("DELETE FROM fusebox_schema", &[])?;
        tx.execute("INSERT INTO fusebox_schema (version) VALUES ($1)", &[&version])?;
        tx.commit()?;
        tracing::info!("database migrated to schema {version}");
    }
    Ok(())
}
