//! Policy changes: each one loads the current policy, applies the change, validates the
//! result with the engine's own schema, stores it as a new version and appends an audit entry
//! with the before and after of what changed, all in one transaction. A change that does not
//! validate is refused with the field it names, and the refusal is audited too.

use crate::audit::{self, NewEntry};
use crate::db::{self, Db};
use crate::db::{DbError, Sql};
use crate::error::ApiError;
use crate::params;
use crate::policy_anchor;
use crate::topups;
use fusebox_engine::budget::Budget;
use fusebox_engine::identity::{hex, sha256};
use fusebox_engine::policy::{period_label, Forced, ForcedBreaker, Limits, Policy, TenantPolicy, TopUp, TopUps};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// An operator's breaker command (`POST /v1/tenants/{t}/breaker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerAction {
    /// Kill switch: refuse every request of the tenant until closed or reset.
    Open,
    /// Hold the breaker closed (it resets now and cannot trip; caps and budgets still apply).
    Close,
    /// Back to automatic: release any hold and reset the breaker to closed.
    Reset,
}

impl BreakerAction {
    fn as_str(self) -> &'static str {
        match self {
            BreakerAction::Open => "open",
            BreakerAction::Close => "close",
            BreakerAction::Reset => "reset",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Change {
    ReplacePolicy(Box<Policy>),
    PutTier(String, Box<Limits>),
    /// A JSON merge patch (RFC 7386) on a tier: the fields it names change, `null` removes one,
    /// the rest are kept. A tier that does not exist yet starts from none.
    PatchTier(String, Value),
    DeleteTier(String),
    PutTenant(String, Box<TenantPolicy>),
    /// A JSON merge patch on a tenant's entry (its holds are the breaker endpoint's).
    PatchTenant(String, Value),
    /// `release_hold`: an operator's hold goes too (otherwise it outlives the entry).
    DeleteTenant {
        tenant: String,
        release_hold: bool,
    },
    /// `create`: act on a tenant control has never heard of (no entry, no traffic reported);
    /// without it that is refused, so a typo does not create a tenant.
    Breaker {
        tenant: String,
        action: BreakerAction,
        reason: String,
        create: bool,
    },
    /// Raises a budget for its current period by `amount` (added to any top-up of that period):
    /// `tenant`'s, or with `scope` set, the budget of value `tenant` of that scope.
    TopUp {
        tenant: String,
        scope: Option<String>,
        budget: Budget,
        amount: f64,
        reason: String,
        create: bool,
    },
}

impl Change {
    fn action(&self) -> String {
        match self {
            Change::ReplacePolicy(_) => "policy.replace".into(),
            Change::PutTier(..) => "tier.put".into(),
            Change::PatchTier(..) => "tier.patch".into(),
            Change::DeleteTier(_) => "tier.delete".into(),
            Change::PutTenant(..) => "tenant.put".into(),
            Change::PatchTenant(..) => "tenant.patch".into(),
            Change::DeleteTenant { .. } => "tenant.delete".into(),
            Change::Breaker { action, .. } => format!("breaker.{}", action.as_str()),
            Change::TopUp { .. } => "budget.topup".into(),
        }
    }

    fn tenant(&self) -> Option<&str> {
        match self {
            Change::PutTenant(t, _)
            | Change::PatchTenant(t, _)
            | Change::DeleteTenant { tenant: t, .. }
            | Change::Breaker { tenant: t, .. }
            | Change::TopUp { tenant: t, scope: None, .. } => Some(t),
            _ => None,
        }
    }

    fn reason_code(&self) -> &'static str {
        match self {
            Change::Breaker { action: BreakerAction::Open, .. } => "kill_switch",
            Change::Breaker { action: BreakerAction::Close, .. } => "operator_hold_closed",
            Change::Breaker { action: BreakerAction::Reset, .. } => "operator_reset",
            Change::TopUp { .. } => "budget_topup",
            _ => "policy_change",
        }
    }

    /// The part of the policy this change touches, for the audit's before/after.
    fn subject(&self, p: &Policy) -> Value {
        match self {
            Change::ReplacePolicy(_) => redacted(p),
            Change::PutTier(name, _) | Change::PatchTier(name, _) | Change::DeleteTier(name) => {
                json!(p.tiers.get(name))
            }
            Change::PutTenant(t, _)
            | Change::PatchTenant(t, _)
            | Change::DeleteTenant { tenant: t, .. }
            | Change::Breaker { tenant: t, .. }
            | Change::TopUp { tenant: t, scope: None, .. } => json!(p.tenants.get(t)),
            Change::TopUp { tenant: value, scope: Some(s), .. } => {
                json!(p.scopes.get(s).and_then(|d| d.values.get(value)))
            }
        }
    }

    fn apply(&self, p: &mut Policy, actor: &str) -> Result<(), ApiError> {
        match self {
            Change::ReplacePolicy(new) => {
                refuse_holds(new.tenants.iter())?;
                let holds: Vec<(String, TenantPolicy)> =
                    p.tenants.iter().filter(|(_, t)| has_hold(t)).map(|(k, v)| (k.clone(), v.clone())).collect();
                let topups = topups::of(p.tenants.iter());
                let scope_topups = topups::of_scopes(p);
                let version = p.version;
                *p = (**new).clone();
                p.version = version;
                for (tenant, old) in holds {
                    let entry = p.tenants.entry(tenant).or_default();
                    entry.forced = old.forced;
                    entry.breaker_epoch = old.breaker_epoch;
                }
                topups::carry(p, topups);
                topups::carry_scopes(p, scope_topups);
            }
            Change::PutTier(name, limits) => {
                p.tiers.insert(name.clone(), (**limits).clone());
            }
            Change::PatchTier(name, patch) => {
                let at = format!("tiers.{name}");
                let merged = merge_patch(json!(p.tiers.get(name)), patch, &at)?;
                let limits = Limits::from_json(merged.to_string().as_bytes())
                    .map_err(|e| ApiError::invalid_policy_at(&at, e))?;
                p.tiers.insert(name.clone(), limits);
            }
            Change::PatchTenant(tenant, patch) => {
                let at = format!("tenants.{tenant}");
                if patch.get("forced").is_some() || patch.get("breaker_epoch").is_some() {
                    return Err(ApiError::bad_request(
                        format!("{at}.forced"),
                        "breaker holds are set through POST /v1/tenants/{tenant}/breaker",
                    ));
                }
                let merged = merge_patch(json!(p.tenants.get(tenant)), patch, &at)?;
                let mut entry = TenantPolicy::from_json(merged.to_string().as_bytes())
                    .map_err(|e| ApiError::invalid_policy_at(&at, e))?;
                if let Some(old) = p.tenants.get(tenant) {
                    entry.forced = old.forced.clone();
                    entry.breaker_epoch = old.breaker_epoch;
                }
                p.tenants.insert(tenant.clone(), entry);
            }
            Change::DeleteTier(name) => {
                if p.tiers.remove(name).is_none() {
                    return Err(ApiError::not_found(format!("no tier '{name}'")));
                }
            }
            Change::PutTenant(tenant, entry) => {
                refuse_holds(std::iter::once((tenant, &**entry)))?;
                let mut entry = (**entry).clone();
                let topups = topups::of(p.tenants.get_key_value(tenant).into_iter());
                if let Some(old) = p.tenants.get(tenant) {
                    entry.forced = old.forced.clone();
                    entry.breaker_epoch = old.breaker_epoch;
                }
                p.tenants.insert(tenant.clone(), entry);
                topups::carry(p, topups);
            }
            Change::DeleteTenant { tenant, release_hold } => {
                let Some(old) = p.tenants.remove(tenant) else {
                    return Err(ApiError::not_found(format!("tenant '{tenant}' has no policy entry")));
                };
                // An operator's hold outlives the overrides unless its release is asked for.
                if has_hold(&old) && !release_hold {
                    let kept = TenantPolicy {
                        forced: old.forced,
                        breaker_epoch: old.breaker_epoch,
                        ..TenantPolicy::default()
                    };
                    p.tenants.insert(tenant.clone(), kept);
                }
            }
            Change::TopUp { tenant, scope, budget, amount, .. } => {
                let now_s = db::now_ms() / 1000;
                let period = period_label(*budget, now_s);
                let entry = match scope {
                    None => p.tenants.entry(tenant.clone()).or_default(),
                    Some(s) => {
                        let def = p.scopes.get_mut(s).ok_or_else(|| ApiError::not_found(format!("no scope '{s}'")))?;
                        def.values.entry(tenant.clone()).or_default()
                    }
                };
                let topups = entry.topup.get_or_insert_with(TopUps::default);
                let total = match topups.get(*budget) {
                    Some(t) if t.period == period => t.amount + amount,
                    _ => *amount,
                };
                topups.set(*budget, TopUp { period, amount: total });
                topups::drop_lapsed(topups, now_s);
            }
            Change::Breaker { tenant, action, reason, .. } => {
                if !fusebox_engine::policy::is_valid_tenant_id(tenant) {
                    return Err(ApiError::bad_request("tenant", "tenant ids are 1-128 of [A-Za-z0-9-_.:@]"));
                }
                let entry = p.tenants.entry(tenant.clone()).or_default();
                let hold = |state| ForcedBreaker {
                    state,
                    reason: reason.clone(),
                    actor: Some(actor.to_string()),
                    since_s: db::now_ms() / 1000,
                };
                match action {
                    BreakerAction::Open => entry.forced = Some(hold(Forced::Open)),
                    BreakerAction::Close => {
                        entry.forced = Some(hold(Forced::Closed));
                        entry.breaker_epoch += 1;
                    }
                    BreakerAction::Reset => {
                        entry.forced = None;
                        entry.breaker_epoch += 1;
                    }
                }
            }
        }
        Ok(())
    }
}

/// `patch` applied to `target` as a JSON merge patch (RFC 7386): objects merge key by key,
/// `null` removes a key, anything else replaces. Both must be objects (a tier, an entry).
fn merge_patch(target: Value, patch: &Value, at: &str) -> Result<Value, ApiError> {
    fn merge(target: Value, patch: &Value) -> Value {
        let Value::Object(fields) = patch else { return patch.clone() };
        let mut out = match target {
            Value::Object(o) => o,
            _ => serde_json::Map::new(),
        };
        for (k, v) in fields {
            if v.is_null() {
                out.remove(k);
            } else {
                let old = out.remove(k).unwrap_or(Value::Null);
                out.insert(k.clone(), merge(old, v));
            }
        }
        Value::Object(out)
    }
    if !patch.is_object() {
        return Err(ApiError::bad_request(at, "a JSON merge patch is an object of the fields to change"));
    }
    Ok(merge(target, patch))
}

fn has_hold(t: &TenantPolicy) -> bool {
    t.forced.is_some() || t.breaker_epoch != 0
}

fn refuse_holds<'a>(mut entries: impl Iterator<Item = (&'a String, &'a TenantPolicy)>) -> Result<(), ApiError> {
    match entries.find(|(_, t)| has_hold(t)) {
        Some((tenant, _)) => Err(ApiError::bad_request(
            format!("tenants.{tenant}.forced"),
            "breaker holds are set through POST /v1/tenants/{tenant}/breaker",
        )),
        None => Ok(()),
    }
}

