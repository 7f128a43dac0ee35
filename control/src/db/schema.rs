//! Control's tables, written once for both databases: `INTEGER` is SQLite's 64-bit integer and
//! PostgreSQL's `BIGINT`, `{serial}` an id the database assigns. Each database adds its own
//! guard that keeps the audit log append-only. Migrations apply in order; the index + 1 is
//! the schema version.

use super::sql::Dialect;

const V1_TABLES: &str = r#"
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
    id            {serial},
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
    id      {serial},
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
"#;

const V1_SQLITE_GUARD: &str = r#"
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"#;

const V1_POSTGRES_GUARD: &str = r#"
CREATE FUNCTION fusebox_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION fusebox_audit_append_only();
"#;

/// Requests shadowed limits would have refused (they passed), per tenant and reason.
const V2_SHADOW_DENIALS: &str = r#"
CREATE TABLE tenant_shadow_denials (
    tenant TEXT    NOT NULL,
    reason TEXT    NOT NULL,
    count  INTEGER NOT NULL,
    PRIMARY KEY (tenant, reason)
);
"#;

/// Usage by scope value (org, team, ...), as the usage table has it by tenant.
const V3_SCOPE_USAGE: &str = r#"
CREATE TABLE scope_usage (
    minute        INTEGER NOT NULL,
    scope         TEXT    NOT NULL,
    value         TEXT    NOT NULL,
    model         TEXT    NOT NULL,
    requests      INTEGER NOT NULL,
    input_tokens  INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost_micros   INTEGER NOT NULL
);
CREATE INDEX scope_usage_scope_minute ON scope_usage(scope, minute);
"#;

/// Every migration, in `dialect`.
pub(super) fn migrations(dialect: Dialect) -> Vec<String> {
    let v1 = match dialect {
        Dialect::Sqlite => V1_TABLES.replace("{serial}", "INTEGER PRIMARY KEY") + V1_SQLITE_GUARD,
        Dialect::Postgres => {
            V1_TABLES.replace("{serial}", "BIGSERIAL PRIMARY KEY").replace("INTEGER", "BIGINT") + V1_POSTGRES_GUARD
        }
    };
    let types = |sql: &str| match dialect {
        Dialect::Sqlite => sql.to_string(),
        Dialect::Postgres => sql.replace("INTEGER", "BIGINT"),
    };
    vec![v1, types(V2_SHADOW_DENIALS), types(V3_SCOPE_USAGE)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_databases_get_the_same_tables_in_their_own_types() {
        let (lite, pg) = (migrations(Dialect::Sqlite).remove(0), migrations(Dialect::Postgres).remove(0));
        let tables = |sql: &str| sql.matches("CREATE TABLE").count();
        assert_eq!(tables(&lite), tables(&pg));
        assert!(!pg.contains("INTEGER") && pg.contains("BIGSERIAL PRIMARY KEY"));
        assert!(lite.contains("RAISE(ABORT") && pg.contains("RAISE EXCEPTION"));
    }
}
