//! `POST /v1/events`: batches from the filter's singleton. A batch is stored in one
//! transaction together with its id, so a batch retried after a lost reply is recognised and
//! ignored: usage is counted exactly once.

use crate::audit::{self, NewEntry};
use crate::db::{now_ms, to_sql, Db, DbError, Sql};
use crate::error::ApiError;
use crate::params;
use fusebox_engine::breaker::Phase;
use fusebox_engine::event::Event;
use fusebox_engine::event_bounds::is_label;
use fusebox_engine::policy::Policy;
use fusebox_engine::usage::{CacheTokens, Usage};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Escalation: a tenant that trips this many times within the window is escalated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Escalation {
    pub trips: u64,
    pub window_s: u64,
}

impl Default for Escalation {
    fn default() -> Self {
        Escalation { trips: 3, window_s: 3600 }
    }
}

/// A batch as received: events are parsed one by one, so one unknown kind (from a newer
/// filter) does not cost the rest.
#[derive(Debug, Deserialize)]
pub struct RawBatch {
    pub batch_id: String,
    pub source: String,
    #[serde(default)]
    pub dropped: u64,
    pub events: Vec<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Ingested {
    pub batch_id: String,
    pub duplicate: bool,
    pub accepted: u64,
    pub ignored: u64,
}

pub const MAX_EVENTS_PER_BATCH: usize = 10_000;

/// `table.column + excluded.column`, saturating at the largest integer SQLite stores (values are
/// never negative), so a total can never overflow into an error that breaks every read.
fn saturating_add(table: &str, column: &str) -> String {
    let (old, new) = (format!("{table}.{column}"), format!("excluded.{column}"));
    format!("CASE WHEN {old} > 9223372036854775807 - {new} THEN 9223372036854775807 ELSE {old} + {new} END")
}

/// Stores a batch; usage is priced with `policy` (the one control serves).
pub fn ingest(db: &Db, policy: &Policy, batch: RawBatch, escalation: Escalation) -> Result<Ingested, ApiError> {
    if !is_label(&batch.batch_id, 128) {
        return Err(ApiError::bad_request("batch_id", "1-128 printable characters"));
    }
    if !is_label(&batch.source, 256) {
        return Err(ApiError::bad_request("source", "1-256 printable characters"));
    }
    if batch.events.len() > MAX_EVENTS_PER_BATCH {
        return Err(ApiError::bad_request("events", format!("at most {MAX_EVENTS_PER_BATCH} events per batch")));
    }
    let mut out = Ingested { batch_id: batch.batch_id.clone(), ..Ingested::default() };
    let now = now_ms();
    let events: Vec<Event> = batch
        .events
        .into_iter()
        .filter_map(|v| match serde_json::from_value::<Event>(v) {
            Ok(e) if e.plausible(now) => Some(e),
            Ok(_) | Err(_) => {
                out.ignored += 1;
                None
            }
        })
        .collect();
    if out.ignored > 0 {
        tracing::warn!("batch {}: ignored {} unknown or invalid events", batch.batch_id, out.ignored);
    }
    db.write(|tx| {
        let seen: Option<i64> =
            tx.query_opt("SELECT 1 FROM batches WHERE batch_id = ?1", params![batch.batch_id], |r| r.get(0))?;
        if seen.is_some() {
            out.duplicate = true;
            return Ok::<_, ApiError>(());
        }
        tx.execute(
            "INSERT INTO batches (batch_id, source, received_ms, events, dropped) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![batch.batch_id, batch.source, to_sql(now_ms()), to_sql(events.len() as u64), to_sql(batch.dropped)],
        )?;
        for e in &events {
            store(tx, e, policy, &batch.source, escalation)?;
            out.accepted += 1;
        }
        Ok(())
    })?;
    Ok(out)
}

fn bump_totals(tx: &dyn Sql, tenant: &str, column: &str, by: u64) -> Result<(), DbError> {
    // `column` is one of our own constants, never input.
    tx.execute(
        &format!(
            "INSERT INTO tenant_totals (tenant, {column}) VALUES (?1, ?2)
             ON CONFLICT(tenant) DO UPDATE SET {column} = {sum}",
            sum = saturating_add("tenant_totals", column)
        ),
        params![tenant, to_sql(by)],
    )
    .map(|_| ())
}

/// Adds `count` refusals (or shadowed ones, by `table`) to a tenant's count for `reason`.
fn add_denials(tx: &dyn Sql, table: &str, tenant: &str, reason: &str, count: u64) -> Result<(), DbError> {
    // `table` is one of our own constants, never input.
    tx.execute(
        &format!(
            "INSERT INTO {table} (tenant, reason, count) VALUES (?1, ?2, ?3)
             ON CONFLICT(tenant, reason) DO UPDATE SET count = {}",
            saturating_add(table, "count")
        ),
        params![tenant, reason, to_sql(count)],
    )
    .map(|_| ())
}

fn store(tx: &dyn Sql, e: &Event, policy: &Policy, source: &str, escalation: Escalation) -> Result<(), ApiError> {
    match e {
        Event::Usage {
            tenant,
            model,
            route,
            run_id,
            status,
            minute,
            requests,
            input_tokens,
            output_tokens,
            cache_read_tokens,
            cache_write_tokens,
            scopes,
        } => {
            let usage = Usage { input_tokens: *input_tokens, output_tokens: *output_tokens };
            let model_opt = (!model.is_empty()).then_some(model.as_str());
            let cache = CacheTokens { read: *cache_read_tokens, write: *cache_write_tokens };
            let cost = policy.cost_micros(model_opt, usage, cache);
            tx.execute(
                "INSERT INTO usage (minute, tenant, model, route, run_id, status, requests, input_tokens, output_tokens, cost_micros)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    to_sql(*minute),
                    tenant,
                    model,
                    route,
                    run_id,
                    status,
                    to_sql(*requests),
                    to_sql(*input_tokens),
                    to_sql(*output_tokens),
                    to_sql(cost)
                ],
            )?;
            tx.execute(
                &format!(
                    "INSERT INTO tenant_totals (tenant, requests, input_tokens, output_tokens, cost_micros)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(tenant) DO UPDATE SET requests = {}, input_tokens = {}, output_tokens = {},
                        cost_micros = {}",
                    saturating_add("tenant_totals", "requests"),
                    saturating_add("tenant_totals", "input_tokens"),
                    saturating_add("tenant_totals", "output_tokens"),
                    saturating_add("tenant_totals", "cost_micros")
                ),
                params![tenant, to_sql(*requests), to_sql(*input_tokens), to_sql(*output_tokens), to_sql(cost)],
            )?;
            for (scope, value) in scopes {
                tx.execute(
                    "INSERT INTO scope_usage (minute, scope, value, model, requests, input_tokens, output_tokens, cost_micros)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        to_sql(*minute),
                        scope,
                        value,
                        model,
                        to_sql(*requests),
                        to_sql(*input_tokens),
                        to_sql(*output_tokens),
                        to_sql(cost)
                    ],
                )?;
            }
        }
        Event::Denial { tenant, reason, count, .. } => {
            add_denials(tx, "tenant_denials", tenant, reason, *count)?;
            bump_totals(tx, tenant, "denials", *count)?;
        }
        Event::ShadowDenial { tenant, reason, count, .. } => {
            add_denials(tx, "tenant_shadow_denials", tenant, reason, *count)?
        }
        Event::Warning { tenant, metric, percent, minute } => {
            tx.execute(
                "INSERT INTO tenant_events (tenant, kind, at_ms, details) VALUES (?1, 'warning', ?2, ?3)",
                params![
                    tenant,
                    to_sql(minute.saturating_mul(1000)),
                    json!({"metric": metric, "percent": percent}).to_string()
                ],
            )?;
            bump_totals(tx, tenant, "warnings", 1)?;
        }
        Event::Transition { tenant, run_id, from, to, at_ms, metric, threshold, observed, open_until_ms, scope } => {
            let reason_code = match (metric.as_deref(), to) {
                (Some(m), Phase::Open) => m.to_string(),
                (_, Phase::HalfOpen) => "cooldown_elapsed".to_string(),
                (_, Phase::Closed) if *from == Phase::HalfOpen => "probes_passed".to_string(),
                (_, Phase::Closed) => "operator_reset".to_string(),
                (None, Phase::Open) => "transition".to_string(),
            };
            let details = json!({
                "from": from, "to": to, "at_ms": at_ms, "metric": metric, "threshold": threshold,
                "observed": observed, "open_until_ms": open_until_ms, "run_id": run_id, "source": source,
                "scope": scope,
            });
            let actor = format!("envoy:{source}");
            audit::append(
                tx,
                NewEntry {
                    tenant_id: Some(tenant),
                    actor_id: &actor,
                    action: if run_id.is_some() { "run.transition" } else { "breaker.transition" },
                    reason_code: &reason_code,
                    outcome: to.as_str(),
                    details,
                },
            )?;
            // The tenant's own breaker only: a run's or a route tier's is its own.
            if run_id.is_none() && scope.is_none() {
                tx.execute(
                    "INSERT INTO breaker_state (tenant, state, at_ms, metric, threshold, observed, open_until_ms, source)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT(tenant) DO UPDATE SET state = excluded.state, at_ms = excluded.at_ms,
                        metric = excluded.metric, threshold = excluded.threshold, observed = excluded.observed,
                        open_until_ms = excluded.open_until_ms, source = excluded.source
                     WHERE excluded.at_ms >= breaker_state.at_ms",
                    params![
                        tenant,
                        to.as_str(),
                        to_sql(*at_ms),
                        metric,
                        threshold.map(to_sql),
                        observed.map(to_sql),
                        open_until_ms.map(to_sql),
                        source
                    ],
                )?;
            }
            // A scope's breaker (`org:initech`, `model:gpt-4o*`; route tier names have no colon)
            // is shared: its trip is kept apart (`scope_trip`, and the audit entry above), not
            // counted against the tenant whose request crossed it, nor toward its escalation.
            let shared = scope.as_deref().is_some_and(|s| s.contains(':'));
            if *to == Phase::Open {
                let kind = if shared { "scope_trip" } else { "trip" };
                tx.execute(
                    "INSERT INTO tenant_events (tenant, kind, at_ms, details) VALUES (?1, ?2, ?3, ?4)",
                    params![
                        tenant,
                        kind,
                        to_sql(*at_ms),
                        json!({"metric": metric, "run_id": run_id, "scope": scope}).to_string()
                    ],
                )?;
                if !shared {
                    bump_totals(tx, tenant, "trips", 1)?;
                    escalate_if_repeated(tx, tenant, *at_ms, escalation)?;
                }
            }
        }
    }
    Ok(())
}