/// The policy without secrets (JWT keys, JWKS and API-key digests are replaced by a digest of
/// the identity section), for the audit log.
pub fn redacted(p: &Policy) -> Value {
    let mut v = json!(p);
    if let Some(obj) = v.as_object_mut() {
        let identity = obj.get("identity").map(Value::to_string).unwrap_or_default();
        obj.insert("identity".into(), json!({"sha256": hex(&sha256(identity.as_bytes()))}));
    }
    v
}

/// What a stored change produced.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub version: u64,
    pub before: Value,
    pub after: Value,
}

/// Loads the current policy (the newest stored version).
pub fn current(conn: &dyn Sql) -> Result<Option<Policy>, ApiError> {
    match db::latest_policy(conn)? {
        None => Ok(None),
        Some((version, doc)) => {
            let mut p = Policy::from_json(doc.as_bytes())
                .map_err(|e| ApiError::internal(format!("stored policy version {version} is invalid: {e}")))?;
            p.version = version;
            Ok(Some(p))
        }
    }
}

/// Stores `policy` as the first version (seeding an empty database).
pub fn seed(db: &Db, mut policy: Policy, actor: &str, source: &str) -> Result<Policy, ApiError> {
    db.write(|tx| {
        if db::latest_policy(tx)?.is_some() {
            return Err(ApiError::conflict("the database already has a policy"));
        }
        policy.version = 1;
        let doc = fusebox_engine::policy::to_json(&policy).ok_or_else(|| ApiError::internal("cannot encode policy"))?;
        db::insert_policy(tx, 1, &doc, actor)?;
        audit::append(
            tx,
            NewEntry {
                tenant_id: None,
                actor_id: actor,
                action: "policy.seed",
                reason_code: "policy_change",
                outcome: "applied",
                details: json!({
                    "source": source,
                    "version": 1,
                    "doc_sha256": policy_anchor::doc_digest(&doc),
                    "after": redacted(&policy)
                }),
            },
        )?;
        Ok(policy)
    })
}

