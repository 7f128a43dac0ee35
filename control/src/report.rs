//! Read-side views: one tenant, all tenants, usage over a time range, Prometheus metrics.

use crate::db::{from_sql, to_sql};
use crate::error::ApiError;
use crate::ingest::Escalation;
use fusebox_engine::policy::Policy;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

fn cost(micros: u64) -> f64 {
    micros as f64 / 1e6
}

/// The breaker state a filter last reported for a tenant.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReportedBreaker {
    pub state: String,
    pub at_ms: u64,
    pub metric: Option<String>,
    pub threshold: Option<u64>,
    pub observed: Option<u64>,
    pub open_until_ms: Option<u64>,
    pub source: String,
}

pub(crate) fn reported_breaker(conn: &Connection, tenant: &str) -> rusqlite::Result<Option<ReportedBreaker>> {
    conn.query_row(
        "SELECT state, at_ms, metric, threshold, observed, open_until_ms, source FROM breaker_state WHERE tenant = ?1",
        [tenant],
        |r| {
            Ok(ReportedBreaker {
                state: r.get(0)?,
                at_ms: from_sql(r.get(1)?),
                metric: r.get(2)?,
                threshold: r.get::<_, Option<i64>>(3)?.map(from_sql),
                observed: r.get::<_, Option<i64>>(4)?.map(from_sql),
                open_until_ms: r.get::<_, Option<i64>>(5)?.map(from_sql),
                source: r.get(6)?,
            })
        },
    )
    .optional()
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Totals {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
    pub cost: f64,
    pub denials: u64,
    pub trips: u64,
    pub warnings: u64,
}

pub(crate) fn totals(conn: &Connection, tenant: &str) -> rusqlite::Result<Totals> {
    conn.query_row(
        "SELECT requests, input_tokens, output_tokens, cost_micros, denials, trips, warnings FROM tenant_totals WHERE tenant = ?1",
        [tenant],
        |r| {
            let input = from_sql(r.get(1)?);
            let output = from_sql(r.get(2)?);
            Ok(Totals {
                requests: from_sql(r.get(0)?),
                input_tokens: input,
                output_tokens: output,
                total_tokens: input + output,
                cost: cost(from_sql(r.get(3)?)),
                denials: from_sql(r.get(4)?),
                trips: from_sql(r.get(5)?),
                warnings: from_sql(r.get(6)?),
            })
        },
    )
    .optional()
    .map(Option::unwrap_or_default)
}

pub(crate) fn escalated(conn: &Connection, tenant: &str, now_ms: u64, esc: Escalation) -> rusqlite::Result<bool> {
    let since = to_sql(now_ms.saturating_sub(esc.window_s.saturating_mul(1000)));
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM tenant_events WHERE tenant = ?1 AND kind = 'escalation' AND at_ms > ?2)",
        params![tenant, since],
        |r| r.get(0),
    )
}

/// `GET /v1/tenants/{t}`: policy entry, effective limits, operator hold, last reported
/// breaker state, totals and recent warnings, trips and escalations.
pub fn tenant(
    conn: &Connection,
    policy: &Policy,
    tenant: &str,
    now_ms: u64,
    esc: Escalation,
) -> Result<Value, ApiError> {
    let entry = policy.tenants.get(tenant);
    let (tier, limits) = policy.limits_for(tenant, None);
    let mut stmt = conn.prepare(
        "SELECT kind, at_ms, details FROM tenant_events WHERE tenant = ?1 ORDER BY at_ms DESC, id DESC LIMIT 20",
    )?;
    let events = stmt.query_map([tenant], |r| event_row(r, "kind"))?.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(json!({
        "tenant": tenant,
        "policy_version": policy.version,
        "tier": tier,
        "entry": entry,
        "limits": limits,
        "forced": entry.and_then(|e| e.forced.as_ref()),
        "breaker": reported_breaker(conn, tenant)?,
        "totals": totals(conn, tenant)?,
        "escalated": escalated(conn, tenant, now_ms, esc)?,
        "events": events,
    }))
}

