//! The operator commands: each one call to a running control service, its answer printed as
//! a table or JSON.
// Reading a serde_json `Value` by index never panics (a missing key reads as `Null`).
#![allow(clippy::indexing_slicing)]

use super::args::{AuditCmd, BreakerVerb, Command, PolicyCmd, TenantCmd, TierCmd, Why};
use fusebox_control::client::{self, terminal_safe};
use serde_json::{json, Value};

/// `println!` for what control answered: shown terminal-safe (see [`terminal_safe`]).
macro_rules! say {
    ($($arg:tt)*) => { println!("{}", terminal_safe(&format!($($arg)*))) };
}

/// `print!` likewise.
macro_rules! show {
    ($($arg:tt)*) => { print!("{}", terminal_safe(&format!($($arg)*))) };
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

fn json_arg(text: &str) -> Result<Value, String> {
    let raw = match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?,
        None => text.to_string(),
    };
    serde_json::from_str(&raw).map_err(|e| format!("not JSON: {e}"))
}

/// A `--set` value: JSON if it parses (numbers, booleans, objects), else a string.
fn field_value(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()))
}

/// A JSON merge patch: `--set FIELD=VALUE` fields, and `null` for each `--unset FIELD`.
fn patch(set: &[String], unset: &[String]) -> Result<Value, String> {
    let mut fields = serde_json::Map::new();
    for kv in set {
        let (k, v) = kv.split_once('=').ok_or_else(|| format!("--set {kv}: expected FIELD=VALUE"))?;
        fields.insert(k.to_string(), field_value(v));
    }
    for k in unset {
        fields.insert(k.clone(), Value::Null);
    }
    Ok(Value::Object(fields))
}