/// Whether any Envoy ever reported traffic or a breaker state for `tenant`.
fn reported(tx: &dyn Sql, tenant: &str) -> Result<bool, DbError> {
    tx.query_opt(
        "SELECT 1 FROM tenant_totals WHERE tenant = ?1 UNION SELECT 1 FROM breaker_state WHERE tenant = ?1",
        params![tenant],
        |_| Ok(()),
    )
    .map(|found| found.is_some())
}

/// Appends the audit entry of a change.
fn record(tx: &dyn Sql, change: &Change, actor: &str, outcome: &str, details: Value) -> Result<(), DbError> {
    let entry = NewEntry {
        tenant_id: change.tenant(),
        actor_id: actor,
        action: &change.action(),
        reason_code: change.reason_code(),
        outcome,
        details,
    };
    audit::append(tx, entry).map(|_| ())
}

/// A write refused to a verified caller for want of a role.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub actor: String,
    pub action: &'static str,
    pub tenant: Option<String>,
    pub details: Value,
}

/// Audits a refused write: who tried what, and the role they lacked.
pub fn record_refusal(db: &Db, r: &Refusal) -> Result<(), ApiError> {
    db.write(|tx| {
        let entry = NewEntry {
            tenant_id: r.tenant.as_deref(),
            actor_id: &r.actor,
            action: r.action,
            reason_code: "insufficient_role",
            outcome: "refused",
            details: r.details.clone(),
        };
        audit::append(tx, entry).map(|_| ()).map_err(ApiError::from)
    })
}