/// A `tenant_events` row `(<first>, at_ms, details)` as JSON, `first` naming its first column.
pub(crate) fn event_row(r: &rusqlite::Row<'_>, first: &str) -> rusqlite::Result<Value> {
    let details: String = r.get(2)?;
    let mut row = serde_json::Map::new();
    row.insert(first.to_string(), Value::String(r.get(0)?));
    row.insert("at_ms".into(), from_sql(r.get(1)?).into());
    row.insert("details".into(), serde_json::from_str::<Value>(&details).unwrap_or(Value::Null));
    Ok(Value::Object(row))
}

/// Every tenant with a policy entry or reported traffic.
pub(crate) fn known_tenants(conn: &Connection, policy: &Policy) -> rusqlite::Result<BTreeSet<String>> {
    let mut names: BTreeSet<String> = policy.tenants.keys().cloned().collect();
    let mut stmt = conn.prepare("SELECT tenant FROM tenant_totals UNION SELECT tenant FROM breaker_state")?;
    for t in stmt.query_map([], |r| r.get::<_, String>(0))? {
        names.insert(t?);
    }
    Ok(names)
}

/// `GET /v1/tenants`: every tenant with a policy entry or reported traffic.
pub fn tenants(conn: &Connection, policy: &Policy) -> Result<Value, ApiError> {
    let list = known_tenants(conn, policy)?
        .iter()
        .map(|t| {
            let (tier, _) = policy.limits_for(t, None);
            let entry = policy.tenants.get(t);
            Ok(json!({
                "tenant": t,
                "tier": tier,
                "forced": entry.and_then(|e| e.forced.as_ref()).map(|f| f.state),
                "breaker": reported_breaker(conn, t)?.map(|b| b.state),
                "totals": totals(conn, t)?,
            }))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(json!({ "tenants": list }))
}

#[derive(Debug, Clone, Default)]
pub struct UsageQuery {
    pub tenant: Option<String>,
    pub model: Option<String>,
    /// Unix seconds, inclusive.
    pub from_s: u64,
    /// Unix seconds, exclusive.
    pub to_s: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct UsageLine {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
    pub cost: f64,
    #[serde(skip)]
    cost_micros: u64,
}

impl UsageLine {
    fn add(&mut self, requests: u64, input: u64, output: u64, cost_micros: u64) {
        self.requests += requests;
        self.input_tokens += input;
        self.output_tokens += output;
        self.total_tokens += input + output;
        self.cost_micros += cost_micros;
        self.cost = cost(self.cost_micros);
    }
}

/// `GET /v1/usage`: per tenant, totals and a line per model. Usage is recorded per minute,
/// so `from`/`to` select whole minutes (a minute counts if it starts in the range).
pub fn usage(conn: &Connection, q: &UsageQuery) -> Result<Value, ApiError> {
    let mut stmt = conn.prepare(
        "SELECT tenant, model, SUM(requests), SUM(input_tokens), SUM(output_tokens), SUM(cost_micros) FROM usage
         WHERE minute >= ?1 AND minute < ?2 AND (?3 IS NULL OR tenant = ?3) AND (?4 IS NULL OR model = ?4)
         GROUP BY tenant, model ORDER BY tenant, model",
    )?;
    let rows = stmt.query_map(params![to_sql(q.from_s), to_sql(q.to_s), q.tenant, q.model], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            from_sql(r.get(2)?),
            from_sql(r.get(3)?),
            from_sql(r.get(4)?),
            from_sql(r.get(5)?),
        ))
    })?;
    let mut by_tenant: BTreeMap<String, (UsageLine, BTreeMap<String, UsageLine>)> = BTreeMap::new();
    for row in rows {
        let (tenant, model, requests, input, output, micros) = row?;
        let (total, models) = by_tenant.entry(tenant).or_default();
        total.add(requests, input, output, micros);
        models.entry(model).or_default().add(requests, input, output, micros);
    }
    let tenants: Vec<Value> = by_tenant
        .into_iter()
        .map(|(tenant, (total, models))| {
            let models: Vec<Value> =
                models.into_iter().map(|(model, line)| json!({"model": model, "usage": line})).collect();
            json!({"tenant": tenant, "usage": total, "models": models})
        })
        .collect();
    Ok(json!({
        "from": crate::timefmt::format_ms(q.from_s * 1000),
        "to": crate::timefmt::format_ms(q.to_s * 1000),
        "tenants": tenants,
    }))
}