/// Records an escalation when the tenant has tripped `escalation.trips` times within the
/// window, once per window.
fn escalate_if_repeated(tx: &dyn Sql, tenant: &str, at_ms: u64, esc: Escalation) -> Result<(), DbError> {
    let since = to_sql(at_ms.saturating_sub(esc.window_s.saturating_mul(1000)));
    let count = |kind: &str| -> Result<u64, DbError> {
        tx.query_one(
            "SELECT COUNT(*) FROM tenant_events WHERE tenant = ?1 AND kind = ?2 AND at_ms > ?3",
            params![tenant, kind, since],
            |r| r.get::<i64>(0),
        )
        .map(crate::db::from_sql)
    };
    let trips = count("trip")?;
    if trips < esc.trips || count("escalation")? > 0 {
        return Ok(());
    }
    let details = json!({"trips": trips, "window_s": esc.window_s});
    tx.execute(
        "INSERT INTO tenant_events (tenant, kind, at_ms, details) VALUES (?1, 'escalation', ?2, ?3)",
        params![tenant, to_sql(at_ms), details.to_string()],
    )?;
    tracing::warn!("tenant '{tenant}' escalated: {trips} trips within {}s", esc.window_s);
    audit::append(
        tx,
        NewEntry {
            tenant_id: Some(tenant),
            actor_id: "fusebox-control",
            action: "tenant.escalated",
            reason_code: "repeated_trips",
            outcome: "escalated",
            details,
        },
    )
    .map(|_| ())
}