/// Applies `change` as `actor`: a new policy version, or an audited refusal.
pub fn apply(db: &Db, change: &Change, actor: &str) -> Result<(Policy, Applied), ApiError> {
    let result: Result<(Policy, Applied), ApiError> = db.write(|tx| {
        let mut policy = current(tx)?.ok_or_else(|| ApiError::internal("no policy stored"))?;
        // A scope's values are named by credentials, not reported: only a tenant must be known.
        if let Change::Breaker { tenant, create: false, .. }
        | Change::TopUp { tenant, scope: None, create: false, .. } = change
        {
            if !policy.tenants.contains_key(tenant) && !reported(tx, tenant)? {
                return Err(ApiError::not_found(format!(
                    "tenant '{tenant}' is not known here (no policy entry, no traffic reported): \
                     send \"create\": true (CLI: --create) to act on it anyway"
                )));
            }
        }
        let before = change.subject(&policy);
        change.apply(&mut policy, actor)?;
        let version = policy.version + 1;
        policy.version = version;
        // Validate exactly as the filter will (a round trip through JSON, like the poll): the
        // document stored and served is the one checked.
        let doc = fusebox_engine::policy::to_json(&policy).ok_or_else(|| ApiError::internal("cannot encode policy"))?;
        let checked = Policy::from_json(doc.as_bytes()).map_err(ApiError::invalid_policy)?;
        db::insert_policy(tx, version, &doc, actor)?;
        let after = change.subject(&checked);
        let mut details = match change {
            Change::Breaker { reason, .. } => {
                json!({"version": version, "before": before, "after": after, "reason": reason})
            }
            Change::TopUp { budget, amount, reason, scope, tenant, .. } => json!({
                "version": version, "before": before, "after": after, "reason": reason,
                "budget": budget, "amount": amount,
                "scope": scope.as_ref().map(|s| fusebox_engine::policy::scope_label(s, tenant)),
            }),
            _ => json!({"version": version, "before": before, "after": after}),
        };
        if let Some(fields) = details.as_object_mut() {
            fields.insert("doc_sha256".into(), json!(policy_anchor::doc_digest(&doc)));
        }
        record(tx, change, actor, "applied", details)?;
        // A reset or a hold closed is the breaker's real state from now on (every worker drops
        // the open state on the tenant's next request): show it, not the last reported `open`.
        let released = match change {
            Change::Breaker { tenant, action: BreakerAction::Reset | BreakerAction::Close, .. } => Some(tenant),
            Change::DeleteTenant { tenant, release_hold: true } => Some(tenant),
            _ => None,
        };
        if let Some(tenant) = released {
            tx.execute(
                "UPDATE breaker_state SET state = 'closed', at_ms = ?2, metric = NULL, threshold = NULL,
                    observed = NULL, open_until_ms = NULL, source = ?3 WHERE tenant = ?1",
                params![tenant, db::to_sql(db::now_ms()), format!("operator:{actor}")],
            )?;
        }
        Ok((checked, Applied { version, before, after }))
    });
    if let Err(e) = &result {
        if e.status == 400 || e.status == 404 {
            // Refused changes are part of the record too.
            let _ = db.write(|tx| record(tx, change, actor, "rejected", json!({"error": e.to_string()})));
        }
    }
    result
}