/// Per-tenant series are limited to this many tenants (the ones that matter most: open,
/// held or escalated first, then by tokens); the rest are summed under `tenant="_other"`.
pub const DEFAULT_METRICS_MAX_TENANTS: usize = 100;

struct MetricTenant {
    tenant: String,
    totals: Totals,
    cost_micros: u64,
    state: Option<String>,
    forced: Option<&'static str>,
    escalated: bool,
}

/// `GET /metrics` in the Prometheus text format.
pub fn metrics(
    conn: &Connection,
    policy: &Policy,
    now_ms: u64,
    esc: Escalation,
    max_tenants: usize,
) -> Result<String, ApiError> {
    let mut stmt = conn.prepare(
        "SELECT t.tenant, t.requests, t.input_tokens, t.output_tokens, t.cost_micros, t.denials, t.trips, t.warnings, b.state
         FROM tenant_totals t LEFT JOIN breaker_state b ON b.tenant = t.tenant",
    )?;
    let mut rows: Vec<MetricTenant> = stmt
        .query_map([], |r| {
            let input = from_sql(r.get(2)?);
            let output = from_sql(r.get(3)?);
            Ok(MetricTenant {
                tenant: r.get(0)?,
                totals: Totals {
                    requests: from_sql(r.get(1)?),
                    input_tokens: input,
                    output_tokens: output,
                    total_tokens: input + output,
                    cost: 0.0,
                    denials: from_sql(r.get(5)?),
                    trips: from_sql(r.get(6)?),
                    warnings: from_sql(r.get(7)?),
                },
                cost_micros: from_sql(r.get(4)?),
                state: r.get(8)?,
                forced: None,
                escalated: false,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    for (t, entry) in &policy.tenants {
        let Some(f) = &entry.forced else { continue };
        match rows.iter_mut().find(|r| &r.tenant == t) {
            Some(r) => r.forced = Some(f.state.as_str()),
            None => rows.push(MetricTenant {
                tenant: t.clone(),
                totals: Totals::default(),
                cost_micros: 0,
                state: None,
                forced: Some(f.state.as_str()),
                escalated: false,
            }),
        }
    }
    let since = to_sql(now_ms.saturating_sub(esc.window_s.saturating_mul(1000)));
    let mut stmt =
        conn.prepare("SELECT DISTINCT tenant FROM tenant_events WHERE kind = 'escalation' AND at_ms > ?1")?;
    let escalated_now: BTreeSet<String> = stmt.query_map([since], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    for r in rows.iter_mut() {
        r.escalated = escalated_now.contains(&r.tenant);
    }
    let notable =
        |r: &MetricTenant| r.forced.is_some() || r.escalated || r.state.as_deref().is_some_and(|s| s != "closed");
    rows.sort_by(|a, b| notable(b).cmp(&notable(a)).then(b.totals.total_tokens.cmp(&a.totals.total_tokens)));
    let shown = rows.len().min(max_tenants);
    let (top, rest) = rows.split_at(shown);
    let mut denials: BTreeMap<(String, String), u64> = BTreeMap::new();
    let shown_names: BTreeSet<&str> = top.iter().map(|r| r.tenant.as_str()).collect();
    let mut stmt = conn.prepare("SELECT tenant, reason, count FROM tenant_denials")?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, from_sql(r.get(2)?))))? {
        let (tenant, reason, count) = row?;
        let label = if shown_names.contains(tenant.as_str()) { tenant } else { "_other".to_string() };
        *denials.entry((label, reason)).or_default() += count;
    }

    let mut out = String::new();
    let header = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    header(&mut out, "fusebox_control_policy_version", "gauge", "Version of the policy control serves.");
    let _ = writeln!(out, "fusebox_control_policy_version {}", policy.version);
    let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).map(from_sql);
    header(&mut out, "fusebox_control_audit_entries", "gauge", "Entries in the audit log.");
    let _ = writeln!(out, "fusebox_control_audit_entries {}", count("SELECT COUNT(*) FROM audit")?);
    header(&mut out, "fusebox_control_event_batches_total", "counter", "Event batches received from filters.");
    let _ = writeln!(out, "fusebox_control_event_batches_total {}", count("SELECT COUNT(*) FROM batches")?);
    header(
        &mut out,
        "fusebox_control_events_dropped_by_filters",
        "gauge",
        "Events filters reported dropping (newest report per source, summed).",
    );
    let dropped = count("SELECT COALESCE(SUM(d), 0) FROM (SELECT MAX(dropped) AS d FROM batches GROUP BY source)")?;
    let _ = writeln!(out, "fusebox_control_events_dropped_by_filters {dropped}");
    header(&mut out, "fusebox_control_tenants_not_shown", "gauge", "Tenants summed under tenant=\"_other\".");
    let _ = writeln!(out, "fusebox_control_tenants_not_shown {}", rest.len());

    header(&mut out, "fusebox_tenant_breaker_state", "gauge", "Last reported breaker state (1 for the current state).");
    for r in top {
        let current = r.state.as_deref().unwrap_or("closed");
        for s in ["closed", "open", "half_open"] {
            let _ = writeln!(
                out,
                "fusebox_tenant_breaker_state{{tenant=\"{}\",state=\"{s}\"}} {}",
                r.tenant,
                u8::from(current == s)
            );
        }
    }
    header(
        &mut out,
        "fusebox_tenant_forced",
        "gauge",
        "1 while an operator holds the breaker (state=open is the kill switch).",
    );
    for r in top {
        if let Some(f) = r.forced {
            let _ = writeln!(out, "fusebox_tenant_forced{{tenant=\"{}\",state=\"{f}\"}} 1", r.tenant);
        }
    }
    header(
        &mut out,
        "fusebox_tenant_escalated",
        "gauge",
        "1 if the tenant tripped repeatedly within the escalation window.",
    );
    for r in top {
        let _ = writeln!(out, "fusebox_tenant_escalated{{tenant=\"{}\"}} {}", r.tenant, u8::from(r.escalated));
    }
    let mut other = MetricTenant {
        tenant: "_other".into(),
        totals: Totals::default(),
        cost_micros: 0,
        state: None,
        forced: None,
        escalated: false,
    };
    for r in rest {
        let (o, t) = (&mut other.totals, &r.totals);
        o.requests += t.requests;
        o.input_tokens += t.input_tokens;
        o.output_tokens += t.output_tokens;
        o.trips += t.trips;
        o.warnings += t.warnings;
        other.cost_micros += r.cost_micros;
    }
    let all: Vec<&MetricTenant> = top.iter().chain((!rest.is_empty()).then_some(&other)).collect();
    type Counter = (&'static str, &'static str, fn(&MetricTenant) -> String);
    let counters: [Counter; 4] = [
        ("fusebox_tenant_requests_total", "Responses counted.", |r| r.totals.requests.to_string()),
        ("fusebox_tenant_trips_total", "Breaker trips.", |r| r.totals.trips.to_string()),
        ("fusebox_tenant_warnings_total", "Minutes with a metric past the warn ratio.", |r| {
            r.totals.warnings.to_string()
        }),
        ("fusebox_tenant_cost_total", "Cost from the policy's price table.", |r| cost(r.cost_micros).to_string()),
    ];
    for (name, help, value) in counters {
        header(&mut out, name, "counter", help);
        for r in &all {
            let _ = writeln!(out, "{name}{{tenant=\"{}\"}} {}", r.tenant, value(r));
        }
    }
    header(&mut out, "fusebox_tenant_tokens_total", "counter", "Tokens used.");
    for r in &all {
        for (direction, n) in [("input", r.totals.input_tokens), ("output", r.totals.output_tokens)] {
            let _ =
                writeln!(out, "fusebox_tenant_tokens_total{{tenant=\"{}\",direction=\"{direction}\"}} {n}", r.tenant);
        }
    }
    header(&mut out, "fusebox_tenant_denials_total", "counter", "Requests refused by fusebox, by reason.");
    for ((tenant, reason), n) in &denials {
        let _ = writeln!(out, "fusebox_tenant_denials_total{{tenant=\"{tenant}\",reason=\"{reason}\"}} {n}");
    }
    Ok(out)
}
