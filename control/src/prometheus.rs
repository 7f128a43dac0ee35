//! `GET /metrics`: control's view of every tenant in the Prometheus text format, with the
//! number of per-tenant series bounded.

use crate::db::{from_sql, saturating_sum, to_sql, DbError, Sql};
use crate::error::ApiError;
use crate::ingest::Escalation;
use crate::params;
use crate::report::{cost, state_now, totals_row, Totals};
use fusebox_engine::policy::Policy;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

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
    conn: &dyn Sql,
    policy: &Policy,
    now_ms: u64,
    esc: Escalation,
    max_tenants: usize,
) -> Result<String, ApiError> {
    let sql = format!(
        "SELECT t.tenant, t.requests, t.input_tokens, t.output_tokens, t.cost_micros, t.denials, t.trips, t.warnings, b.state
         FROM tenant_totals t LEFT JOIN (SELECT tenant, {} AS state FROM breaker_state) b ON b.tenant = t.tenant",
        state_now(conn.dialect())
    );
    let mut rows: Vec<MetricTenant> = conn.query_map(&sql, params![], |r| {
        Ok(MetricTenant {
            tenant: r.get(0)?,
            totals: totals_row(r, 1)?,
            cost_micros: from_sql(r.get(4)?),
            state: r.get(8)?,
            forced: None,
            escalated: false,
        })
    })?;
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
    let sql = "SELECT DISTINCT tenant FROM tenant_events WHERE kind = 'escalation' AND at_ms > ?1";
    let escalated_now: BTreeSet<String> = conn.query_map(sql, params![since], |r| r.get(0))?.into_iter().collect();
    for r in rows.iter_mut() {
        r.escalated = escalated_now.contains(&r.tenant);
    }
    let notable =
        |r: &MetricTenant| r.forced.is_some() || r.escalated || r.state.as_deref().is_some_and(|s| s != "closed");
    rows.sort_by(|a, b| notable(b).cmp(&notable(a)).then(b.totals.total_tokens.cmp(&a.totals.total_tokens)));
    let shown = rows.len().min(max_tenants);
    let (top, rest) = rows.split_at(shown);
    let shown_names: BTreeSet<&str> = top.iter().map(|r| r.tenant.as_str()).collect();
    // Counts by (tenant, reason) from `table`, tenants not shown summed under `_other`.
    let by_reason = |table: &str| -> Result<BTreeMap<(String, String), u64>, DbError> {
        let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
        let sql = format!("SELECT tenant, reason, count FROM {table}");
        for (tenant, reason, count) in
            conn.query_map(&sql, params![], |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?, from_sql(r.get(2)?))))?
        {
            let label = if shown_names.contains(tenant.as_str()) { tenant } else { "_other".to_string() };
            let n = counts.entry((label, reason)).or_default();
            *n = n.saturating_add(count);
        }
        Ok(counts)
    };
    let denials = by_reason("tenant_denials")?;
    let shadow_denials = by_reason("tenant_shadow_denials")?;

    let mut out = String::new();
    let header = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    header(&mut out, "fusebox_control_policy_version", "gauge", "Version of the policy control serves.");
    let _ = writeln!(out, "fusebox_control_policy_version {}", policy.version);
    let count = |sql: &str| conn.query_one(sql, params![], |r| r.get::<i64>(0)).map(from_sql);
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
    let dropped = count(&format!(
        "SELECT {} FROM (SELECT MAX(dropped) AS d FROM batches GROUP BY source) AS newest",
        saturating_sum(conn.dialect(), "d")
    ))?;
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
    header(
        &mut out,
        "fusebox_tenant_shadow_denials_total",
        "counter",
        "Requests a shadowed limit would have refused (they passed), by reason.",
    );
    for ((tenant, reason), n) in &shadow_denials {
        let _ = writeln!(out, "fusebox_tenant_shadow_denials_total{{tenant=\"{tenant}\",reason=\"{reason}\"}} {n}");
    }
    Ok(out)
}