fn query(pairs: &[(&str, &Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", v.replace('+', "%2B").replace(' ', "%20"))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

pub(crate) fn run_remote(command: Command) -> Result<(), String> {
    match command {
        Command::Policy { action, remote } => {
            let c = remote.client()?;
            match action {
                PolicyCmd::Show => say!("{}", pretty(&c.call("GET", "/v1/policy", None)?)),
                PolicyCmd::Apply { file } => {
                    let doc = json_arg(&format!("@{}", file.display()))?;
                    let r = c.call("PUT", "/v1/policy", Some(&doc))?;
                    say!("policy version {}", r["version"]);
                }
            }
        }
        Command::Tier { action, remote } => {
            let c = remote.client()?;
            let r = match action {
                TierCmd::Set { tier, limits, set, unset, replace } => match (limits, replace) {
                    (Some(limits), true) => c.call("PUT", &format!("/v1/tiers/{tier}"), Some(&json_arg(&limits)?))?,
                    (Some(_), false) => {
                        return Err(format!(
                            "this replaces the whole tier '{tier}' (fields left out go back to their defaults): \
                             pass --replace, or change fields with --set FIELD=VALUE"
                        ))
                    }
                    (None, true) => return Err("--replace needs the tier's JSON".into()),
                    (None, false) if set.is_empty() && unset.is_empty() => {
                        return Err("nothing to change: --set FIELD=VALUE or --unset FIELD".into())
                    }
                    // One merge patch, applied by control in one transaction.
                    (None, false) => c.call("PATCH", &format!("/v1/tiers/{tier}"), Some(&patch(&set, &unset)?))?,
                },
                TierCmd::Delete { tier } => c.call("DELETE", &format!("/v1/tiers/{tier}"), None)?,
            };
            say!("policy version {}", r["version"]);
        }
        Command::Tenant { action, remote } => {
            let c = remote.client()?;
            match action {
                TenantCmd::Show { tenant, json } => {
                    let t = c.call("GET", &format!("/v1/tenants/{tenant}"), None)?;
                    show!("{}", if json { pretty(&t) + "\n" } else { client::render_tenant(&t) });
                }
                TenantCmd::List => {
                    show!("{}", client::render_tenants(&c.call("GET", "/v1/tenants", None)?));
                }
                TenantCmd::Set { tenant, tier, set, unset } => {
                    let mut body = patch(&set, &unset)?;
                    if let (Some(tier), Some(fields)) = (tier, body.as_object_mut()) {
                        fields.insert("tier".into(), json!(tier));
                    }
                    let r = c.call("PATCH", &format!("/v1/tenants/{tenant}"), Some(&body))?;
                    say!("policy version {}: {}", r["version"], r["after"]);
                }
                TenantCmd::Delete { tenant, release_hold } => {
                    let query = if release_hold { "?release_hold=true" } else { "" };
                    let r = c.call("DELETE", &format!("/v1/tenants/{tenant}{query}"), None)?;
                    say!("policy version {}", r["version"]);
                }
            }
        }
        Command::Breaker { action, tenant, why: Why { reason, create }, remote } => {
            let verb = match action {
                BreakerVerb::Open => "open",
                BreakerVerb::Close => "close",
                BreakerVerb::Reset => "reset",
            };
            let body = json!({"action": verb, "reason": reason, "create": create});
            let r = remote.client()?.call("POST", &format!("/v1/tenants/{tenant}/breaker"), Some(&body))?;
            say!("tenant '{tenant}' breaker {verb}: policy version {}", r["version"]);
        }
        Command::Topup { tenant, scope, tokens, cost, why: Why { reason, create }, remote } => {
            let (budget, amount) = match (tokens, cost) {
                (Some(t), _) => ("budget_tokens_day", json!(t)),
                (None, c) => ("budget_cost_month", json!(c)),
            };
            let body = json!({"budget": budget, "amount": amount, "reason": reason, "create": create});
            let (path, whose) = match &scope {
                Some(s) => (format!("/v1/scopes/{s}/{tenant}/topup"), format!("scope {s}:{tenant}")),
                None => (format!("/v1/tenants/{tenant}/topup"), format!("tenant '{tenant}'")),
            };
            let r = remote.client()?.call("POST", &path, Some(&body))?;
            let topup = &r["after"]["topup"][budget];
            say!(
                "{whose} {budget} raised by {} for {} (policy version {})",
                // Rust prints a whole f64 without a fraction: 1000 tokens, 2.5 in currency.
                topup["amount"].as_f64().unwrap_or(0.0),
                topup["period"].as_str().unwrap_or("?"),
                r["version"]
            );
        }
        Command::Whoami { remote } => {
            let w = remote.client()?.call("GET", "/v1/whoami", None)?;
            match (w["name"].as_str(), w["role"].as_str()) {
                (Some(name), Some(role)) => say!("{name} ({role})"),
                _ => say!("{} ({})", w["kind"].as_str().unwrap_or("?"), w["may"].as_str().unwrap_or("?")),
            }
        }
        Command::Usage { tenant, scope, model, from, to, json, remote } => {
            let q = query(&[("tenant", &tenant), ("scope", &scope), ("model", &model), ("from", &from), ("to", &to)]);
            let u = remote.client()?.call("GET", &format!("/v1/usage{q}"), None)?;
            show!("{}", if json { pretty(&u) + "\n" } else { client::render_usage(&u) });
        }
        Command::Audit { action: Some(AuditCmd::Verify), remote, .. } => {
            let v = remote.client()?.call("GET", "/v1/audit/verify", None)?;
            if v["ok"] == Value::Bool(true) {
                say!("audit log intact: {} entries, head {}", v["entries"], v["head"].as_str().unwrap_or("-"));
            } else {
                return Err(format!(
                    "audit log BROKEN at entry {}: {}",
                    v["first_bad_seq"],
                    v["error"].as_str().unwrap_or("unknown")
                ));
            }
        }
        Command::Audit { action: None, tenant, limit, remote } => {
            let q = query(&[("tenant", &tenant), ("limit", &Some(limit.to_string()))]);
            show!("{}", client::render_audit(&remote.client()?.call("GET", &format!("/v1/audit{q}"), None)?));
        }
        _ => return Err("not a remote command".into()),
    }
    Ok(())
}
